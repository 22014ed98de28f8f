"""regapp: one registration core behind five registration API contracts."""

from __future__ import annotations

import os

from flask import Flask

from . import auth
from . import cli
from . import cors
from . import http
from . import logs
from . import models  # noqa: F401 - models must be imported for migrations
from . import openapi
from . import ops
from . import pages
from .auth import limits
from .auth import register_routing_errors
from .core import database
from .extensions import db
from .extensions import migrate


def create_app(config=None) -> Flask:
    """Build the app; ``config`` is a config class, a name, or a mapping of overrides."""
    app = Flask(__name__, instance_relative_config=True)
    app.json.sort_keys = False  # bodies keep the documents' key order
    # `/api/register` and `/api/register/` are one route: no 308 redirect (an HTML
    # body that would also turn a POST into a second request).
    app.url_map.strict_slashes = False
    load_config(app, config)
    logs.init_app(app)
    register_hardening(app)
    register_extensions(app)
    register_blueprints(app)
    register_limits(app)
    register_error_handlers(app)
    register_commands(app)
    register_shell_context(app)
    return app


def load_config(app: Flask, config) -> None:
    """Config class from REGAPP_CONFIG (or ``config``), then instance defaults."""
    from config import ConfigError  # noqa: PLC0415 - config.py sits beside the package
    from config import check_database_url  # noqa: PLC0415
    from config import check_numbers  # noqa: PLC0415
    from config import config as configs  # noqa: PLC0415
    from config import database_url  # noqa: PLC0415
    from config import is_base_url  # noqa: PLC0415
    from config import shown  # noqa: PLC0415

    overrides = {}
    if isinstance(config, dict):
        overrides, config = config, None
    if config is None or isinstance(config, str):
        name = config or os.environ.get("REGAPP_CONFIG", "").strip() or "development"
        if name not in configs:
            raise ConfigError(f"REGAPP_CONFIG={shown(name)} is not accepted: expected one of "
                              f"{', '.join(configs)}")
        config = configs[name]
    if overrides.get("TESTING") and config is configs["development"]:
        config = configs["testing"]
    app.config.from_object(config)
    app.config.update(overrides)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url(app.config.get("SQLALCHEMY_DATABASE_URI"))
    config.init_app(app)  # ConfigError (one line) on contradictions, production's demands
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        os.makedirs(app.instance_path, exist_ok=True)
        app.config["SQLALCHEMY_DATABASE_URI"] = (
            "sqlite:///" + os.path.join(app.instance_path, "regapp.sqlite"))
    check_database_url(app.config["SQLALCHEMY_DATABASE_URI"])  # overrides too
    breach_url = app.config.get("PASSWORD_BREACH_CHECK_URL") or ""
    if breach_url and not is_base_url(breach_url):
        raise ConfigError("PASSWORD_BREACH_CHECK_URL must be empty or an http(s) URL with "
                          "a host, no user info and no query")
    check_numbers(app.config)


def register_hardening(app: Flask) -> None:
    """Security headers, request ids and request logging on every response; CORS."""
    http.init_app(app)
    cors.init_app(app)


def register_extensions(app: Flask) -> None:
    """Bind the unbound extension objects to this app."""
    database.init_app(app)
    db.init_app(app)
    migrate.init_app(app, db, render_as_batch=True, compare_type=True)


def register_blueprints(app: Flask) -> None:
    """The API (`auth`, with the enabled profiles), its OpenAPI document, the HTML pages,
    /healthz and /readyz."""
    auth.init_app(app)
    openapi.init_app(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(ops.bp)


def register_limits(app: Flask) -> None:
    """Throttle the registration, confirmation, resend and token routes (by declared purpose)."""
    limits.init_app(app)


def register_error_handlers(app: Flask) -> None:
    """Routing errors under /api/ answer JSON in the matching profile's format."""
    register_routing_errors(app)


def register_commands(app: Flask) -> None:
    """`flask users ...` and `flask mail ...`."""
    cli.init_app(app)


def register_shell_context(app: Flask) -> None:
    """Names available in `flask shell`."""
    app.shell_context_processor(lambda: {"db": db, "User": models.User,
                                         "OutboxMessage": models.OutboxMessage})
