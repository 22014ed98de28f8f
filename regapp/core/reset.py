"""Password reset, and the mail that stops pre-account hijacking.

A reset is a link and a 6-digit code in one email, like confirmation. Both are
bound to the account's reset counter: issuing a new reset, or completing one,
moves the counter on, so only the newest reset works and each works once.
Completing a reset proves control of the mailbox, so it also confirms the
address, revokes every earlier credential and sends a "password changed" notice.

Sign-ups refused because the address is taken mail the address's owner (never
the caller): a set-password link for an unconfirmed account, a "forgot your
password?" link for a confirmed one. An unconfirmed account that someone tried
to sign up for with another password is *contested*: confirming it clears its
password, so it is never handed to whoever signed up first.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from ..extensions import db
from ..models import OutboxMessage
from ..models import PasswordResetCode
from ..models import User
from ..models import utcnow
from . import login
from . import mail
from . import passwords
from . import throttle
from . import tokens
from .errors import CodeMismatch
from .errors import FieldError
from .errors import FieldErrors
from .errors import TokenExpired
from .errors import TokenInvalid
from .errors import TooManyAttempts
from .identity import lookup_key

log = logging.getLogger(__name__)

RESET, DUPLICATE, NOTICE = "reset", "duplicate", "notice"
SENT_AT = {RESET: User.reset_sent_at, DUPLICATE: User.duplicate_sent_at}
COOLDOWN = {RESET: "RESET_MAIL_COOLDOWN", DUPLICATE: "DUPLICATE_MAIL_COOLDOWN"}
GLOBAL_KEY = "*"


def request_reset(email: str) -> bool:
    """Mail a reset link and code to an existing account (cooldown and daily cap).

    ``email`` is normalised by the caller. Returns whether mail was queued;
    callers answer the same either way.
    """
    user = _by_email(email)
    if user is None or not _claim_mail(user, RESET):
        db.session.rollback()
        return False
    _queue_reset(user, "reset")
    db.session.commit()
    return True


def on_duplicate_signup(email_key: str, password) -> None:
    """A sign-up was refused because ``email_key`` is taken: tell the owner, and
    contest an unconfirmed account whose password the caller did not know."""
    user = db.session.scalar(select(User).where(User.email_key == email_key))
    if user is None:
        return
    contestable = (not user.is_email_confirmed and not user.contested
                   and isinstance(password, str) and bool(user.password_hash))
    # The same hash work whatever the account's state, so the refusal's latency
    # does not tell a pending account from a confirmed one.
    same = passwords.verify_password(
        user.password_hash if contestable else login.dummy_hash(),
        password if isinstance(password, str) else "")[0]
    if contestable and not same:
        db.session.execute(update(User).where(User.id == user.id,
                                              User.is_email_confirmed.is_(False))
                           .values(contested=True)
                           .execution_options(synchronize_session=False))
    if _claim_mail(user, DUPLICATE):
        db.session.refresh(user)
        _queue_reset(user, "duplicate_confirmed" if user.is_email_confirmed
                     else "duplicate_pending")
    db.session.commit()


def after_confirmation(user: User) -> None:
    """Called in the confirming transaction: a contested account loses its password
    and its owner gets a set-password mail (the caller commits)."""
    if not user.contested:
        return
    db.session.execute(update(User).where(User.id == user.id)
                       .values(password_hash="", contested=False,
                               credential_version=User.credential_version + 1)
                       .execution_options(synchronize_session=False))
    db.session.refresh(user)
    _queue_reset(user, "set_password")


def user_for_token(token) -> User:
    """The account a live reset token belongs to. :raises TokenInvalid, TokenExpired:"""
    user_id, fingerprint, counter = tokens.load_reset_token(token)
    user = db.session.get(User, user_id)
    if (user is None or fingerprint != tokens.email_fingerprint(user.email_key)
            or counter != user.reset_counter):
        raise TokenInvalid()
    return user


def reset_with_token(token, new_password, policy_for) -> User:
    """Set a new password with the emailed link's token.

    :raises TokenInvalid, TokenExpired: see ``user_for_token`` (also a replay).
    :raises FieldErrors: the account's policy refuses ``new_password``.
    """
    user = user_for_token(token)
    return _done(_reset(user, user.reset_counter, new_password, policy_for), "link")


def reset_with_code(email, code, new_password, policy_for) -> User:
    """Set a new password with the address and the emailed 6-digit code.

    :raises CodeMismatch: wrong code, unknown address, or the service-wide
        ceiling of wrong reset codes is reached.
    :raises TooManyAttempts: this code (5) or the account (20) is used up.
    :raises TokenExpired: the right code, too late.
    :raises FieldErrors: the account's policy refuses ``new_password``.
    """
    cfg = current_app.config
    if not tokens.is_code(code):
        raise CodeMismatch()
    if throttle.count(throttle.RESET_CODE, GLOBAL_KEY) >= cfg["RESET_CODE_GLOBAL_CEILING"]:
        log.error("password reset codes refused: more than %s wrong reset codes in an "
                  "hour service-wide (links keep working)", cfg["RESET_CODE_GLOBAL_CEILING"])
        raise CodeMismatch()
    user = _by_email(email) if isinstance(email, str) and 0 < len(email) <= 320 else None
    if user is None:
        tokens.hash_code(0, "000000", purpose=tokens.RESET_CODE_PURPOSE)
        throttle.record(throttle.RESET_CODE, GLOBAL_KEY)  # a wrong code all the same
        raise CodeMismatch()
    row = db.session.scalar(
        select(PasswordResetCode)
        .where(PasswordResetCode.user_id == user.id,
               PasswordResetCode.counter == user.reset_counter,
               PasswordResetCode.used_at.is_(None))
        .order_by(PasswordResetCode.id.desc()).limit(1))
    if row is None:  # no live code (used, or never sent): a wrong guess all the same
        throttle.record(throttle.RESET_CODE, GLOBAL_KEY)
        raise CodeMismatch()
    if (row.attempts >= cfg["RESET_CODE_MAX_ATTEMPTS"]
            or user.reset_code_failures >= cfg["RESET_CODE_LIFETIME_CAP"]):
        raise TooManyAttempts()
    if not tokens.code_matches(row.code_hash, _subject(user), code, tokens.RESET_CODE_PURPOSE):
        _count_wrong_code(row.id, user.id)
        raise CodeMismatch()
    if row.expires_at <= utcnow():
        raise TokenExpired()
    return _done(_reset(user, row.counter, new_password, policy_for, code_id=row.id), "code")


def _done(user: User, method: str) -> User:
    """Log and signal a committed reset."""
    from .. import signals  # noqa: PLC0415 - signals imports flask only
    from ..logs import event  # noqa: PLC0415

    event(log, "password_reset", "password reset", account_id=user.id, method=method)
    signals.send(signals.password_reset, user=user, method=method)
    return user


def _reset(user: User, counter: int, new_password, policy_for, code_id: int | None = None
           ) -> User:
    attrs = {"username": user.username, "email": user.email,
             "first_name": user.first_name, "last_name": user.last_name}
    errors = passwords.check(policy_for(user), new_password, attrs)
    if errors:
        raise FieldErrors([FieldError("new_password", e.code, e.params) for e in errors])
    user_id = user.id
    db.session.rollback()  # no transaction open across the slow hash
    password_hash = passwords.hash_password(new_password)
    now = utcnow()
    cfg = current_app.config
    claim = [User.id == user_id, User.reset_counter == counter]
    if code_id is not None:  # wrong guesses counted meanwhile may have used the account up
        claim.append(User.reset_code_failures < cfg["RESET_CODE_LIFETIME_CAP"])
    done = db.session.execute(
        update(User)
        .where(*claim)
        .values(password_hash=password_hash, reset_counter=User.reset_counter + 1,
                credential_version=User.credential_version + 1, api_token_hash=None,
                is_email_confirmed=True, confirmed_at=func.coalesce(User.confirmed_at, now),
                contested=False, reset_code_failures=0)
        .execution_options(synchronize_session=False))
    if done.rowcount != 1:  # a concurrent reset, or a newer one, won
        db.session.rollback()
        if code_id is not None:
            raise CodeMismatch()
        raise TokenInvalid()
    if code_id is not None:
        # The code is used once, and only if concurrent wrong guesses left it alive.
        used = db.session.execute(
            update(PasswordResetCode)
            .where(PasswordResetCode.id == code_id, PasswordResetCode.used_at.is_(None),
                   PasswordResetCode.attempts < cfg["RESET_CODE_MAX_ATTEMPTS"])
            .values(used_at=now).execution_options(synchronize_session=False))
        if used.rowcount != 1:
            db.session.rollback()
            raise TooManyAttempts()
    db.session.execute(update(PasswordResetCode)
                       .where(PasswordResetCode.user_id == user_id,
                              PasswordResetCode.used_at.is_(None))
                       .values(used_at=now).execution_options(synchronize_session=False))
    # The owner on a new device is never stuck behind the wrong-password lock.
    throttle.clear(throttle.LOGIN, throttle.hmac_key("account", user_id))
    user = db.session.get(User, user_id, populate_existing=True)
    _queue_reset(user, "password_changed", with_code=False)
    db.session.commit()
    return user


def _by_email(email) -> User | None:
    """The account of an address as a person types it (normalised as registration does)."""
    key = lookup_key(email)
    return key and db.session.scalar(select(User).where(User.email_key == key))


def _subject(user: User) -> str:
    return f"reset:{tokens.code_subject(user)}"


def _claim_mail(user: User, kind: str) -> bool:
    """Claim ``kind``'s per-address cooldown (a conditional UPDATE, so concurrent
    requests send one) and check its daily cap."""
    cfg = current_app.config
    now = utcnow()
    sent_today = db.session.scalar(
        select(func.count(OutboxMessage.id))
        .where(OutboxMessage.to_addr == user.email, OutboxMessage.kind == kind,
               OutboxMessage.created_at > now - timedelta(days=1)))
    if sent_today >= cfg["SECURITY_MAIL_DAILY_CAP"]:
        return False
    column = SENT_AT[kind]
    cutoff = now - timedelta(seconds=cfg[COOLDOWN[kind]])
    claimed = db.session.execute(
        update(User).where(User.id == user.id, column.is_(None) | (column <= cutoff))
        .values({column.key: now}).execution_options(synchronize_session=False))
    return claimed.rowcount == 1


def _queue_reset(user: User, template: str, with_code: bool = True) -> None:
    """Move the reset counter on (older resets die), store a new code, queue ``template``."""
    db.session.execute(update(User).where(User.id == user.id)
                       .values(reset_counter=User.reset_counter + 1)
                       .execution_options(synchronize_session=False))
    db.session.refresh(user)
    code = None
    if with_code:
        code = tokens.new_code()
        db.session.add(PasswordResetCode(
            user_id=user.id, counter=user.reset_counter, attempts=0,
            code_hash=tokens.hash_code(_subject(user), code, purpose=tokens.RESET_CODE_PURPOSE),
            expires_at=utcnow() + timedelta(seconds=current_app.config["PASSWORD_RESET_MAX_AGE"])))
    kind = {"password_changed": NOTICE, "reset": RESET, "set_password": RESET}.get(
        template, DUPLICATE)
    mail.queue_reset(user, template, tokens.make_reset_token(user), code, kind=kind)


def _count_wrong_code(row_id: int, user_id: int) -> None:
    """Count a wrong guess with conditional UPDATEs (never read-modify-write): of many
    concurrent guesses only those under the caps count, the rest are refused as used up.

    :raises TooManyAttempts: the code or the account was used up meanwhile.
    """
    cfg = current_app.config
    counted = db.session.execute(
        update(PasswordResetCode)
        .where(PasswordResetCode.id == row_id,
               PasswordResetCode.attempts < cfg["RESET_CODE_MAX_ATTEMPTS"])
        .values(attempts=PasswordResetCode.attempts + 1)
        .execution_options(synchronize_session=False))
    account = db.session.execute(
        update(User)
        .where(User.id == user_id, User.reset_code_failures < cfg["RESET_CODE_LIFETIME_CAP"])
        .values(reset_code_failures=User.reset_code_failures + 1)
        .execution_options(synchronize_session=False))
    if counted.rowcount != 1 or account.rowcount != 1:
        db.session.rollback()
        throttle.record(throttle.RESET_CODE, GLOBAL_KEY)  # commits
        raise TooManyAttempts()
    throttle.record(throttle.RESET_CODE, GLOBAL_KEY)  # commits
