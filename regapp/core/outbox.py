"""The transactional mail outbox, as a queue: enqueue with the cause, claim, mark, retry.

Rows are added in the registering transaction and sent after it commits (see
``delivery``). Delivery is at-least-once: a sender that dies between the SMTP
server's 250 and the "sent" commit re-sends once its claim lease expires, with
the same Message-ID, so receivers can de-duplicate.
"""

from __future__ import annotations

import logging
import secrets
import threading
from datetime import timedelta
from datetime import timezone

from flask import current_app
from sqlalchemy import and_
from sqlalchemy import case
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from ..extensions import db
from ..models import OutboxMessage
from ..models import utcnow

log = logging.getLogger(__name__)

BATCH_SIZE = 20
# Set after a commit that queued mail; the dispatcher thread waits on it.
wakeup = threading.Event()


def enqueue(*, to: str, subject: str, body_text: str, body_html: str | None,
            kind: str = "confirm") -> None:
    """Add a message to the current session; it is sent only if the session commits."""
    # The Message-ID names the sender's domain; it is fixed here, once.
    sender_domain = (sender() or "").rpartition("@")[2].strip("> ") or "localhost"
    row = OutboxMessage(
        to_addr=to,
        subject=subject,
        body_text=body_text,
        body_html=body_html,
        message_id=message_id(sender_domain),
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
        kind=kind,
    )
    db.session.add(row)
    db.session.info["outbox_dirty"] = True


def message_id(domain: str) -> str:
    """A unique Message-ID. Not ``email.utils.make_msgid``: its uniqueness rests on the
    ``random`` module, whose state anything in the process may reset (a seeded
    generator made two messages collide on the unique column: a 503, mail lost)."""
    return f"<{secrets.token_hex(16)}@{domain}>"


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session):
    if session.info.pop("outbox_dirty", False):
        wakeup.set()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session):
    session.info.pop("outbox_dirty", None)


class PermanentFailure(Exception):
    """The message itself can't be sent (bad address, bad header, 5xx reply)."""


def _due_condition(now):
    lease = timedelta(seconds=current_app.config["MAIL_CLAIM_LEASE"])
    return or_(
        and_(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now),
        # A claim whose sender died (crash between claim and mark) is taken again.
        and_(OutboxMessage.status == "sending", OutboxMessage.claimed_at < now - lease),
    )


def claim_due(limit: int = BATCH_SIZE) -> list[int]:
    """Atomically claim up to ``limit`` due messages; return their ids.

    PostgreSQL locks the candidates with ``FOR UPDATE SKIP LOCKED``; on every
    database the conditional UPDATE's rowcount decides who owns a row, so two
    workers or two instances never both claim it.
    """
    now = utcnow()
    _park_lost_claims(now)
    stmt = (
        select(OutboxMessage.id)
        .where(_due_condition(now))
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    if db.engine.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    claimed = []
    try:
        for row_id in db.session.scalars(stmt).all():
            result = db.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row_id, _due_condition(now))
                # Taking over a lost claim counts as an attempt: a message that kills
                # its sender every time must not be retried forever.
                .values(status="sending", claimed_at=now,
                        attempts=OutboxMessage.attempts
                        + case((OutboxMessage.status == "sending", 1), else_=0))
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:
                claimed.append(row_id)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return claimed


def _park_lost_claims(now) -> None:
    """Park rows whose claims were lost so often that they used up their attempts."""
    lease = timedelta(seconds=current_app.config["MAIL_CLAIM_LEASE"])
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == "sending", OutboxMessage.claimed_at < now - lease,
               OutboxMessage.attempts + 1 >= current_app.config["MAIL_MAX_ATTEMPTS"])
        .values(status="failed", attempts=OutboxMessage.attempts + 1,
                last_error="sender lost its claim too often")
        .execution_options(synchronize_session=False)
    )


def mark(ids, **values) -> None:
    """Update rows this sender still holds (status ``sending``) and commit."""
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.status == "sending")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def mark_sent(ids) -> None:
    """Record rows the SMTP server accepted as ``sent``."""
    mark(ids, **_sent_values())


def _sent_values() -> dict:
    # The bodies hold the confirmation link and code: keep them no longer than needed.
    return {"status": "sent", "sent_at": utcnow(), "last_error": None,
            "body_text": "", "body_html": None}


def record_failure(row: OutboxMessage, exc: Exception, permanent: bool) -> str:
    """Count a failed attempt; park the row as ``failed`` once its attempts are used up."""
    cfg = current_app.config
    attempts = row.attempts + 1
    if isinstance(exc, PermanentFailure):
        limit = 1
    elif permanent:
        limit = cfg["MAIL_MAX_PERMANENT_ATTEMPTS"]
    else:
        limit = cfg["MAIL_MAX_ATTEMPTS"]
    status = "failed" if attempts >= limit else "pending"
    delay = min(cfg["MAIL_RETRY_BASE"] * 2 ** (attempts - 1), cfg["MAIL_RETRY_MAX"])
    # Only the class and the SMTP reply go to the row and the log: no body, no token.
    error = f"{type(exc).__name__}: {exc}"[:500]
    mark([row.id], status=status, attempts=attempts, last_error=error, claimed_at=None,
         next_attempt_at=utcnow() + timedelta(seconds=delay))
    level = logging.ERROR if status == "failed" else logging.WARNING
    log.log(level, "outbox message %s attempt %s failed: %s%s -> %s", row.id, attempts,
            type(exc).__name__, f" {exc.smtp_code}" if hasattr(exc, "smtp_code") else "",
            status, extra={"event": "delivery_failed", "outbox_id": row.id, "kind": row.kind,
                           "attempts": attempts, "status": status,
                           "account_id": account_id_for(row.to_addr)})
    return status


def release(todo: list[int], accepted: list[int]) -> None:
    """After an error or a long batch: give back the claims not tried, record the sent."""
    for ids, values in ((todo, {"status": "pending", "claimed_at": None}),
                        (accepted, None)):
        if not ids:
            continue
        try:
            db.session.rollback()
            mark(ids, **(values or _sent_values()))
        except Exception as exc:  # noqa: BLE001 - the lease expires and frees them anyway
            log.warning("outbox: could not update %d claimed message(s) (%s); "
                        "they are retried when the claim lease expires",
                        len(ids), type(exc).__name__)
            try:
                db.session.rollback()
            except Exception:  # noqa: BLE001 - the connection may be gone
                pass


def retry(row_id: int | None = None) -> int:
    """Put failed messages (one, or all) back in the queue; return how many."""
    stmt = update(OutboxMessage).where(OutboxMessage.status == "failed")
    if row_id is not None:
        stmt = stmt.where(OutboxMessage.id == row_id)
    result = db.session.execute(
        stmt.values(status="pending", attempts=0, next_attempt_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if result.rowcount:
        wakeup.set()
    return result.rowcount


def sender() -> str:
    """The From header: ``MAIL_DEFAULT_SENDER``, a string or a (name, address) pair."""
    value = current_app.config["MAIL_DEFAULT_SENDER"]
    return f"{value[0]} <{value[1]}>" if isinstance(value, tuple) else value


def account_id_for(address: str) -> int | None:
    """The account a message goes to (for the logs, which never show the address)."""
    from ..models import User  # noqa: PLC0415
    from .identity import email_key  # noqa: PLC0415

    try:
        return db.session.scalar(select(User.id).where(User.email_key == email_key(address)))
    except Exception:  # noqa: BLE001 - a log detail never breaks delivery
        return None


def stats() -> dict:
    """What an operator (``flask mail status``) and ``/readyz`` want to know:
    ``backlog`` (pending or being sent), ``failed`` (parked for an operator) and
    ``oldest_pending_seconds`` (age of the oldest unsent message, None when none)."""
    counts = dict(db.session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())
    oldest = db.session.scalar(select(func.min(OutboxMessage.created_at)).where(
        OutboxMessage.status.in_(("pending", "sending"))))
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=timezone.utc)
    age = None if oldest is None else max(0, int((utcnow() - oldest).total_seconds()))
    return {
        "backlog": counts.get("pending", 0) + counts.get("sending", 0),
        "failed": counts.get("failed", 0),
        "oldest_pending_seconds": age,
    }
