"""Logging in: passwords (``POST /api/token/``) and envelope api_tokens."""

from __future__ import annotations

import hashlib
import re
import secrets

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import User
from .errors import FieldErrors
from .errors import InvalidCredentials
from .errors import TokenInvalid
from .identity import email_key
from .identity import normalize_email
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


def authenticate(identifier, password) -> User:
    """The account whose username or email is ``identifier``, if ``password`` is its own.

    Unknown accounts cost the same hash verification as a wrong password, so
    timing does not tell which accounts exist. A hash made with weaker
    parameters than the configured ones is replaced (rehash on login).

    :raises InvalidCredentials: unknown account or wrong password.
    """
    if (not isinstance(identifier, str) or not isinstance(password, str)
            or not identifier or len(identifier) > 320 or len(password) > PASSWORD_MAX_LENGTH):
        raise InvalidCredentials()
    keys = {username_key(identifier)}
    try:
        keys.add(email_key(normalize_email(identifier)))  # IDN domains are stored as punycode
    except FieldErrors:
        pass
    # A username may look like someone else's email: try each match.
    candidates = db.session.scalars(
        select(User).where(User.email_key.in_(keys) | User.username_key.in_(keys))
        .order_by(User.id)
    ).all()
    if not candidates:
        verify_password(_dummy_hash(), password)
        raise InvalidCredentials()
    for user in candidates:
        ok, new_hash = verify_password(user.password_hash, password)
        if ok:
            if new_hash:
                user.password_hash = new_hash
                db.session.commit()
            return user
    raise InvalidCredentials()


def _dummy_hash() -> str:
    """A hash with the configured parameters, to verify against for unknown accounts."""
    cfg = current_app.config
    params = (cfg["ARGON2_TIME_COST"], cfg["ARGON2_MEMORY_COST"], cfg["ARGON2_PARALLELISM"])
    if params not in _dummy_hashes:
        _dummy_hashes[params] = hash_password(secrets.token_urlsafe(16))
    return _dummy_hashes[params]
