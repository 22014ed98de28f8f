"""Confirmation: by signed token, by emailed code (with attempt limits), and resends."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import bindparam
from sqlalchemy import exists
from sqlalchemy import select
from sqlalchemy import update

from .. import signals
from ..extensions import db
from ..logs import event
from ..models import EmailConfirmation
from ..models import User
from ..models import utcnow
from . import reset
from . import rows
from . import timing
from . import tokens
from .errors import AlreadyConfirmed
from .errors import CodeMismatch
from .errors import RegappError
from .errors import TokenExpired
from .errors import TokenInvalid
from .errors import TooManyAttempts
from .identity import NormalizedEmail
from .identity import email_key
from .identity import lookup_key
from .registration import send_confirmation

log = logging.getLogger(__name__)

# The statements of the confirm paths, built once (building them per request cost
# more CPU than running them).
USERS = User.__table__
CODES = EmailConfirmation.__table__
# The account (every column: rows.loaded makes it the session's copy, with no ORM
# query machinery) and its codes, newest first, in one round trip (no code: one row
# whose code columns are NULL).
USER_AND_CODES = (select(*USERS.c, CODES.c.id.label("code_id"), CODES.c.code_hash,
                         CODES.c.attempts, CODES.c.expires_at, CODES.c.used_at)
                  .outerjoin(CODES, CODES.c.user_id == USERS.c.id)
                  .where(USERS.c.email_key == bindparam("key"))
                  .order_by(CODES.c.id.desc()))
USE_CODE = (update(CODES)
            .where(CODES.c.id == bindparam("code_id"), CODES.c.used_at.is_(None),
                   CODES.c.attempts < bindparam("max_attempts"))
            .values(used_at=bindparam("now")))
# Credentials handed out before confirmation die with it (pre-hijacking): the
# api_token is cleared and the credential version every JWT carries moves on. It
# returns every column: the answer, the log and the contested check read the account
# from it, so a link costs this one statement and no SELECT.
CONFIRM_USER = (update(USERS)
                .where(USERS.c.id == bindparam("account"), USERS.c.is_email_confirmed.is_(False))
                .values(is_email_confirmed=True, confirmed_at=bindparam("now"),
                        api_token_hash=None, credential_version=USERS.c.credential_version + 1)
                .returning(*USERS.c))
# PostgreSQL: the code used up and the account confirmed in one statement (the code's
# UPDATE a WITH query; the account's happens only if the code's did). No parameter of
# these statements is named like a column: an UPDATE takes such a key as a SET value.
_USED_CODE = USE_CODE.returning(CODES.c.id).cte("used_code")
CONFIRM_USER_BY_CODE = CONFIRM_USER.where(exists(select(_USED_CODE.c.id))).add_cte(_USED_CODE)


def confirmed(user: User, method: str) -> None:
    """Log and signal a confirmation that was committed."""
    event(log, "confirmed", "email confirmed", account_id=user.id, method=method)
    signals.send(signals.email_confirmed, user=user, method=method)


def refused(exc: RegappError, method: str) -> None:
    """Log and signal a refused link or code (no address: the account may not exist)."""
    event(log, "confirmation_failed", "confirmation refused", reason=exc.code, method=method)
    signals.send(signals.confirmation_failed, reason=exc.code, method=method)


def _key(email) -> str | None:
    """The unique key an address is stored under, the address normalised exactly as
    registration normalises it (``x@straße.de`` is ``x@xn--strae-oqa.de``).

    A stored address (an operator's lookup) that today's syntax rules would refuse
    still finds its own row; None for anything that is not a string of sane length.
    """
    if not isinstance(email, str) or not email or len(email) > 320:
        return None
    if isinstance(email, NormalizedEmail):
        return email_key(email)
    return lookup_key(email) or email_key(email)


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


def confirm(token_or_code, email=None) -> User:
    """Confirm an address by its signed token or, given ``email``, its emailed code.

    Without ``email`` the value is a signed token. With ``email`` a 6-digit
    value is the code (see ``confirm_code``); anything else is a token, which
    must have been issued for that address.

    :raises TokenInvalid, TokenExpired: see ``user_for_token``; also a token
        issued for another address than ``email``.
    :raises CodeMismatch, TooManyAttempts: see ``confirm_code``.
    :raises AlreadyConfirmed: the address was confirmed before.
    """
    if email is not None and tokens.is_code(token_or_code):
        return confirm_code(email, token_or_code)
    try:
        user = _confirm_token(token_or_code, email)
    except RegappError as exc:
        refused(exc, "link")
        raise
    rows.commit()
    confirmed(user, "link")
    return user


def _confirm_token(token, email) -> User:
    """Confirm the account ``token`` names with one UPDATE (caller commits); when the
    token does not fit the account that UPDATE returned, or nothing was updated, undo
    and refuse as ``user_for_token`` and the checks after it would have."""
    user_id, fingerprint = tokens.load_confirm_token(token)

    def fits(user) -> bool:
        return (fingerprint == tokens.email_fingerprint(user.email_key)
                and (email is None or user.email_key == _key(email)))

    changed = db.session.connection().execute(
        CONFIRM_USER, {"account": user_id, "now": utcnow()}).first()
    if changed is not None:
        user = rows.loaded(User, changed)
        if fits(user):
            reset.after_confirmation(user)  # a contested account loses its password
            return user
    db.session.rollback()  # a refusal: nothing this request did stays
    user = db.session.get(User, user_id)
    if user is None or not fits(user):
        raise TokenInvalid()
    raise AlreadyConfirmed()  # unconfirmed accounts fit for the UPDATE above


def confirm_code(email, code) -> User:
    """Confirm with the address and its emailed 6-digit code.

    Unknown addresses and wrong codes give the same error after the same work,
    and no refusal comes sooner than ``CONFIRM_CODE_MIN_SECONDS``.

    :raises CodeMismatch: wrong code, malformed code or unknown address.
    :raises TooManyAttempts: this code (or the account's lifetime cap) is used up.
    :raises TokenExpired: the right code, too late.
    :raises AlreadyConfirmed: a code sent to this address, which is already confirmed.
    """
    with timing.floor(current_app.config["CONFIRM_CODE_MIN_SECONDS"]) as wait:
        try:
            user = _confirm_code(email, code)
        except (CodeMismatch, TooManyAttempts, TokenExpired, AlreadyConfirmed) as exc:
            refused(exc, "code")
            # A wrong guess at a pending account commits a counter; without a floor
            # that write's latency would tell pending addresses from unknown ones
            # (SECURITY B9). Wait with no transaction (nor SQLite's write lock) open.
            db.session.rollback()
            raise
        wait.waive()  # the right code needs no cover
    confirmed(user, "code")
    return user


def _confirm_code(email, code) -> User:
    cfg = current_app.config
    found = []
    key = _key(email)
    if key is not None:
        found = db.session.connection().execute(USER_AND_CODES, {"key": key}).all()
    if not found or not tokens.is_code(code):
        tokens.hash_code(0, "000000")  # same work as a real comparison
        raise CodeMismatch()
    user = rows.loaded(User, found[0])
    codes = [r for r in found if r.code_id is not None]
    subject = tokens.code_subject(user)  # codes sent to another address never match
    if user.is_email_confirmed:
        # Any code this address was sent proves ownership, also when the link
        # (not the code) confirmed it: say "already confirmed", not "wrong code".
        if any(tokens.code_matches(r.code_hash, subject, code) for r in codes):
            raise AlreadyConfirmed()
        raise CodeMismatch()
    current = codes[0] if codes else None
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
        _record_wrong_code(current.code_id, user.id)
        raise CodeMismatch()
    if current.expires_at <= utcnow():
        raise TokenExpired()
    now = utcnow()
    code_params = {"code_id": current.code_id, "max_attempts": max_attempts, "now": now}
    user_params = {"account": user.id, "now": now}
    connection = db.session.connection()
    if db.engine.dialect.name == "postgresql":
        changed = connection.execute(CONFIRM_USER_BY_CODE, code_params | user_params).first()
    else:
        used = connection.execute(USE_CODE, code_params)
        changed = (connection.execute(CONFIRM_USER, user_params).first()
                   if used.rowcount == 1 else None)
    if changed is None:
        db.session.rollback()
        # A concurrent request with the same code (or the link) won: already
        # confirmed; or wrong guesses used the code up in the meantime.
        now_confirmed = db.session.scalar(
            select(User.is_email_confirmed).where(User.id == user.id))
        used_at = db.session.scalar(
            select(EmailConfirmation.used_at).where(EmailConfirmation.id == current.code_id))
        raise AlreadyConfirmed() if now_confirmed or used_at is not None else TooManyAttempts()
    user = rows.loaded(User, changed)
    reset.after_confirmation(user)  # a contested account loses its password
    rows.commit()
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
    way, so the answer never tells whether the address exists. Nor does its
    timing: whatever the address, it returns no sooner than
    ``CONFIRM_CODE_MIN_SECONDS`` after it began (the work stays below that).
    """
    with timing.floor(current_app.config["CONFIRM_CODE_MIN_SECONDS"]):
        try:
            return _resend(email)
        finally:
            db.session.rollback()  # nothing is left open while waiting (a no-op after commit)


def _resend(email) -> bool:
    key = _key(email)
    if key is None:
        return False
    user = db.session.scalar(select(User).where(User.email_key == key))
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
        return False
    db.session.refresh(user)
    send_confirmation(user)
    db.session.commit()
    event(log, "confirmation_resent", "confirmation email queued again", account_id=user.id)
    signals.send(signals.confirmation_sent, user=user, resend=True)
    return True


def set_confirmed(user_id: int) -> User:
    """Flip the flag with a conditional UPDATE: exactly one caller wins (caller commits);
    return the account as it now is.

    :raises AlreadyConfirmed: it was confirmed before.
    """
    changed = db.session.connection().execute(
        CONFIRM_USER, {"account": user_id, "now": utcnow()}).first()
    if changed is None:
        db.session.rollback()
        raise AlreadyConfirmed()
    # The session's copy takes the values the UPDATE returned: no second query.
    user = rows.loaded(User, changed)
    reset.after_confirmation(user)  # a contested account loses its password
    return user

