"""On PostgreSQL the app's connections use regapp.core.pgcursor.Cursor: a description
that builds psycopg's Column objects only when read, and then exactly psycopg's own."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from regapp.core import pgcursor
from regapp.extensions import db
from regapp.models import User

pytestmark = pytest.mark.postgresql_only

QUERY = "SELECT 1 AS one, 'two'::text AS two, 3.5::numeric(4, 1) AS three, NULL::date AS four"


@pytest.fixture
def raw(app):
    """A pooled DBAPI connection of the app's engine (psycopg's, with the app's cursors)."""
    with app.app_context():
        connection = db.engine.raw_connection()
        try:
            yield connection
        finally:
            connection.rollback()
            connection.close()


def _columns(description) -> list[tuple]:
    return [(c.name, c.type_code, c.display_size, c.internal_size, c.precision, c.scale,
             c.null_ok, c.type_display) for c in description]


def test_the_apps_cursors_describe_results_as_psycopg_does(raw):
    ours = raw.cursor()
    theirs = psycopg.Cursor(raw.driver_connection)
    assert isinstance(ours, pgcursor.Cursor)
    ours.execute(QUERY)
    theirs.execute(QUERY)
    described = ours.description
    assert isinstance(described, pgcursor.Columns)
    assert len(described) == 4
    assert _columns(described) == _columns(theirs.description)
    assert [c.name for c in described[1:3]] == ["two", "three"]
    assert described[-1].name == "four"


def test_a_description_read_late_describes_its_own_result(raw):
    cursor = raw.cursor()
    cursor.execute(QUERY)
    first = cursor.description  # nothing read of it yet
    cursor.execute("SELECT 'x'::text AS other")
    assert [c.name for c in first] == ["one", "two", "three", "four"]
    assert [c.name for c in cursor.description] == ["other"]


def test_statements_without_rows_have_no_description(raw):
    cursor = raw.cursor()
    cursor.execute("CREATE TEMPORARY TABLE scratch (n int)")
    assert cursor.description is None
    cursor.execute("INSERT INTO scratch VALUES (1)")
    assert cursor.description is None
    cursor.execute("SELECT")  # returns rows of no columns: described, and empty
    assert cursor.description is not None
    assert len(cursor.description) == 0
    assert list(cursor.description) == []


def test_result_keys_are_the_same_on_a_statements_first_and_later_runs(app, make_core_user):
    """SQLAlchemy builds a statement's result metadata from the description on its first
    run and reuses it afterwards: rows read the same either way."""
    with app.app_context():
        user = make_core_user()
        statement = sa.select(User.id, User.email.label("address")).where(
            User.id == sa.bindparam("uid"))
        first = db.session.execute(statement, {"uid": user.id})
        assert list(first.keys()) == ["id", "address"]
        assert first.one()._asdict() == {"id": user.id, "address": "alice@example.org"}
        again = db.session.execute(statement, {"uid": user.id}).one()
        assert again.address == "alice@example.org"
