"""Outbox delivery: claim a batch, send it over one SMTP connection, record it.

A message the server refuses is recorded and the session goes on (smtplib sends
RSET); a broken connection is replaced, so one poisoned message never blocks the
rest of a batch. No transaction stays open across SMTP I/O.
"""

from __future__ import annotations

import email.policy
import functools
import logging
import os
import re
import secrets
import smtplib
import socket
import ssl
import threading
import time
from email.message import EmailMessage
from email.utils import formatdate
from email.utils import parseaddr
from typing import NamedTuple

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..logs import event
from ..models import OutboxMessage
from ..models import User
from . import outbox
from .identity import email_key
from .outbox import BATCH_SIZE
from .outbox import PermanentFailure

log = logging.getLogger(__name__)

# "sent" is committed once per this many accepted messages, or this often.
SENT_GROUP = 20
SENT_GROUP_SECONDS = 0.5
# A batch sends for at most this long, then gives the rest back and claims again.
BATCH_SECONDS = 2.0
# CRLF line ends; 7bit so non-ASCII bodies are encoded for servers without 8BITMIME.
MIME_POLICY = email.policy.SMTP.clone(cte_type="7bit")
# Lines of the text that start with a dot get a second one (RFC 5321 4.5.2).
DOT_AT_LINE_START = re.compile(rb"(?m)^\.")
# Longest header line written without folding (the email package folds at 78).
HEADER_LINE = 78


@functools.cache
def _ehlo_name() -> str:
    # smtplib would look this up again for every connection.
    return socket.getfqdn()


def _tls_context(verify: bool) -> ssl.SSLContext:
    """Made once per CA store: loading the system's CA store took ~17 % of a worker's
    samples under sign-up load when it was done for every SMTP connection."""
    return _tls_context_for(verify, os.environ.get("SSL_CERT_FILE"),
                            os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _tls_context_for(verify: bool, cafile: str | None, capath: str | None) -> ssl.SSLContext:
    # cafile/capath: OpenSSL reads the store these variables name (the key of the cache).
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _connect() -> smtplib.SMTP:
    """An SMTP connection with a socket timeout and verified TLS (smtplib's defaults: neither)."""
    cfg = current_app.config
    timeout = cfg["MAIL_TIMEOUT"]
    if cfg["MAIL_USE_SSL"]:
        host = smtplib.SMTP_SSL(cfg["MAIL_SERVER"], cfg["MAIL_PORT"], _ehlo_name(),
                                timeout=timeout, context=_tls_context(cfg["MAIL_TLS_VERIFY"]))
    else:
        host = smtplib.SMTP(cfg["MAIL_SERVER"], cfg["MAIL_PORT"], _ehlo_name(),
                            timeout=timeout)
    try:
        if cfg["MAIL_USE_TLS"]:
            host.starttls(context=_tls_context(cfg["MAIL_TLS_VERIFY"]))
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


def _build(row) -> bytes:
    """The message as sent; anything that can't be built now never will be."""
    fast = _plain_bytes(row)
    if fast is not None:
        return fast
    try:
        row.to_addr.encode("ascii")
        msg = EmailMessage(policy=MIME_POLICY)
        # The email package refuses CR/LF in header values: no header injection.
        msg["Subject"] = row.subject
        msg["From"] = outbox.sender()
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


def _plain_bytes(row) -> bytes | None:
    """The common message (ASCII headers that need no folding, 7bit bodies) written
    directly, as the email package would write it; None for anything else, which
    ``_build`` hands to the email package. The email package parses every header it
    is given and took ~1 ms of CPU per message, the dispatcher's largest cost."""
    headers = (("Subject", row.subject), ("From", outbox.sender()), ("To", row.to_addr),
               ("Date", formatdate(localtime=True)), ("Message-ID", row.message_id))
    for name, value in headers:
        # Printable ASCII only (no CR/LF: no header injection), short enough not to fold.
        if (not isinstance(value, str) or not value or not value.isascii()
                or not value.isprintable() or len(name) + 2 + len(value) > HEADER_LINE):
            return None
    bodies = [("plain", row.body_text)] + ([("html", row.body_html)] if row.body_html else [])
    if any(not isinstance(text, str) or _transfer_encoding(text) != "7bit" for _, text in bodies):
        return None
    lines = [f"{name}: {value}" for name, value in headers]
    lines.append("MIME-Version: 1.0")
    parts = [[f'Content-Type: text/{subtype}; charset="utf-8"',
              "Content-Transfer-Encoding: 7bit", "", *_body_lines(text)]
             for subtype, text in bodies]
    if len(parts) == 1:
        lines += parts[0]
    else:
        boundary = f"==============={secrets.randbelow(10**19):019d}=="
        if any(boundary in text for _, text in bodies):
            return None
        lines += ["Content-Type: multipart/alternative;", f' boundary="{boundary}"', ""]
        for part in parts:
            lines += [f"--{boundary}", *part]
        lines += [f"--{boundary}--", ""]
    return "\r\n".join(lines).encode("ascii")


def _body_lines(text: str) -> list[str]:
    # The email package ends a body with a newline; lines end in CRLF on the wire.
    return [*text.splitlines(), ""] if text else [""]


def _transfer_encoding(text: str) -> str:
    """Plain 7bit when the text allows it, so the link and code read as-is in the raw
    message; quoted-printable for non-ASCII text or lines over SMTP's 998 limit."""
    if text.isascii() and all(len(line) <= 998 for line in text.splitlines()):
        return "7bit"
    return "quoted-printable"


def _send(host: smtplib.SMTP, from_addr: str, to_addr: str, data: bytes) -> None:
    """``host.sendmail(from_addr, [to_addr], data)``, pipelined where the server allows.

    With PIPELINING (RFC 2920) MAIL, RCPT and DATA go out in one write and their
    replies are read together, then the text and its end: two round trips per message
    instead of four. The addresses are regapp's own (the sender from configuration,
    the recipient as stored, both plain ASCII), so smtplib's address parsing, which
    cost more CPU than the rest of the conversation, is not needed either. Refusals
    raise what ``sendmail`` raises (after RSET), so callers treat both alike.
    """
    host.ehlo_or_helo_if_needed()  # what sendmail does first; it tells us the extensions
    sender = parseaddr(from_addr)[1] if "<" in from_addr else from_addr
    if (not host.does_esmtp or not host.has_extn("pipelining") or not sender.isascii()
            or not to_addr.isascii() or any(c in "\r\n<>" for c in sender + to_addr)):
        host.sendmail(from_addr, [to_addr], data)
        return
    size = f" SIZE={len(data)}" if host.has_extn("size") else ""
    host.send(f"MAIL FROM:<{sender}>{size}\r\nRCPT TO:<{to_addr}>\r\nDATA\r\n".encode("ascii"))
    mail, rcpt, start = host.getreply(), host.getreply(), host.getreply()
    if start[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
        # A server that starts the text although MAIL or RCPT failed: end it empty.
        host.send(b".\r\n")
        host.getreply()
    if mail[0] != 250:
        _refused(host, smtplib.SMTPSenderRefused(*mail, from_addr), mail[0])
    if rcpt[0] not in (250, 251):
        _refused(host, smtplib.SMTPRecipientsRefused({to_addr: rcpt}), rcpt[0])
    if start[0] != 354:
        _refused(host, smtplib.SMTPDataError(*start), start[0])
    # Most messages have no line that starts with a dot: a search, not a substitution.
    text = DOT_AT_LINE_START.sub(b"..", data) if data[:1] == b"." or b"\n." in data else data
    host.send(text + (b"" if text.endswith(b"\r\n") else b"\r\n") + b".\r\n")
    code, reply = host.getreply()
    if code != 250:
        _refused(host, smtplib.SMTPDataError(code, reply), code)


def _refused(host: smtplib.SMTP, exc: Exception, code: int):
    """Raise ``exc`` as smtplib does: after RSET, unless the server is closing (421)."""
    if code == 421:
        host.close()
    else:
        host._rset()
    raise exc


def _is_permanent(exc: Exception) -> bool:
    """True when ``exc`` means this message will never be accepted (RFC 5321 5yz)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code >= 500
    return False


class Letter(NamedTuple):
    """What a batch needs of a claimed row once its transaction has ended."""

    id: int
    attempts: int
    to_addr: str
    subject: str
    body_text: str
    body_html: str | None
    message_id: str
    kind: str  # for the logs' "kind" field
    account_id: int | None = None  # for the logs


# What a batch reads of each row it claims (besides the id), in Letter's order.
LETTER_COLUMNS = (OutboxMessage.attempts, OutboxMessage.to_addr, OutboxMessage.subject,
                  OutboxMessage.body_text, OutboxMessage.body_html, OutboxMessage.message_id,
                  OutboxMessage.kind)


def _letters(rows) -> dict[int, Letter]:
    """The claimed rows (``id, status, *LETTER_COLUMNS``) as Letters by id, in order,
    with the accounts they go to, found in one query (for the logs, which never show
    addresses)."""
    keys = {}
    for row in rows:
        try:
            keys[row.to_addr] = email_key(row.to_addr)
        except Exception:  # noqa: BLE001 - a log detail never stops delivery
            continue
    accounts = dict(db.session.execute(
        select(User.email_key, User.id).where(User.email_key.in_(set(keys.values())))
    ).all()) if keys else {}
    return {row.id: Letter(row.id, *row[2:], account_id=accounts.get(keys.get(row.to_addr)))
            for row in rows}


def _connection_survives(exc: Exception) -> bool:
    """True when the SMTP session can go on after ``exc``: the server refused this one
    message (smtplib has sent RSET) or nothing was said to it at all."""
    if isinstance(exc, PermanentFailure):
        return True
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code != 421 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code != 421  # 421: the server is closing the connection
    return False


def send_due(limit: int = BATCH_SIZE, stop: threading.Event | None = None) -> dict[str, int]:
    """Claim and deliver a batch of what is due now, over one SMTP connection;
    return counts by outcome (see ``send_batch``)."""
    return send_batch(limit, stop)[0]


def send_batch(limit: int = BATCH_SIZE,
               stop: threading.Event | None = None) -> tuple[dict[str, int], bool]:
    """Claim and deliver a batch of what is due now, over one SMTP connection;
    return counts by outcome and whether messages were given back unsent at the
    batch's time limit (more is due at once).

    The batch is claimed and read in one statement (and its accounts looked up in one
    query, in the same transaction); "sent" is
    committed once per group of SENT_GROUP messages (or SENT_GROUP_SECONDS), so a
    crash re-sends at most that group once more, with the same Message-IDs. A
    message the server refuses is recorded and the session goes on after smtplib's
    RSET; a broken connection is replaced for the next message. If this raises,
    the claims it still holds are released, never left in ``sending``. Once
    ``stop`` is set the batch ends after the message in hand and gives the rest back.
    """
    counts = {"sent": 0, "retry": 0, "failed": 0}
    # The claim's own transaction reads the batch; none is open during the SMTP I/O
    # (a slow SMTP server must never hold database locks that registrations wait for).
    letters = outbox.claim_due(limit, LETTER_COLUMNS, _letters)
    if not letters:
        return counts, False
    todo = list(letters)  # ids, in order; popped as they are handled
    app = current_app._get_current_object()
    accepted: list[int] = []  # the SMTP server said 250; "sent" not yet recorded
    host = None
    # The claims are renewed while the batch runs; still, a batch gives back what it
    # has not sent after BATCH_SECONDS (or half a lease), so a slow SMTP server never
    # keeps a sender from the next claim pass, where a dead process's claims come first.
    deadline = time.monotonic() + min(BATCH_SECONDS, app.config["MAIL_CLAIM_LEASE"] / 2)
    lease = outbox.leases.hold(app, todo)
    try:
        from_addr = outbox.sender()
        recorded = time.monotonic()
        # A worker shutting down (SIGTERM, --max-requests) waits only seconds for this
        # thread; what it has not sent goes back to the queue.
        while todo and time.monotonic() < deadline and not (stop and stop.is_set()):
            letter = letters.get(todo[0])
            if letter is None:  # deleted by an operator meanwhile
                todo.pop(0)
                continue
            try:
                data = _build(letter)
                if host is None:
                    host = _connect_or_defer(todo, letters, counts)
                    if host is None:
                        break
                _send(host, from_addr, letter.to_addr, data)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded
                if host is not None and not _connection_survives(exc):
                    _disconnect(host, polite=False)
                    host = None
                permanent = isinstance(exc, PermanentFailure) or _is_permanent(exc)
                counts[_outcome(outbox.record_failure(letter, exc, permanent))] += 1
                todo.pop(0)
                continue
            accepted.append(todo.pop(0))
            counts["sent"] += 1
            event(log, "delivered", "outbox message %s sent", letter.id, outbox_id=letter.id,
                  kind=letter.kind, account_id=letter.account_id, attempts=letter.attempts + 1)
            if len(accepted) >= SENT_GROUP or time.monotonic() - recorded >= SENT_GROUP_SECONDS:
                outbox.mark_sent(accepted)
                accepted.clear()
                recorded = time.monotonic()
        if accepted:
            outbox.mark_sent(accepted)
            accepted.clear()
        given_back = bool(todo)
    finally:
        outbox.leases.drop(lease)
        if host is not None:
            _disconnect(host)
        if todo or accepted:
            outbox.release(todo, accepted)
    return counts, given_back


def _connect_or_defer(todo: list[int], letters: dict[int, Letter],
                      counts: dict) -> smtplib.SMTP | None:
    """Connect; if the server is unreachable, every message left missed this try."""
    try:
        return _connect()  # the caller holds no transaction during the connect
    except Exception as exc:  # noqa: BLE001 - recorded on each row
        while todo:
            letter = letters.get(todo[0])
            if letter is not None:
                counts[_outcome(outbox.record_failure(letter, exc, permanent=False))] += 1
            todo.pop(0)
        return None


def _outcome(status: str) -> str:
    return "failed" if status == "failed" else "retry"


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
