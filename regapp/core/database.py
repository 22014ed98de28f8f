"""Database engine settings: SQLite pragmas for concurrent writers, bounded waits."""

from __future__ import annotations

import sqlite3
import time

from sqlalchemy import event
from sqlalchemy import exc
from sqlalchemy import make_url
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

SQLITE_BUSY_TIMEOUT_MS = 5000
PG_CONNECT_TIMEOUT_S = 5
# A pooled server connection is pinged before use only after it sat idle this long
# (a restarted database, a proxy's idle timeout); under load connections come back
# within milliseconds and go out again without the round trip.
PING_AFTER_IDLE_S = 1.0
# Server connections are replaced after this long, before a proxy or firewall drops them.
POOL_RECYCLE_S = 1800

# Transactions on SQLite are left to sqlite3's own control on purpose: it runs
# SELECTs outside any transaction and issues BEGIN just before the first write.
# A transaction therefore never holds a read snapshot when it starts writing, so
# busy_timeout applies: concurrent writers queue instead of getting SQLITE_BUSY.
# SQLAlchemy's "emit BEGIN ourselves" recipe (or Python 3.12 autocommit=False)
# would open the snapshot at the first read, and read-then-write transactions
# (register: look for duplicates, then INSERT) would fail at once with "database
# is locked"; "BEGIN IMMEDIATE" avoids that but holds the write lock across every
# read, password hashing and the mail dispatcher's SMTP I/O.
# tests/security/test_d_concurrency.py pins this (D1, D2, D6).


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """WAL lets readers and one writer work together; busy_timeout waits for the lock
    instead of failing at once with "database is locked"."""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@event.listens_for(Pool, "checkin")
def _note_idle_since(dbapi_connection, connection_record):
    connection_record.info["idle_since"] = time.monotonic()


@event.listens_for(Pool, "checkout")
def _ping_if_idle(dbapi_connection, connection_record, connection_proxy):
    """pool_pre_ping only where it pays: for a connection that sat idle, not per checkout.

    A dead connection raises DisconnectionError, and the pool replaces it with a
    fresh one (up to three tries) before the request sees anything.
    """
    if isinstance(dbapi_connection, sqlite3.Connection):
        return  # a file, not a server: nothing can drop it
    idle_since = connection_record.info.pop("idle_since", None)
    if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        # psycopg opened a transaction for the SELECT: end it, the pool expects none.
        dbapi_connection.rollback()
    except Exception as error:  # noqa: BLE001 - any failure means: use another connection
        raise exc.DisconnectionError(type(error).__name__) from None


def init_app(app) -> None:
    """Bounded waits: SQLite's lock timeout, PostgreSQL's connect timeout; on PostgreSQL,
    cursors that describe their results on demand (``pgcursor``)."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    connect_args = dict(options.get("connect_args") or {})
    if uri.startswith("sqlite"):
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    elif uri.startswith("postgresql"):
        from . import pgcursor  # noqa: PLC0415 - psycopg only where it is the driver

        options.setdefault("pool_recycle", POOL_RECYCLE_S)
        connect_args.setdefault("cursor_factory", pgcursor.Cursor)
        if "connect_timeout" not in make_url(uri).query:
            # libpq waits for an unreachable host (no RST, just silence) for minutes;
            # gunicorn would kill the worker first. This way the client gets a 503.
            connect_args.setdefault("connect_timeout", PG_CONNECT_TIMEOUT_S)
    else:
        return
    options["connect_args"] = connect_args
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


# SQLSTATE of PostgreSQL's "relation does not exist" / "column does not exist";
# SQLite only has the message text.
UNDEFINED_SQLSTATES = frozenset({"42P01", "42703"})
SQLITE_UNDEFINED = ("no such table", "no such column", "has no column named")


def schema_missing(exc) -> bool:
    """True when a DBAPIError means the schema is behind the code (tables or
    columns missing): the database is reachable but not migrated."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "sqlstate", None) in UNDEFINED_SQLSTATES:
        return True
    return isinstance(orig, sqlite3.OperationalError) and str(orig).startswith(SQLITE_UNDEFINED)


def log_unavailable(logger, exc) -> None:
    """One warning for a request the database could not serve; for a schema that is
    behind, it says what to do. Never the SQL or its parameters."""
    if schema_missing(exc):
        logger.error("database schema is not migrated (%s): run `flask db upgrade`",
                     type(exc.orig).__name__)
    else:
        logger.warning("database unavailable: %s", type(exc.orig).__name__)
