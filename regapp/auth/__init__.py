"""The `auth` blueprint: HTTP adapters over the registration core, one per profile."""

from __future__ import annotations

from flask import Blueprint
from flask import current_app
from flask import request
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from .profiles import COMMON
from .profiles import PATH_PREFIXES
from .profiles import PROFILES
from .profiles.base import handle_exception
from .profiles.base import unavailable


def create_blueprint(profile_names) -> Blueprint:
    """A fresh `auth` blueprint mounting the enabled profiles under ``/api``."""
    unknown = set(profile_names) - set(PROFILES)
    if unknown:
        raise RuntimeError(f"unknown REGAPP_PROFILES: {', '.join(sorted(unknown))}")
    auth = Blueprint("auth", __name__, url_prefix="/api")
    for name, module in PROFILES.items():
        if name in profile_names:
            auth.register_blueprint(module.bp)
    auth.register_blueprint(COMMON.bp)
    return auth


def profile_for_path(path: str, enabled):
    """The profile whose format an error on ``path`` is rendered in."""
    for prefix, name in PATH_PREFIXES:
        if path.startswith(prefix) and name in enabled and name in PROFILES:
            return PROFILES[name].profile
    return COMMON.profile


def register_routing_errors(app) -> None:
    """404/405 (and 413/415 raised before a view) have no blueprint: route by path."""
    enabled = set(app.config["REGAPP_PROFILES"])

    @app.errorhandler(HTTPException)
    def routing_error(exc):
        if request.path == "/api" or request.path.startswith("/api/"):
            return handle_exception(profile_for_path(request.path, enabled), exc)
        return exc

    @app.errorhandler(DBAPIError)
    def database_error(exc):
        # Raised outside a profile blueprint (the HTML confirm page): a 503 with
        # Retry-After, never a 500 whose logged traceback carries SQL and parameters.
        if request.path == "/api" or request.path.startswith("/api/"):
            return handle_exception(profile_for_path(request.path, enabled), exc)
        current_app.logger.warning("database unavailable: %s", type(exc.orig).__name__)
        return unavailable()
