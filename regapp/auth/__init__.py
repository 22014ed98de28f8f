"""The `auth` blueprint: HTTP adapters over the registration core, one per profile."""

from __future__ import annotations

from flask import Blueprint
from flask import current_app
from flask import request
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from ..core import database
from .profiles import discover
from .profiles.base import handle_exception
from .profiles.base import unavailable

EXTENSION = "regapp.profiles"


def enabled_profiles(config) -> list:
    """The specs of the profiles ``config`` enables, shared ones last.

    ``REGAPP_PROFILE_MODULES`` adds profile modules; an empty ``REGAPP_PROFILES``
    enables every profile found (and is filled in with their names)."""
    found = discover(config.get("REGAPP_PROFILE_MODULES") or ())
    selectable = [name for name, spec in found.items() if not spec.shared]
    names = config.get("REGAPP_PROFILES") or selectable
    unknown = set(names) - set(selectable)
    if unknown:
        from config import ConfigError  # noqa: PLC0415 - config.py sits beside the package

        raise ConfigError(f"REGAPP_PROFILES names unknown profiles "
                          f"({', '.join(sorted(unknown))}): expected names from "
                          f"{', '.join(selectable)}")
    config["REGAPP_PROFILES"] = list(names)
    return ([spec for name, spec in found.items() if name in names]
            + [spec for spec in found.values() if spec.shared])


def init_app(app) -> None:
    """Mount the enabled profiles (and the shared routes) under ``/api``."""
    specs = enabled_profiles(app.config)
    auth = Blueprint("auth", __name__, url_prefix="/api")
    for spec in specs:
        auth.register_blueprint(spec.blueprint)
    app.register_blueprint(auth)
    app.extensions[EXTENSION] = specs


def profile_for_path(path: str, specs):
    """The profile whose format an error on ``path`` is rendered in: the longest
    declared prefix that matches, else the shared profile."""
    best, length = None, -1
    for spec in specs:
        for prefix in spec.prefixes:
            if path.startswith(prefix) and len(prefix) > length:
                best, length = spec, len(prefix)
    if best is None:
        best = next(spec for spec in specs if spec.shared)
    return best.profile


def register_routing_errors(app) -> None:
    """404/405 (and 413/415 raised before a view) have no blueprint: route by path."""
    specs = app.extensions[EXTENSION]

    @app.errorhandler(HTTPException)
    def routing_error(exc):
        if request.path == "/api" or request.path.startswith("/api/"):
            return handle_exception(profile_for_path(request.path, specs), exc)
        return exc

    @app.errorhandler(DBAPIError)
    def database_error(exc):
        # Raised outside a profile blueprint (the HTML confirm page): a 503 with
        # Retry-After, never a 500 whose logged traceback carries SQL and parameters.
        if request.path == "/api" or request.path.startswith("/api/"):
            return handle_exception(profile_for_path(request.path, specs), exc)
        database.log_unavailable(current_app.logger, exc)
        return unavailable()
