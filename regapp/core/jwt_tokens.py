"""JWT access/refresh pairs for the jwt profile, shaped like djangorestframework-simplejwt's.

Tokens are HS256, with the claims ``token_type``, ``exp``, ``iat``, ``jti`` and
``user_id``, plus ``ver`` (the account's credential version: a token whose
version is not the account's current one is dead) and, on refresh tokens,
``fam`` (the rotation family: only the family's newest refresh token is live;
presenting an older one revokes the whole family, reuse detection). They are
signed with a key derived from ``SECRET_KEY`` for this purpose only, so no other
signed value of the service (confirmation tokens, the session cookie, a JWT
signed with the raw key) is ever a valid JWT here.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
import uuid

import jwt
from flask import current_app
from sqlalchemy import update

from ..extensions import db
from ..models import RefreshFamily
from ..models import User
from ..models import utcnow
from . import rows
from .errors import TokenExpired
from .errors import TokenInvalid

ALGORITHM = "HS256"
KEY_PURPOSE = b"regapp.jwt"
ACCESS = "access"
REFRESH = "refresh"
CLAIMS = ("token_type", "exp", "iat", "jti", "user_id", "ver")
# Far above any token we issue; bounds the work spent on garbage input.
MAX_TOKEN_LENGTH = 2048
# The users.id column is a 32-bit INTEGER on PostgreSQL.
MAX_USER_ID = 2**31 - 1


@functools.lru_cache(maxsize=16)
def signing_key(secret: str) -> bytes:
    """The JWT key for one ``SECRET_KEY``: HMAC(secret, purpose), never the raw secret."""
    return hmac.new(secret.encode(), KEY_PURPOSE, hashlib.sha256).digest()


def _verification_keys() -> list[bytes]:
    cfg = current_app.config
    return [signing_key(s) for s in [cfg["SECRET_KEY"], *cfg.get("SECRET_KEY_FALLBACKS", [])]]


def _encode(user: User, token_type: str, lifetime: int, now: int, *,
            jti: str | None = None, family: str | None = None) -> str:
    claims = {
        "token_type": token_type,
        "exp": now + lifetime,
        "iat": now,
        "jti": jti or uuid.uuid4().hex,
        "user_id": user.id,
        "ver": user.credential_version or 0,
    }
    if family:
        claims["fam"] = family
    # typ before alg, like simplejwt's tokens ("eyJ0eXAiOiJKV1Qi...").
    return jwt.encode(claims, signing_key(current_app.config["SECRET_KEY"]),
                      algorithm=ALGORITHM, headers={"typ": "JWT"}, sort_headers=False)


def issue_pair(user: User) -> tuple[str, str]:
    """Return ``(refresh, access)`` for ``user``, both issued now; the refresh token
    starts a new rotation family (committed here)."""
    pair = start_pair(user)
    db.session.commit()
    return pair


def start_pair(user: User) -> tuple[str, str]:
    """``issue_pair`` in the caller's transaction: the family row is added to the
    session and lives only if the caller commits (sign-up: one commit for all)."""
    cfg = current_app.config
    now = int(time.time())
    family, jti = uuid.uuid4().hex, uuid.uuid4().hex
    rows.add(RefreshFamily, id=family, user_id=user.id, current_jti=jti)
    refresh = _encode(user, REFRESH, cfg["JWT_REFRESH_LIFETIME"], now, jti=jti, family=family)
    access = _encode(user, ACCESS, cfg["JWT_ACCESS_LIFETIME"], now)
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
            or type(claims["ver"]) is not int
            or not isinstance(claims["jti"], str)
            or (token_type == REFRESH and not isinstance(claims.get("fam"), str))):
        raise TokenInvalid()
    return claims


def user_for(token, token_type: str) -> User:
    """The live account a token belongs to.

    A token carries the account's credential version when it was issued; the
    version moves on at confirmation (pre-hijacking: whoever registered the
    address first must log in again), password reset and a contested account's
    clearing, and every older token dies with it, whatever second it was issued in.

    :raises TokenInvalid, TokenExpired: see ``decode``; also a deleted account
        or an older credential version.
    """
    return _user_for_claims(decode(token, token_type))


def _user_for_claims(claims: dict) -> User:
    user = db.session.get(User, claims["user_id"])
    if user is None or claims["ver"] != (user.credential_version or 0):
        raise TokenInvalid()
    return user


def rotate(token) -> tuple[str, str]:
    """``(access, refresh)`` for a live refresh token, which is refused from then on.

    Presenting a refresh token that was already rotated (stolen and used by
    someone else, or replayed) revokes its whole family: every later token of
    that login dies, other logins of the account live on.

    :raises TokenInvalid, TokenExpired: see ``user_for``; also a rotated or
        revoked refresh token.
    """
    claims = decode(token, REFRESH)
    user = _user_for_claims(claims)
    new_jti = uuid.uuid4().hex
    moved = db.session.execute(
        update(RefreshFamily)
        .where(RefreshFamily.id == claims["fam"], RefreshFamily.user_id == user.id,
               RefreshFamily.current_jti == claims["jti"], RefreshFamily.revoked_at.is_(None))
        .values(current_jti=new_jti)
        .execution_options(synchronize_session=False))
    if moved.rowcount != 1:
        _revoke(claims)  # reuse of a rotated token: the whole family goes
        raise TokenInvalid()
    db.session.commit()
    cfg = current_app.config
    now = int(time.time())
    access = _encode(user, ACCESS, cfg["JWT_ACCESS_LIFETIME"], now)
    refresh = _encode(user, REFRESH, cfg["JWT_REFRESH_LIFETIME"], now, jti=new_jti,
                      family=claims["fam"])
    return access, refresh


def revoke(token) -> None:
    """Log out: the live refresh token's family is revoked (other devices stay).

    :raises TokenInvalid, TokenExpired: not a live refresh token (a rotated one
        revokes its family all the same).
    """
    claims = decode(token, REFRESH)
    _user_for_claims(claims)
    family = db.session.get(RefreshFamily, claims["fam"])
    live = (family is not None and family.revoked_at is None
            and family.current_jti == claims["jti"])
    _revoke(claims)
    if not live:
        raise TokenInvalid()


def _revoke(claims: dict) -> None:
    db.session.execute(
        update(RefreshFamily)
        .where(RefreshFamily.id == claims["fam"], RefreshFamily.user_id == claims["user_id"],
               RefreshFamily.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False))
    db.session.commit()
