"""Logging in: passwords (``POST /api/token/``) and envelope api_tokens."""

from __future__ import annotations

import hashlib
import re
import secrets

from flask import current_app
from sqlalchemy import select
from sqlalchemy import update

from ..extensions import db
from ..models import User
from . import throttle
from .errors import InvalidCredentials
from .errors import TokenInvalid
from .identity import lookup_key
from .identity import username_key
from .passwords import PASSWORD_MAX_LENGTH
from .passwords import hash_password
from .passwords import verify_password


def api_token_hash(token: str) -> str:
    """api_tokens are 128 random bits, so a plain SHA-256 is enough to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


API_TOKEN_RE = re.compile(r"[0-9a-f]{32}\Z")
_dummy_hashes: dict[tuple, str] = {}


def user_for_api_token(token) -> User:
    """The account an api_token (envelope profile) belongs to.

    :raises TokenInvalid: malformed, unknown, or cleared at confirmation.
    """
    if not isinstance(token, str) or not API_TOKEN_RE.match(token):
        raise TokenInvalid()
    user = db.session.scalar(select(User).where(User.api_token_hash == api_token_hash(token)))
    if user is None:
        raise TokenInvalid()
    return user


def issue_api_token(user: User) -> str:
    """A fresh envelope api_token for ``user`` (the previous one stops working).

    Stored only if the account's credential version is still the one the caller
    authenticated against: a confirmation or reset committed meanwhile wins.

    :raises InvalidCredentials: the credentials changed under the login.
    """
    token = secrets.token_hex(16)
    done = db.session.execute(
        update(User).where(User.id == user.id,
                           User.credential_version == (user.credential_version or 0))
        .values(api_token_hash=api_token_hash(token))
        .execution_options(synchronize_session=False))
    if done.rowcount != 1:
        db.session.rollback()
        raise InvalidCredentials()
    db.session.commit()
    return token


def device_token(user: User) -> str:
    """The ``device_token`` every successful login answers (see throttle.py)."""
    return throttle.device_token(user)


def find_account(identifier) -> User | None:
    """An identifier with ``@`` is an email only (normalised as registration does),
    anything else a username only: someone else's username that looks like an
    address never matches."""
    if not isinstance(identifier, str) or not identifier or len(identifier) > 320:
        return None
    if "@" in identifier:
        key = lookup_key(identifier)
        return key and db.session.scalar(select(User).where(User.email_key == key))
    return db.session.scalar(
        select(User).where(User.username_key == username_key(identifier.strip())))


def authenticate(identifier, password, device_token=None) -> User:
    """The account ``identifier`` names, if ``password`` is its own.

    Unknown accounts cost the same hash verification as a wrong password, so
    timing does not tell which accounts exist. Wrong passwords are counted per
    account (throttle.py); past the threshold only a login from a known device
    is evaluated, the rest get the wrong-password answer. A hash made with
    weaker parameters than the configured ones is replaced (rehash on login).

    :raises InvalidCredentials: unknown account, wrong password, or a locked
        account without its device token.
    """
    if not isinstance(password, str) or len(password) > PASSWORD_MAX_LENGTH:
        raise InvalidCredentials()
    user = find_account(identifier)
    if user is not None:
        key = throttle.hmac_key("account", user.id)
    else:
        key = throttle.hmac_key("identifier", lookup_key(identifier) or (
            username_key(identifier.strip()) if isinstance(identifier, str) else ""))
    locked = (throttle.count(throttle.LOGIN, key)
              >= current_app.config["LOGIN_LOCK_THRESHOLD"])
    if user is None or not user.password_hash or (
            locked and not throttle.is_device_of(device_token, user)):
        verify_password(dummy_hash(), password)
        ok, new_hash = False, None
    else:
        ok, new_hash = verify_password(user.password_hash, password)
    if not ok:
        throttle.record(throttle.LOGIN, key)
        raise InvalidCredentials()
    if new_hash:
        user.password_hash = new_hash
        db.session.commit()
    return user


def dummy_hash() -> str:
    """A hash with the configured parameters, to verify against for unknown accounts."""
    cfg = current_app.config
    params = (cfg["ARGON2_TIME_COST"], cfg["ARGON2_MEMORY_COST"], cfg["ARGON2_PARALLELISM"])
    if params not in _dummy_hashes:
        _dummy_hashes[params] = hash_password(secrets.token_urlsafe(16))
    return _dummy_hashes[params]
