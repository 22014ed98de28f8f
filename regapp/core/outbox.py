"""The transactional mail outbox: enqueue with the cause, deliver after commit.

Delivery is at-least-once: a sender that dies between the SMTP server's 250
and the "sent" commit re-sends once its claim lease expires, with the same
Message-ID, so receivers can de-duplicate.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import threading
from datetime import timedelta
from email.utils import make_msgid

from flask import current_app
from flask_mail import Connection
from flask_mail import Message
from sqlalchemy import and_
from sqlalchemy import event
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from ..extensions import db
from ..models import OutboxMessage
from ..models import utcnow

log = logging.getLogger(__name__)

_wakeup = threading.Event()
_dispatchers: dict[int, threading.Thread] = {}
_dispatch_lock = threading.Lock()


def enqueue(*, to: str, subject: str, body_text: str, body_html: str | None) -> None:
    """Add a message to the current session; it is sent only if the session commits."""
    # The Message-ID names the sender's domain; it is fixed here, once.
    sender = current_app.config["MAIL_DEFAULT_SENDER"] or "localhost"
    sender_domain = sender.rpartition("@")[2].strip("> ") or "localhost"
    row = OutboxMessage(
        to_addr=to,
        subject=subject,
        body_text=body_text,
        body_html=body_html,
        message_id=make_msgid(domain=sender_domain),
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
    )
    db.session.add(row)
    db.session.info["outbox_dirty"] = True


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session):
    if session.info.pop("outbox_dirty", False):
        _wakeup.set()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session):
    session.info.pop("outbox_dirty", None)


class _SMTPConnection(Connection):
    """Flask-Mail's connection with a socket timeout and verified TLS."""

    def configure_host(self):
        cfg = current_app.config
        timeout = cfg["MAIL_TIMEOUT"]
        context = ssl.create_default_context()
        if not cfg["MAIL_TLS_VERIFY"]:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.mail.use_ssl:
            host = smtplib.SMTP_SSL(self.mail.server, self.mail.port,
                                    timeout=timeout, context=context)
        else:
            host = smtplib.SMTP(self.mail.server, self.mail.port, timeout=timeout)
        if self.mail.use_tls:
            host.starttls(context=context)
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host


class PermanentFailure(Exception):
    """The message itself can't be sent (bad address, 5xx reply)."""


def _due_condition(now):
    lease = timedelta(seconds=current_app.config["MAIL_CLAIM_LEASE"])
    return or_(
        and_(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now),
        # A claim whose sender died (crash between claim and mark) is taken again.
        and_(OutboxMessage.status == "sending", OutboxMessage.claimed_at < now - lease),
    )


def claim_due(limit: int = 20) -> list[int]:
    """Atomically claim up to ``limit`` due messages; return their ids.

    PostgreSQL locks the candidates with ``FOR UPDATE SKIP LOCKED``; on every
    database the conditional UPDATE's rowcount decides who owns a row, so two
    workers or two instances never both claim it.
    """
    now = utcnow()
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
                .values(status="sending", claimed_at=now)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:
                claimed.append(row_id)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return claimed


def _build(row: OutboxMessage) -> Message:
    msg = Message(
        subject=row.subject,
        recipients=[row.to_addr],
        body=row.body_text,
        html=row.body_html,
        sender=current_app.config["MAIL_DEFAULT_SENDER"],
    )
    msg.msgId = row.message_id  # one Message-ID across every retry
    if msg.has_bad_headers():
        raise PermanentFailure("header injection in subject, sender or recipient")
    try:
        row.to_addr.encode("ascii")
    except UnicodeEncodeError:
        raise PermanentFailure("recipient is not ASCII") from None
    return msg


def _classify(exc: Exception) -> bool:
    """True when ``exc`` means the message will never be accepted."""
    if isinstance(exc, PermanentFailure):
        return True
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code >= 500
    return False


def _mark_sent(row_id: int) -> None:
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id, OutboxMessage.status == "sending")
        .values(status="sent", sent_at=utcnow(), last_error=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _mark_failed_attempt(row: OutboxMessage, exc: Exception) -> str:
    cfg = current_app.config
    permanent = _classify(exc)
    attempts = row.attempts + 1
    limit = cfg["MAIL_MAX_PERMANENT_ATTEMPTS"] if permanent else cfg["MAIL_MAX_ATTEMPTS"]
    if isinstance(exc, PermanentFailure):
        limit = 1
    status = "failed" if attempts >= limit else "pending"
    delay = min(cfg["MAIL_RETRY_BASE"] * 2 ** (attempts - 1), cfg["MAIL_RETRY_MAX"])
    # Only the class and SMTP reply go to the row and the log: no body, no token.
    error = f"{type(exc).__name__}: {getattr(exc, 'smtp_code', '')} {exc}"[:500]
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row.id, OutboxMessage.status == "sending")
        .values(status=status, attempts=attempts, last_error=error,
                next_attempt_at=utcnow() + timedelta(seconds=delay))
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return status


def send_due(limit: int = 20) -> dict[str, int]:
    """Claim and deliver what is due now; return counts by outcome.

    Each message is sent on its own connection attempt after a failure, so one
    poisoned message never blocks the rest of the batch.
    """
    counts = {"sent": 0, "retry": 0, "failed": 0}
    ids = claim_due(limit)
    conn = None
    try:
        for row_id in ids:
            row = db.session.get(OutboxMessage, row_id, populate_existing=True)
            try:
                msg = _build(row)
                if conn is None:
                    conn = _SMTPConnection(current_app.extensions["mail"])
                    conn.host = conn.configure_host()
                conn.host.sendmail(msg.sender, [row.to_addr], msg.as_bytes())
            except Exception as exc:  # noqa: BLE001 - every failure is recorded
                if conn is not None:
                    _close(conn)
                    conn = None
                status = _mark_failed_attempt(row, exc)
                counts["failed" if status == "failed" else "retry"] += 1
                log.warning("outbox message %s: %s (%s)", row_id,
                            type(exc).__name__, status)
                continue
            _mark_sent(row_id)
            counts["sent"] += 1
    finally:
        if conn is not None:
            _close(conn)
    return counts


def _close(conn) -> None:
    try:
        conn.host.quit()
    except Exception:  # noqa: BLE001 - the connection is being discarded anyway
        try:
            conn.host.close()
        except Exception:  # noqa: BLE001
            pass


def send_all_due(max_batches: int = 1000) -> dict[str, int]:
    """Run ``send_due`` until nothing due is left (operator command, tests)."""
    total = {"sent": 0, "retry": 0, "failed": 0}
    for _ in range(max_batches):
        counts = send_due()
        for key, value in counts.items():
            total[key] += value
        if not any(counts.values()):
            break
    return total


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
        _wakeup.set()
    return result.rowcount


def wake() -> None:
    """Ask this process's dispatcher to look for due mail now."""
    _wakeup.set()


def _run(app) -> None:
    interval = app.config["MAIL_POLL_INTERVAL"]
    while True:
        _wakeup.wait(timeout=interval)
        _wakeup.clear()
        try:
            with app.app_context():
                while any(send_due().values()):
                    pass
        except Exception:  # noqa: BLE001 - the thread must outlive database outages
            log.exception("outbox dispatcher pass failed; retrying in %ss", interval)
            with app.app_context():
                db.session.remove()


def ensure_dispatcher(app) -> threading.Thread | None:
    """Start this process's dispatcher thread once (idempotent per pid)."""
    if not app.config.get("OUTBOX_AUTOSTART"):
        return None
    pid = os.getpid()
    with _dispatch_lock:
        thread = _dispatchers.get(pid)
        if thread is None or not thread.is_alive():
            thread = threading.Thread(target=_run, args=(app,), daemon=True,
                                      name="regapp-outbox")
            thread.start()
            _dispatchers[pid] = thread
            _wakeup.set()
    return thread
