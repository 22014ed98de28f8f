"""Read what the database holds, for tests: counts and stored rows."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy import select

from regapp.extensions import db
from regapp.models import OutboxMessage
from regapp.models import User


def counts(app) -> tuple[int, int]:
    """(users, queued emails) in the database."""
    with app.app_context():
        return (db.session.scalar(select(func.count(User.id))),
                db.session.scalar(select(func.count(OutboxMessage.id))))


def user_row(app, email_key: str) -> User | None:
    """The stored user with this email key, detached from the session (or None)."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email_key == email_key))
        if user is not None:
            db.session.expunge(user)
        return user
