"""Database models: one user table for every profile, confirmations, the mail outbox."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone

from sqlalchemy import Boolean
from sqlalchemy import DateTime
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from .extensions import db


def utcnow() -> datetime:
    """Aware UTC now; passed as a callable so it is evaluated per row."""
    return datetime.now(timezone.utc)


class UTCDateTime(db.TypeDecorator):
    """Store UTC datetimes; SQLite drops the zone, so put it back on load."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class User(db.Model):
    """An account, holding the union of the five profiles' fields."""

    __tablename__ = "users"
    # Never reuse a deleted row's id on SQLite, so old tokens can't point at a new user.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str | None] = mapped_column(String(150))
    username_key: Mapped[str | None] = mapped_column(String(600), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(1000), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    first_name: Mapped[str | None] = mapped_column(String(191))
    insertion: Mapped[str | None] = mapped_column(String(191))
    last_name: Mapped[str | None] = mapped_column(String(191))
    postal_code: Mapped[str | None] = mapped_column(String(16))
    phone: Mapped[str | None] = mapped_column(String(32))
    avatar: Mapped[str | None] = mapped_column(String(500))
    account_type: Mapped[str] = mapped_column(String(32), default="customer")
    api_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    is_email_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    code_failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The profile the account signed up through: its password policy applies to resets.
    profile: Mapped[str | None] = mapped_column(String(32))
    # Bumped when every credential issued so far must die (confirmation, password
    # reset or change, a contested account cleared); JWTs carry it, checks compare it.
    credential_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Someone else tried to sign up for this unconfirmed address with another
    # password: confirming it clears the password instead of handing it over.
    contested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    # Only the newest reset (link or code) is valid: both carry this counter.
    reset_counter: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reset_code_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reset_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duplicate_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<User {self.id}>"


class EmailConfirmation(db.Model):
    """One emailed 6-digit code, stored only as a keyed hash."""

    __tablename__ = "email_confirmations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PasswordResetCode(db.Model):
    """One emailed password-reset code, stored only as a keyed hash."""

    __tablename__ = "password_reset_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    counter: Mapped[int] = mapped_column(Integer)
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RefreshFamily(db.Model):
    """A chain of rotated refresh tokens from one login; only ``current_jti`` is live."""

    __tablename__ = "refresh_families"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    current_jti: Mapped[str] = mapped_column(String(32))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SecurityEvent(db.Model):
    """A counted failure (wrong password, wrong reset code) under an HMAC key."""

    __tablename__ = "security_events"
    __table_args__ = (Index("ix_security_events_kind_key_at", "kind", "key", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxMessage(db.Model):
    """An email written in the same transaction as its cause, delivered after commit."""

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_to_addr_kind", "to_addr", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    to_addr: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(255))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "host:pid" of the dispatcher holding the claim (regapp.core.outbox.owner()).
    claimed_by: Mapped[str | None] = mapped_column(String(300))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What the message is (confirm, reset, duplicate, notice): per-kind cooldowns
    # and daily caps count these rows.
    kind: Mapped[str] = mapped_column(String(16), default="confirm", server_default="confirm")
