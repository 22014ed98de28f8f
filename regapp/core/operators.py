"""Operator actions (the CLI): find, confirm by hand, delete and purge accounts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy import select

from ..extensions import db
from ..models import EmailConfirmation
from ..models import OutboxMessage
from ..models import PasswordResetCode
from ..models import RefreshFamily
from ..models import User
from . import rows
from . import tokens
from .confirmation import confirmed
from .confirmation import set_confirmed
from .errors import AlreadyConfirmed
from .errors import TokenInvalid
from .errors import UnknownAccount
from .identity import email_key
from .identity import username_key


def find_user(identifier: str) -> User:
    """Look an account up by id, email or username (operator commands).

    :raises UnknownAccount: nothing matches.
    """
    user = None
    if identifier.isascii() and identifier.isdigit():
        user = db.session.get(User, int(identifier))
    if user is None and "@" in identifier:
        user = db.session.scalar(select(User).where(User.email_key == email_key(identifier)))
    if user is None:
        user = db.session.scalar(
            select(User).where(User.username_key == username_key(identifier)))
    if user is None:
        raise UnknownAccount(identifier=identifier)
    return user


def mark_confirmed(user: User) -> User:
    """Confirm by hand (operator). :raises AlreadyConfirmed:"""
    set_confirmed(user.id)
    rows.commit()
    confirmed(user, "operator")
    return user


def delete_user(user: User) -> None:
    """Delete an account, its confirmation codes and its unsent confirmation mail."""
    _delete(user)
    db.session.commit()


def user_for_cancel_token(token) -> User:
    """The account a "this wasn't me" token names. :raises TokenInvalid, TokenExpired:"""
    user_id, fingerprint = tokens.load_cancel_token(token)
    user = db.session.get(User, user_id)
    if user is None or fingerprint != tokens.email_fingerprint(user.email_key):
        raise TokenInvalid()
    return user


def cancel_registration(token) -> None:
    """"This wasn't me": delete the unconfirmed account the token names and its
    queued mail, which frees the address at once.

    :raises TokenInvalid, TokenExpired: see ``user_for_cancel_token`` (also an
        account already cancelled).
    :raises AlreadyConfirmed: a confirmed account is never deleted this way.
    """
    user = user_for_cancel_token(token)
    # Re-read under a row lock (PostgreSQL): a confirmation that wins the race keeps it.
    current = db.session.scalar(
        select(User).where(User.id == user.id, User.is_email_confirmed.is_(False))
        .with_for_update().execution_options(populate_existing=True))
    if current is None:
        db.session.rollback()
        raise AlreadyConfirmed()
    _delete(current)
    db.session.commit()


def _delete(user: User) -> None:
    db.session.execute(delete(EmailConfirmation).where(EmailConfirmation.user_id == user.id))
    db.session.execute(delete(PasswordResetCode).where(PasswordResetCode.user_id == user.id))
    db.session.execute(delete(RefreshFamily).where(RefreshFamily.user_id == user.id))
    # Mail still queued for the address would carry a link to an account that is gone.
    db.session.execute(delete(OutboxMessage).where(
        OutboxMessage.to_addr == user.email, OutboxMessage.status.in_(("pending", "failed"))))
    db.session.delete(user)


def unconfirmed_before(cutoff: datetime) -> list[User]:
    """Unconfirmed accounts created before ``cutoff``, oldest first."""
    return list(db.session.scalars(
        select(User).where(User.is_email_confirmed.is_(False), User.created_at < cutoff)
        .order_by(User.id)
    ))


def purge_unconfirmed(cutoff: datetime, *, dry_run: bool = False) -> list[User]:
    """Delete unconfirmed accounts created before ``cutoff``; return them."""
    users = unconfirmed_before(cutoff)
    if dry_run:
        return users
    purged = []
    for user in users:
        # Re-checked under a row lock (PostgreSQL) right before deleting: an account
        # confirmed since the listing is kept.
        current = db.session.scalar(
            select(User).where(User.id == user.id, User.is_email_confirmed.is_(False))
            .with_for_update().execution_options(populate_existing=True))
        if current is not None:
            _delete(current)
            purged.append(current)
        db.session.commit()
    return purged
