"""The committed migrations build exactly the models' schema, and unwind cleanly."""

from __future__ import annotations

import contextlib
import os

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate.cli import db as db_command

from regapp import create_app
from regapp.extensions import db
from tests.serverkit import postgres_database

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
MIGRATIONS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")
TABLES = {"users", "email_confirmations", "outbox_messages", "password_reset_codes",
          "refresh_families", "security_events"}


@pytest.fixture(params=["sqlite"] + (["postgresql"] if TEST_DATABASE_URL else []))
def empty_app(request, tmp_path):
    """An app on a brand-new, empty database (not the suite's migrated one)."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = "sqlite:///" + str(tmp_path / "empty.sqlite")
        else:
            url = stack.enter_context(postgres_database("regapp_migrations"))
        app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
        yield app
        with app.app_context():
            db.engine.dispose()


def flask_db(app, *args):
    """Run ``flask db ...`` against ``app``; fail the test on a non-zero exit."""
    result = app.test_cli_runner().invoke(db_command, [*args, "--directory", MIGRATIONS])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def schema_diff(app):
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def tables(app):
    with app.app_context():
        return set(sa.inspect(db.engine).get_table_names())


def test_one_linear_history():
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    with app.app_context():
        config = app.extensions["migrate"].migrate.get_config(MIGRATIONS)
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1


def test_upgrade_builds_the_models_schema(empty_app):
    assert tables(empty_app) == set()
    assert {op[0] for op in schema_diff(empty_app)} == {"add_table", "add_index"}  # live check
    flask_db(empty_app, "upgrade")
    assert tables(empty_app) == TABLES | {"alembic_version"}
    assert schema_diff(empty_app) == []


def test_upgrade_is_idempotent_and_check_finds_nothing(empty_app):
    flask_db(empty_app, "upgrade")
    flask_db(empty_app, "upgrade")
    flask_db(empty_app, "check")  # Alembic's own "no new upgrade operations" check


def test_downgrade_to_base_and_back(empty_app):
    flask_db(empty_app, "upgrade")
    flask_db(empty_app, "downgrade", "base")
    assert tables(empty_app) <= {"alembic_version"}
    with empty_app.app_context(), db.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() is None
    flask_db(empty_app, "upgrade")
    assert schema_diff(empty_app) == []


def test_sqlite_never_reuses_user_ids(tmp_path):
    app = create_app({"TESTING": True,
                      "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(tmp_path / "ids.sqlite")})
    flask_db(app, "upgrade")
    with app.app_context(), db.engine.connect() as conn:
        ddl = conn.execute(sa.text(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'users'")).scalar()
        db.engine.dispose()
    assert "AUTOINCREMENT" in ddl.upper()
