"""Confirmation secrets: the signed link token and the 6-digit code."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from flask import current_app
from itsdangerous import BadSignature
from itsdangerous import SignatureExpired
from itsdangerous import URLSafeTimedSerializer

from .errors import TokenExpired
from .errors import TokenInvalid

CONFIRM_SALT = "regapp.confirm-email"
CODE_KEY_PURPOSE = b"regapp.confirm-code"
# ASCII digits only: \d would accept fullwidth and Arabic-Indic digits, $ a newline.
CODE_RE = re.compile(r"[0-9]{6}\Z")
# What itsdangerous emits (payload.timestamp.signature, unpadded URL-safe base64);
# it would also accept padded or otherwise re-spelled variants of a token.
TOKEN_RE = re.compile(r"\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")


def _secret_keys() -> list[str]:
    cfg = current_app.config
    # itsdangerous signs with the last key and accepts all of them.
    return [*cfg.get("SECRET_KEY_FALLBACKS", []), cfg["SECRET_KEY"]]


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_secret_keys(), salt=CONFIRM_SALT)


def email_fingerprint(email_key: str) -> str:
    """A short hash of the normalised address, so a token dies when it changes."""
    return hashlib.sha256(email_key.encode()).hexdigest()[:16]


def make_confirm_token(user) -> str:
    """Sign ``{user id, address fingerprint}`` for the confirmation purpose only."""
    return _serializer().dumps({"u": user.id, "e": email_fingerprint(user.email_key)})


def load_confirm_token(token) -> tuple[int, str]:
    """Return ``(user_id, fingerprint)`` from a token; raise on anything but a good one.

    :raises TokenExpired: genuine but older than ``CONFIRM_TOKEN_MAX_AGE``.
    :raises TokenInvalid: anything else: blank, tampered, other purpose, wrong shape.
    """
    if not isinstance(token, str) or len(token) > 512 or not TOKEN_RE.match(token):
        raise TokenInvalid()
    max_age = current_app.config["CONFIRM_TOKEN_MAX_AGE"]
    try:
        data = _serializer().loads(token, max_age=max_age)
    except SignatureExpired:
        raise TokenExpired() from None
    except (BadSignature, UnicodeError, ValueError):
        raise TokenInvalid() from None
    if (
        not isinstance(data, dict)
        or type(data.get("u")) is not int
        or not isinstance(data.get("e"), str)
    ):
        raise TokenInvalid()
    return data["u"], data["e"]


def new_code() -> str:
    """A uniformly random 6-digit code."""
    return f"{secrets.randbelow(1_000_000):06d}"


def is_code(value) -> bool:
    """True for exactly six ASCII digits given as a string."""
    return isinstance(value, str) and CODE_RE.match(value) is not None


def code_subject(user) -> str:
    """What a code is bound to: the account and the address it was sent to."""
    return f"{user.id}:{email_fingerprint(user.email_key)}"


def hash_code(user_id: int | str, code: str, secret_key: str | None = None) -> str:
    """Keyed hash of a code for ``user_id`` (or a ``code_subject``); the wrong-guess
    cap, not the hash cost, protects it."""
    secret = secret_key or current_app.config["SECRET_KEY"]
    key = hmac.new(secret.encode(), CODE_KEY_PURPOSE, hashlib.sha256).digest()
    return hmac.new(key, f"{user_id}:{code}".encode(), hashlib.sha256).hexdigest()


def code_matches(stored_hash: str, user_id: int | str, code: str) -> bool:
    """Constant-time comparison of a candidate code with a stored hash.

    Every key (current and fallbacks) is tried, so rotation keeps codes alive.
    """
    found = False
    for secret in _secret_keys():
        found |= hmac.compare_digest(stored_hash, hash_code(user_id, code, secret))
    return found
