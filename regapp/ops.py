"""Operations: ``GET /healthz`` (the process answers) and ``GET /readyz`` (it can serve).

``/readyz`` is 200 only when the database answers and its schema is at the
migrations' head (alembic's script directory against the database's revision);
else 503 with the reason. Both bodies also show the outbox: backlog, the age of
the oldest unsent message, and how many messages failed for good. Neither ever
shows an address, a host name or a database URL.
"""

from __future__ import annotations

import logging

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Blueprint
from flask import current_app
from flask import jsonify
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import SQLAlchemyError

from .core import database
from .core import outbox
from .extensions import db

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)
HEADS_KEY = "regapp.migration_heads"


@bp.after_request
def no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/healthz")
def healthz():
    """Liveness: the process is up and answers (the database is not consulted)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Readiness: database reachable and migrated to head; outbox figures."""
    body = {"status": "ready", "database": "ok"}
    status = 200
    try:
        current = _database_heads()
        expected = _script_heads()
        body["migration"] = {"database": sorted(current), "head": sorted(expected)}
        if current != expected:
            body.update(status="not ready", database="not migrated")
            log.error("readiness: database revision %s, migrations head %s: "
                      "run `flask db upgrade`", sorted(current) or "none", sorted(expected))
            status = 503
        body["outbox"] = outbox.stats() if status == 200 else None
    except SQLAlchemyError as exc:
        _rollback()
        reason = "not migrated" if database.schema_missing(exc) else "unreachable"
        body.update(status="not ready", database=reason, outbox=None)
        if isinstance(exc, DBAPIError):
            database.log_unavailable(current_app.logger, exc)
        else:
            log.warning("readiness: database error %s", type(exc).__name__)
        status = 503
    finally:
        db.session.remove()
    response = jsonify(body)
    response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = "5"
    return response


def _database_heads() -> set[str]:
    with db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        return set(MigrationContext.configure(conn).get_current_heads())


def _script_heads() -> set[str]:
    """The head revision(s) of migrations/ (read once per app)."""
    heads = current_app.extensions.get(HEADS_KEY)
    if heads is None:
        migrate = current_app.extensions["migrate"]
        config = migrate.migrate.get_config(migrate.directory)
        heads = current_app.extensions[HEADS_KEY] = frozenset(
            ScriptDirectory.from_config(config).get_heads())
    return set(heads)


def _rollback():
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the connection may be gone already
        pass
