"""The transactional mail outbox: enqueue with the cause, deliver after commit.

Delivery is at-least-once: a sender that dies between the SMTP server's 250
and the "sent" commit re-sends once its claim lease expires, with the same
Message-ID, so receivers can de-duplicate.
"""

from __future__ import annotations

import email.policy
import functools
import logging
import smtplib
import socket
import ssl
import threading
import time
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate
from email.utils import make_msgid

from flask import current_app
from sqlalchemy import and_
from sqlalchemy import case
from sqlalchemy import event
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from ..extensions import db
from ..models import OutboxMessage
from ..models import utcnow

log = logging.getLogger(__name__)

BATCH_SIZE = 20
# CRLF line ends; 7bit so non-ASCII bodies are encoded for servers without 8BITMIME.
MIME_POLICY = email.policy.SMTP.clone(cte_type="7bit")
# Set after a commit that queued mail; the dispatcher thread waits on it.
wakeup = threading.Event()


def enqueue(*, to: str, subject: str, body_text: str, body_html: str | None) -> None:
    """Add a message to the current session; it is sent only if the session commits."""
    # The Message-ID names the sender's domain; it is fixed here, once.
    sender_domain = (_sender() or "").rpartition("@")[2].strip("> ") or "localhost"
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
        wakeup.set()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session):
    session.info.pop("outbox_dirty", None)


class PermanentFailure(Exception):
    """The message itself can't be sent (bad address, bad header, 5xx reply)."""


@functools.cache
def _ehlo_name() -> str:
    # smtplib would look this up again for every connection.
    return socket.getfqdn()


def _connect() -> smtplib.SMTP:
    """An SMTP connection with a socket timeout and verified TLS (Flask-Mail has neither)."""
    cfg = current_app.config
    timeout = cfg["MAIL_TIMEOUT"]
    context = ssl.create_default_context()
    if not cfg["MAIL_TLS_VERIFY"]:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cfg["MAIL_USE_SSL"]:
        host = smtplib.SMTP_SSL(cfg["MAIL_SERVER"], cfg["MAIL_PORT"], _ehlo_name(),
                                timeout=timeout, context=context)
    else:
        host = smtplib.SMTP(cfg["MAIL_SERVER"], cfg["MAIL_PORT"], _ehlo_name(),
                            timeout=timeout)
    try:
        if cfg["MAIL_USE_TLS"]:
            host.starttls(context=context)
        if cfg["MAIL_USERNAME"] and cfg["MAIL_PASSWORD"]:
            host.login(cfg["MAIL_USERNAME"], cfg["MAIL_PASSWORD"])
    except BaseException:
        host.close()
        raise
    return host


def _disconnect(host: smtplib.SMTP, polite: bool = True) -> None:
    try:
        if polite:
            host.quit()
    except Exception:  # noqa: BLE001 - the connection is being discarded anyway
        pass
    finally:
        host.close()


def _build(row: OutboxMessage) -> bytes:
    """The message as sent; anything that can't be built now never will be."""
    try:
        row.to_addr.encode("ascii")
        msg = EmailMessage(policy=MIME_POLICY)
        # The email package refuses CR/LF in header values: no header injection.
        msg["Subject"] = row.subject
        msg["From"] = _sender()
        msg["To"] = row.to_addr
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = row.message_id  # one Message-ID across every retry
        msg.set_content(row.body_text, cte=_transfer_encoding(row.body_text))
        if row.body_html:
            msg.add_alternative(row.body_html, subtype="html",
                                cte=_transfer_encoding(row.body_html))
        return msg.as_bytes()
    except (ValueError, TypeError, UnicodeError) as exc:
        raise PermanentFailure(f"message can't be built: {type(exc).__name__}") from None


def _transfer_encoding(text: str) -> str:
    """Plain 7bit when the text allows it, so the link and code read as-is in the raw
    message; quoted-printable for non-ASCII text or lines over SMTP's 998 limit."""
    if text.isascii() and all(len(line) <= 998 for line in text.splitlines()):
        return "7bit"
    return "quoted-printable"


def _is_permanent(exc: Exception) -> bool:
    """True when ``exc`` means this message will never be accepted (RFC 5321 5yz)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code >= 500
    return False


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


def _set(ids, **values) -> None:
    """Update rows this sender still holds (status ``sending``) and commit."""
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.status == "sending")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _sent_values() -> dict:
    # The bodies hold the confirmation link and code: keep them no longer than needed.
    return {"status": "sent", "sent_at": utcnow(), "last_error": None,
            "body_text": "", "body_html": None}


def _record_failure(row: OutboxMessage, exc: Exception, permanent: bool) -> str:
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
    _set([row.id], status=status, attempts=attempts, last_error=error, claimed_at=None,
         next_attempt_at=utcnow() + timedelta(seconds=delay))
    level = logging.ERROR if status == "failed" else logging.WARNING
    log.log(level, "outbox message %s attempt %s failed: %s%s -> %s", row.id, attempts,
            type(exc).__name__, f" {exc.smtp_code}" if hasattr(exc, "smtp_code") else "",
            status)
    return status


def send_due(limit: int = BATCH_SIZE, stop: threading.Event | None = None) -> dict[str, int]:
    """Claim and deliver what is due now; return counts by outcome.

    A failed message closes the connection (the next one reconnects), so one
    poisoned message never blocks the rest of the batch. If this raises, the
    claims it still holds are released, never left in ``sending``. Once ``stop``
    is set the batch ends after the message in hand and gives the rest back.
    """
    counts = {"sent": 0, "retry": 0, "failed": 0}
    todo = claim_due(limit)
    accepted: list[int] = []  # the SMTP server said 250; "sent" not yet recorded
    host = None
    # Give back what is left before the lease runs out, or another sender re-sends it.
    deadline = time.monotonic() + current_app.config["MAIL_CLAIM_LEASE"] / 2
    try:
        # A worker shutting down (SIGTERM, --max-requests) waits only seconds for this
        # thread; claims it still held would wait out MAIL_CLAIM_LEASE.
        while todo and time.monotonic() < deadline and not (stop and stop.is_set()):
            row = db.session.get(OutboxMessage, todo[0], populate_existing=True)
            if row is None:  # deleted by an operator meanwhile
                todo.pop(0)
                continue
            try:
                data, to_addr = _build(row), row.to_addr
                # No transaction stays open across SMTP I/O: a slow SMTP server
                # must never hold database locks that registrations wait for.
                db.session.rollback()
                if host is None:
                    host = _connect_or_defer(todo, counts)
                    if host is None:
                        break
                host.sendmail(_sender(), [to_addr], data)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded
                if host is not None:
                    _disconnect(host, polite=False)
                    host = None
                permanent = isinstance(exc, PermanentFailure) or _is_permanent(exc)
                counts[_outcome(_record_failure(row, exc, permanent))] += 1
                todo.pop(0)
                continue
            accepted.append(todo.pop(0))
            _set(accepted, **_sent_values())
            accepted.clear()
            counts["sent"] += 1
    finally:
        if host is not None:
            _disconnect(host)
        if todo or accepted:
            _release(todo, accepted)
    return counts


def _connect_or_defer(todo: list[int], counts: dict) -> smtplib.SMTP | None:
    """Connect; if the server is unreachable, every message left missed this try."""
    try:
        return _connect()  # the caller holds no transaction during the connect
    except Exception as exc:  # noqa: BLE001 - recorded on each row
        while todo:
            row = db.session.get(OutboxMessage, todo[0])
            if row is not None:
                counts[_outcome(_record_failure(row, exc, permanent=False))] += 1
            todo.pop(0)
        return None


def _sender() -> str:
    sender = current_app.config["MAIL_DEFAULT_SENDER"]
    return f"{sender[0]} <{sender[1]}>" if isinstance(sender, tuple) else sender


def _outcome(status: str) -> str:
    return "failed" if status == "failed" else "retry"


def _release(todo: list[int], accepted: list[int]) -> None:
    """After an error or a long batch: give back the claims not tried, record the sent."""
    for ids, values in ((todo, {"status": "pending", "claimed_at": None}),
                        (accepted, None)):
        if not ids:
            continue
        try:
            db.session.rollback()
            _set(ids, **(values or _sent_values()))
        except Exception as exc:  # noqa: BLE001 - the lease expires and frees them anyway
            log.warning("outbox: could not update %d claimed message(s) (%s); "
                        "they are retried when the claim lease expires",
                        len(ids), type(exc).__name__)
            try:
                db.session.rollback()
            except Exception:  # noqa: BLE001 - the connection may be gone
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
        wakeup.set()
    return result.rowcount


def wake() -> None:
    """Ask this process's dispatcher to look for due mail now."""
    wakeup.set()
