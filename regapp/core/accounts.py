"""Registration and confirmation services, shared by every profile and the CLI."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import EmailConfirmation
from ..models import OutboxMessage
from ..models import User
from ..models import utcnow
from . import tokens
from .errors import AlreadyConfirmed
from .errors import CodeMismatch
from .errors import FieldError
from .errors import FieldErrors
from .errors import TokenExpired
from .errors import TokenInvalid
from .errors import TooManyAttempts
from .errors import UnknownAccount
from .identity import check_username
from .identity import email_key
from .identity import normalize_email
from .identity import username_key
from .login import api_token_hash
from .passwords import DjangoPolicy
from .passwords import hash_password

PROFILE_FIELDS = ("first_name", "insertion", "last_name", "postal_code", "phone", "avatar")


@dataclass
class Registration:
    """What ``register`` made: the user, and the api_token when one was asked for."""

    user: User
    api_token: str | None = None


def register(data: dict, *, policy, account_type: str = "customer",
             issue_api_token: bool = False, confirmed: bool = False,
             resolver=None) -> Registration:
    """Create an account and queue its confirmation email in the same transaction.

    ``data`` holds canonical fields (``email``, ``password``, optional
    ``username`` and profile fields), already shape-checked by the caller.

    :raises FieldErrors: codes ``invalid``/``undeliverable`` (email),
        ``unique`` (email, username), the policy's password codes.
    """
    email = _checked_email(data["email"], resolver)
    username = data.get("username") or None
    ukey = check_username(username) if username else None
    ekey = email_key(email)

    # Fast path to report both duplicates at once; the constraints decide.
    taken = _taken_fields(ekey, ukey)
    if taken:
        raise FieldErrors([FieldError(name, "unique") for name in taken])
    attrs = {"username": username, "email": email,
             "first_name": data.get("first_name"), "last_name": data.get("last_name")}
    errors = policy.validate(data["password"], attrs)
    if errors:
        raise FieldErrors(errors)
    # End the read transaction before the slow hash, so no transaction (or pooled
    # connection's lock) is held while hashing. The unique constraints still decide.
    db.session.rollback()

    user = User(
        username=username, username_key=ukey, email=email, email_key=ekey,
        password_hash=hash_password(data["password"]), account_type=account_type,
        is_email_confirmed=confirmed, confirmed_at=utcnow() if confirmed else None,
        code_failures=0,
        **{name: data.get(name) for name in PROFILE_FIELDS},
    )
    api_token = secrets.token_hex(16) if issue_api_token else None
    if api_token:
        user.api_token_hash = api_token_hash(api_token)
    db.session.add(user)
    try:
        db.session.flush()
        if not confirmed:
            _send_confirmation(user)
        db.session.commit()
    except IntegrityError as exc:
        # A concurrent registration won the race: the constraint is the arbiter.
        db.session.rollback()
        raise FieldErrors(_duplicate_fields(exc, ekey, ukey)) from None
    except Exception:
        db.session.rollback()
        raise
    return Registration(user=user, api_token=api_token)


def create_account(data: dict, *, account_type: str, confirmed: bool = False,
                   policy=None) -> User:
    """The operator path: the same checks as the API, any account type."""
    return register(data, policy=policy or DjangoPolicy(), account_type=account_type,
                    confirmed=confirmed).user


def _checked_email(raw: str, resolver=None) -> str:
    check = current_app.config["EMAIL_CHECK_DELIVERABILITY"]
    if resolver is None:
        # An app-injected dnspython-style resolver (tests use a fake: no network).
        resolver = current_app.extensions.get("regapp.dns_resolver")
    return normalize_email(raw, check_deliverability=check, resolver=resolver)


def _taken_fields(ekey: str | None, ukey: str | None) -> list[str]:
    taken = []
    if ukey is not None and db.session.scalar(
            select(User.id).where(User.username_key == ukey)) is not None:
        taken.append("username")
    if ekey is not None and db.session.scalar(
            select(User.id).where(User.email_key == ekey)) is not None:
        taken.append("email")
    return taken


def _duplicate_fields(exc: IntegrityError, ekey: str, ukey: str | None):
    text = str(exc.orig)
    fields = [name for name in ("username", "email") if f"{name}_key" in text]
    if not fields:  # an unnamed constraint message: ask the database again
        fields = _taken_fields(ekey, ukey)
    if not fields:  # not a duplicate at all: a real error, not the client's fault
        raise exc
    return [FieldError(name, "unique") for name in fields]


def _send_confirmation(user: User) -> None:
    """Create a fresh code, queue the email with link and code (caller commits)."""
    code = tokens.new_code()
    now = utcnow()
    db.session.add(EmailConfirmation(
        # Bound to the address too: a code dies when the address changes (SECURITY B6).
        user_id=user.id, code_hash=tokens.hash_code(tokens.code_subject(user), code),
        attempts=0,
        expires_at=now + timedelta(seconds=current_app.config["CONFIRM_TOKEN_MAX_AGE"]),
    ))
    user.confirmation_sent_at = now
    from .mail import queue_confirmation  # noqa: PLC0415 - mail imports templates

    queue_confirmation(user, tokens.make_confirm_token(user), code)


def _mark_confirmed(user_id: int) -> None:
    """Flip the flag with a conditional UPDATE: exactly one caller wins."""
    result = db.session.execute(
        update(User)
        .where(User.id == user_id, User.is_email_confirmed.is_(False))
        # Credentials handed out before confirmation die with it (pre-hijacking);
        # JWTs are checked against confirmed_at in jwt_tokens.
        .values(is_email_confirmed=True, confirmed_at=utcnow(), api_token_hash=None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        db.session.rollback()
        raise AlreadyConfirmed()


def user_for_token(token) -> User:
    """The user a confirmation token belongs to, whatever its confirmation state.

    :raises TokenInvalid: bad token, unknown user, or an address that changed.
    :raises TokenExpired: a genuine token past its lifetime.
    """
    user_id, fingerprint = tokens.load_confirm_token(token)
    user = db.session.get(User, user_id)
    if user is None or fingerprint != tokens.email_fingerprint(user.email_key):
        raise TokenInvalid()
    return user


def confirm(token) -> User:
    """Confirm the address a signed token was issued for.

    :raises TokenInvalid, TokenExpired: see ``user_for_token``.
    :raises AlreadyConfirmed: the address was confirmed before.
    """
    user = user_for_token(token)
    if user.is_email_confirmed:
        raise AlreadyConfirmed()
    _mark_confirmed(user.id)
    db.session.commit()
    db.session.refresh(user)
    return user


def confirm_code(email, code) -> User:
    """Confirm with the address and its emailed 6-digit code.

    Unknown addresses and wrong codes give the same error after the same work,
    and no refusal comes sooner than ``CONFIRM_CODE_MIN_SECONDS``.

    :raises CodeMismatch: wrong code, malformed code or unknown address.
    :raises TooManyAttempts: this code (or the account's lifetime cap) is used up.
    :raises TokenExpired: the right code, too late.
    :raises AlreadyConfirmed: a code sent to this address, which is already confirmed.
    """
    started = time.monotonic()
    try:
        return _confirm_code(email, code)
    except (CodeMismatch, TooManyAttempts, TokenExpired, AlreadyConfirmed):
        # A wrong guess at a pending account commits a counter; without a floor that
        # write's latency would tell pending addresses from unknown ones (SECURITY B9).
        db.session.rollback()  # wait with no transaction (nor SQLite's write lock) open
        delay = started + current_app.config["CONFIRM_CODE_MIN_SECONDS"] - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        raise


def _confirm_code(email, code) -> User:
    cfg = current_app.config
    user = None
    if isinstance(email, str) and 0 < len(email) <= 320:
        user = db.session.scalar(select(User).where(User.email_key == email_key(email)))
    if user is None or not tokens.is_code(code):
        tokens.hash_code(0, "000000")  # same work as a real comparison
        raise CodeMismatch()
    rows = db.session.scalars(
        select(EmailConfirmation).where(EmailConfirmation.user_id == user.id)
        .order_by(EmailConfirmation.id.desc())
    ).all()
    subject = tokens.code_subject(user)  # codes sent to another address never match
    if user.is_email_confirmed:
        # Any code this address was sent proves ownership, also when the link
        # (not the code) confirmed it: say "already confirmed", not "wrong code".
        if any(tokens.code_matches(r.code_hash, subject, code) for r in rows):
            raise AlreadyConfirmed()
        raise CodeMismatch()
    current = rows[0] if rows else None
    if current is None:
        raise CodeMismatch()
    if current.used_at is not None:
        # Used after we read the user: a concurrent request with this code won.
        if tokens.code_matches(current.code_hash, subject, code):
            raise AlreadyConfirmed()
        raise CodeMismatch()
    max_attempts = cfg["CONFIRM_CODE_MAX_ATTEMPTS"]
    if current.attempts >= max_attempts or user.code_failures >= cfg["CONFIRM_CODE_LIFETIME_CAP"]:
        raise TooManyAttempts()
    if not tokens.code_matches(current.code_hash, subject, code):
        _record_wrong_code(current.id, user.id)
        raise CodeMismatch()
    if current.expires_at <= utcnow():
        raise TokenExpired()
    used = db.session.execute(
        update(EmailConfirmation)
        .where(EmailConfirmation.id == current.id, EmailConfirmation.used_at.is_(None),
               EmailConfirmation.attempts < max_attempts)
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if used.rowcount != 1:
        db.session.rollback()
        # A concurrent request with the same code won (already confirmed), or
        # wrong guesses used the code up in the meantime.
        used_at = db.session.scalar(
            select(EmailConfirmation.used_at).where(EmailConfirmation.id == current.id))
        raise AlreadyConfirmed() if used_at is not None else TooManyAttempts()
    _mark_confirmed(user.id)
    db.session.commit()
    db.session.refresh(user)
    return user


def _record_wrong_code(confirmation_id: int, user_id: int) -> None:
    """Count a wrong guess with conditional UPDATEs (never read-modify-write)."""
    cfg = current_app.config
    counted = db.session.execute(
        update(EmailConfirmation)
        .where(EmailConfirmation.id == confirmation_id,
               EmailConfirmation.attempts < cfg["CONFIRM_CODE_MAX_ATTEMPTS"])
        .values(attempts=EmailConfirmation.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        update(User)
        .where(User.id == user_id)
        .values(code_failures=User.code_failures + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if counted.rowcount != 1:
        raise TooManyAttempts()


def resend_confirmation(email) -> bool:
    """Queue a fresh code and link for an unconfirmed address, at most once per cooldown.

    Returns whether a message was queued; callers must answer the same either
    way, so the answer never tells whether the address exists.
    """
    if not isinstance(email, str) or not email or len(email) > 320:
        return False
    user = db.session.scalar(select(User).where(User.email_key == email_key(email)))
    if user is None or user.is_email_confirmed:
        return False
    now = utcnow()
    cutoff = now - timedelta(seconds=current_app.config["RESEND_COOLDOWN"])
    # The cooldown is claimed with a conditional UPDATE, so concurrent resends send one.
    claimed = db.session.execute(
        update(User)
        .where(User.id == user.id, User.is_email_confirmed.is_(False),
               (User.confirmation_sent_at.is_(None)) | (User.confirmation_sent_at <= cutoff))
        .values(confirmation_sent_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        db.session.rollback()
        return False
    db.session.refresh(user)
    _send_confirmation(user)
    db.session.commit()
    return True


def taken(data: dict) -> list[FieldError]:
    """``unique`` errors for the ``username``/``email`` in ``data`` that are in use.

    Lets a profile report duplicates together with shape errors, as DRF does;
    ``register`` still decides (the unique constraints are the arbiter).
    """
    username, email = data.get("username"), data.get("email")
    ukey = username_key(username) if isinstance(username, str) and username else None
    ekey = None
    if isinstance(email, str) and email:
        try:
            ekey = email_key(normalize_email(email))
        except FieldErrors:
            pass
    return [FieldError(name, "unique") for name in _taken_fields(ekey, ukey)]


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
    _mark_confirmed(user.id)
    db.session.commit()
    db.session.refresh(user)
    return user


def delete_user(user: User) -> None:
    """Delete an account, its confirmation codes and its unsent confirmation mail."""
    _delete(user)
    db.session.commit()


def _delete(user: User) -> None:
    db.session.execute(delete(EmailConfirmation).where(EmailConfirmation.user_id == user.id))
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


def count_users() -> int:
    return db.session.scalar(select(func.count(User.id)))
