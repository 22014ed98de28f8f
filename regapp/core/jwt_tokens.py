"""JWT access/refresh pairs for the jwt profile, shaped like djangorestframework-simplejwt's.

Tokens are HS256, with the claims ``token_type``, ``exp``, ``iat``, ``jti`` and
``user_id``. They are signed with a key derived from ``SECRET_KEY`` for this
purpose only, so no other signed value of the service (confirmation tokens, the
session cookie, a JWT signed with the raw key) is ever a valid JWT here.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
import uuid

import jwt
from flask import current_app

from ..extensions import db
from ..models import User
from .errors import TokenExpired
from .errors import TokenInvalid

ALGORITHM = "HS256"
KEY_PURPOSE = b"regapp.jwt"
ACCESS = "access"
REFRESH = "refresh"
CLAIMS = ("token_type", "exp", "iat", "jti", "user_id")
# Far above any token we issue; bounds the work spent on garbage input.
MAX_TOKEN_LENGTH = 2048
# The users.id column is a 32-bit INTEGER on PostgreSQL.
MAX_USER_ID = 2**31 - 1


def signing_key(secret: str) -> bytes:
    """The JWT key for one ``SECRET_KEY``: HMAC(secret, purpose), never the raw secret."""
    return hmac.new(secret.encode(), KEY_PURPOSE, hashlib.sha256).digest()


def _verification_keys() -> list[bytes]:
    cfg = current_app.config
    return [signing_key(s) for s in [cfg["SECRET_KEY"], *cfg.get("SECRET_KEY_FALLBACKS", [])]]


def _encode(user_id: int, token_type: str, lifetime: int, now: int) -> str:
    claims = {
        "token_type": token_type,
        "exp": now + lifetime,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "user_id": user_id,
    }
    # typ before alg, like simplejwt's tokens ("eyJ0eXAiOiJKV1Qi...").
    return jwt.encode(claims, signing_key(current_app.config["SECRET_KEY"]),
                      algorithm=ALGORITHM, headers={"typ": "JWT"}, sort_headers=False)


def issue_pair(user: User) -> tuple[str, str]:
    """Return ``(refresh, access)`` for ``user``, both issued now."""
    cfg = current_app.config
    now = int(time.time())
    refresh = _encode(user.id, REFRESH, cfg["JWT_REFRESH_LIFETIME"], now)
    access = _encode(user.id, ACCESS, cfg["JWT_ACCESS_LIFETIME"], now)
    return refresh, access


def decode(token, token_type: str) -> dict:
    """The verified claims of a ``token_type`` token (signature, expiry, claim types).

    :raises TokenExpired: genuine but past ``exp``.
    :raises TokenInvalid: anything else: blank, tampered, other key, other type.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise TokenInvalid()
    claims = None
    for key in _verification_keys():
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM],
                                options={"require": list(CLAIMS)})
            break
        except jwt.InvalidSignatureError:
            continue  # maybe signed with a fallback key
        except jwt.ExpiredSignatureError:
            raise TokenExpired() from None
        except jwt.InvalidTokenError:
            raise TokenInvalid() from None
    if claims is None:
        raise TokenInvalid()
    user_id = claims["user_id"]
    if (claims["token_type"] != token_type
            or type(user_id) is not int or not 0 < user_id <= MAX_USER_ID
            or not isinstance(claims["jti"], str)):
        raise TokenInvalid()
    return claims


def user_for(token, token_type: str) -> User:
    """The live account a token belongs to.

    Tokens issued before the address was confirmed are dead (account
    pre-hijacking: whoever registered the address first must log in again).

    :raises TokenInvalid, TokenExpired: see ``decode``; also a deleted account
        or a token older than the confirmation.
    """
    claims = decode(token, token_type)
    user = db.session.get(User, claims["user_id"])
    if user is None:
        raise TokenInvalid()
    if user.confirmed_at is not None:
        # iat has whole seconds: a token from the confirmation's own second is
        # kept, so a login right after confirming works. The pre-confirmation
        # window this leaves is under a second.
        if claims["iat"] < math.floor(user.confirmed_at.timestamp()):
            raise TokenInvalid()
    return user


def refresh_access(token) -> str:
    """A new access token for a valid refresh token (the refresh token is not rotated).

    :raises TokenInvalid, TokenExpired: see ``user_for``.
    """
    user = user_for(token, REFRESH)
    return _encode(user.id, ACCESS, current_app.config["JWT_ACCESS_LIFETIME"],
                   int(time.time()))
