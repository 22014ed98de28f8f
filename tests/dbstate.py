"""Read what the database holds, for tests: counts and stored rows."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import func
from sqlalchemy import select

from regapp.extensions import db
from regapp.models import OutboxMessage
from regapp.models import User


def counts(app) -> tuple[int, int]:
    """(users, queued confirmation emails) in the database. A refused duplicate
    sign-up also mails the address's owner (kind ``duplicate``), counted apart."""
    with app.app_context():
        return (db.session.scalar(select(func.count(User.id))),
                db.session.scalar(select(func.count(OutboxMessage.id))
                                  .where(OutboxMessage.kind == "confirm")))


def user_row(app, email_key: str) -> User | None:
    """The stored user with this email key, detached from the session (or None)."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email_key == email_key))
        if user is not None:
            db.session.expunge(user)
        return user


def fail_outbox_inserts(app, backend, on: bool) -> None:
    """A trigger makes the outbox INSERT (after the user's) fail inside the database."""
    with app.app_context(), db.engine.begin() as conn:
        if backend == "postgresql":
            if on:
                conn.execute(sa.text(
                    "CREATE FUNCTION e5_outbox_down() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'outbox down'; END $$"))
                conn.execute(sa.text(
                    "CREATE TRIGGER e5_outbox_down BEFORE INSERT ON outbox_messages "
                    "FOR EACH ROW EXECUTE FUNCTION e5_outbox_down()"))
            else:
                conn.execute(sa.text("DROP TRIGGER IF EXISTS e5_outbox_down ON outbox_messages"))
                conn.execute(sa.text("DROP FUNCTION IF EXISTS e5_outbox_down()"))
        elif on:
            conn.execute(sa.text(
                "CREATE TRIGGER e5_outbox_down BEFORE INSERT ON outbox_messages "
                "BEGIN SELECT RAISE(ABORT, 'outbox down'); END"))
        else:
            conn.execute(sa.text("DROP TRIGGER IF EXISTS e5_outbox_down"))
