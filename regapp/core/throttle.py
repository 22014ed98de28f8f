"""Counted failures that an attacker can't turn against an account's owner.

Wrong passwords are counted per resolved account (and per identifier when no
account matches, so the answers stay identical). Past ``LOGIN_LOCK_THRESHOLD``
wrong passwords in an hour, only a login that carries a device token of that
account is evaluated; the rest are answered exactly like a wrong password. A
device token is returned by every successful login, so the owner's own browsers
and apps keep working, and a password reset always works for a new device.

Keys are HMACs under a key derived from ``SECRET_KEY``: never an address, nor a
bare hash of one (a dictionary of addresses would reverse it).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from flask import current_app
from itsdangerous import BadSignature
from itsdangerous import URLSafeSerializer
from sqlalchemy import func
from sqlalchemy import select

from ..extensions import db
from ..models import SecurityEvent
from ..models import utcnow

KEY_PURPOSE = b"regapp.throttle-key"
DEVICE_SALT = "regapp.device-token"
LOGIN = "login"
RESET_CODE = "reset_code"
WINDOW = timedelta(hours=1)


def hmac_key(*parts) -> str:
    """An opaque, stable key for ``parts`` (e.g. ``("account", 42)``)."""
    secret = current_app.config["SECRET_KEY"].encode()
    key = hmac.new(secret, KEY_PURPOSE, hashlib.sha256).digest()
    text = "\x1f".join(str(p) for p in parts)
    return hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def record(kind: str, key: str) -> None:
    """Count one failure (its own short transaction)."""
    db.session.add(SecurityEvent(kind=kind, key=key))
    db.session.commit()


def count(kind: str, key: str, window: timedelta = WINDOW) -> int:
    """Failures of ``kind`` under ``key`` in the last ``window``."""
    return db.session.scalar(
        select(func.count(SecurityEvent.id))
        .where(SecurityEvent.kind == kind, SecurityEvent.key == key,
               SecurityEvent.created_at > utcnow() - window)) or 0


def clear(kind: str, key: str) -> None:
    """Forget the failures under ``key`` (after a successful password reset)."""
    db.session.execute(
        SecurityEvent.__table__.delete()
        .where(SecurityEvent.kind == kind, SecurityEvent.key == key))


def _devices() -> URLSafeSerializer:
    cfg = current_app.config
    return URLSafeSerializer([*cfg.get("SECRET_KEY_FALLBACKS", []), cfg["SECRET_KEY"]],
                             salt=DEVICE_SALT)


def device_token(user) -> str:
    """An opaque value that marks later logins of ``user`` as from a known device.

    It carries the credential version: a password reset (or confirmation) retires
    every device token handed out before, so whoever knew an earlier password
    (a pre-hijacker) keeps no way around the lock.
    """
    return _devices().dumps({"u": user.id, "v": user.credential_version or 0})


def is_device_of(token, user) -> bool:
    if not isinstance(token, str) or not token or len(token) > 256:
        return False
    try:
        data = _devices().loads(token)
    except (BadSignature, UnicodeError, ValueError):
        return False
    return (isinstance(data, dict) and data.get("u") == user.id
            and data.get("v") == (user.credential_version or 0))
