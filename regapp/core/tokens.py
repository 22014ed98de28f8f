"""Confirmation secrets: the signed link token and the 6-digit code."""

from __future__ import annotations

import functools
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
RESET_SALT = "regapp.password-reset"
CANCEL_SALT = "regapp.cancel-registration"
CODE_KEY_PURPOSE = b"regapp.confirm-code"
RESET_CODE_PURPOSE = b"regapp.reset-code"
# ASCII digits only: \d would accept fullwidth and Arabic-Indic digits, $ a newline.
CODE_RE = re.compile(r"[0-9]{6}\Z")
# What itsdangerous emits (payload.timestamp.signature, unpadded URL-safe base64);
# it would also accept padded or otherwise re-spelled variants of a token.
TOKEN_RE = re.compile(r"\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")


def _secret_keys() -> list[str]:
    cfg = current_app.config
    # itsdangerous signs with the last key and accepts all of them.
    return [*cfg.get("SECRET_KEY_FALLBACKS", []), cfg["SECRET_KEY"]]


def _serializer(salt: str = CONFIRM_SALT) -> URLSafeTimedSerializer:
    return _serializer_for(tuple(_secret_keys()), salt)


@functools.lru_cache(maxsize=32)
def _serializer_for(keys: tuple[str, ...], salt: str) -> URLSafeTimedSerializer:
    # One per key set and purpose (itsdangerous derives its signing keys on creation).
    return URLSafeTimedSerializer(list(keys), salt=salt)


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
    data = _load(token, CONFIRM_SALT, current_app.config["CONFIRM_TOKEN_MAX_AGE"])
    return data["u"], data["e"]


def make_cancel_token(user) -> str:
    """The "this wasn't me" link's token: its own purpose, bound to user and address."""
    return _serializer(CANCEL_SALT).dumps(
        {"u": user.id, "e": email_fingerprint(user.email_key)})


def load_cancel_token(token) -> tuple[int, str]:
    """``(user_id, fingerprint)`` of a cancel token. :raises TokenInvalid, TokenExpired:"""
    data = _load(token, CANCEL_SALT, current_app.config["CONFIRM_TOKEN_MAX_AGE"])
    return data["u"], data["e"]


def make_reset_token(user) -> str:
    """A password-reset token bound to the user, the address and the account's
    current reset counter: a newer reset, or a completed one, kills it."""
    return _serializer(RESET_SALT).dumps(
        {"u": user.id, "e": email_fingerprint(user.email_key), "n": user.reset_counter})


def load_reset_token(token) -> tuple[int, str, int]:
    """``(user_id, fingerprint, counter)``. :raises TokenInvalid, TokenExpired:"""
    data = _load(token, RESET_SALT, current_app.config["PASSWORD_RESET_MAX_AGE"])
    if type(data.get("n")) is not int:
        raise TokenInvalid()
    return data["u"], data["e"], data["n"]


def _load(token, salt: str, max_age: int) -> dict:
    if not isinstance(token, str) or len(token) > 512 or not TOKEN_RE.match(token):
        raise TokenInvalid()
    try:
        data = _serializer(salt).loads(token, max_age=max_age)
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
    return data


def new_code() -> str:
    """A uniformly random 6-digit code."""
    return f"{secrets.randbelow(1_000_000):06d}"


def is_code(value) -> bool:
    """True for exactly six ASCII digits given as a string."""
    return isinstance(value, str) and CODE_RE.match(value) is not None


def code_subject(user) -> str:
    """What a code is bound to: the account and the address it was sent to."""
    return f"{user.id}:{email_fingerprint(user.email_key)}"


def hash_code(user_id: int | str, code: str, secret_key: str | None = None,
              purpose: bytes = CODE_KEY_PURPOSE) -> str:
    """Keyed hash of a code for ``user_id`` (or a ``code_subject``); the wrong-guess
    cap, not the hash cost, protects it. Reset codes use their own ``purpose``."""
    secret = secret_key or current_app.config["SECRET_KEY"]
    key = hmac.new(secret.encode(), purpose, hashlib.sha256).digest()
    return hmac.new(key, f"{user_id}:{code}".encode(), hashlib.sha256).hexdigest()


def code_matches(stored_hash: str, user_id: int | str, code: str,
                 purpose: bytes = CODE_KEY_PURPOSE) -> bool:
    """Constant-time comparison of a candidate code with a stored hash.

    Every key (current and fallbacks) is tried, so rotation keeps codes alive.
    """
    found = False
    for secret in _secret_keys():
        found |= hmac.compare_digest(stored_hash, hash_code(user_id, code, secret, purpose))
    return found
