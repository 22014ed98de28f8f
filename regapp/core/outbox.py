"""The transactional mail outbox, as a queue: enqueue with the cause, claim, mark, retry.

Rows are added in the registering transaction and sent after it commits (see
``delivery``). Delivery is at-least-once: a sender that dies between the SMTP
server's 250 and the "sent" commit re-sends, with the same Message-ID, so
receivers can de-duplicate. Claims record their owner (``host:pid``): a live
dispatcher on the same host takes over the claims of a dead process at once;
other claims are taken over when their lease (MAIL_CLAIM_LEASE, renewed while
the batch is being sent) expires.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import secrets
import socket
import threading
import time
from datetime import timedelta
from datetime import timezone

from flask import current_app
from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import case
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from .. import pids
from ..extensions import db
from ..models import OutboxMessage
from ..models import utcnow
from . import rows

log = logging.getLogger(__name__)

BATCH_SIZE = 50
# How often (at most) a dispatcher looks for claims of dead processes on its host.
DEAD_OWNER_CHECK_S = 1.0
MIN_RENEW_INTERVAL_S = 0.2
# The dispatcher's statements are Core, on the table's own columns, run on the
# session's connection: through the ORM's bulk-update layer (session synchronisation,
# which they never need) a 20-message claim took 2.1 instead of 1.4 ms of CPU.
OUTBOX = OutboxMessage.__table__
# Set after a commit that queued mail; the dispatcher thread waits on it.
wakeup = threading.Event()


def enqueue(*, to: str, subject: str, body_text: str, body_html: str | None,
            kind: str = "confirm") -> None:
    """Add a message to the current session; it is sent only if the session commits."""
    # The Message-ID names the sender's domain; it is fixed here, once.
    sender_domain = (sender() or "").rpartition("@")[2].strip("> ") or "localhost"
    rows.add(
        OutboxMessage,
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


def owner() -> str:
    """Who holds a claim: ``host:pid`` of this process (recorded in ``claimed_by``)."""
    return f"{_hostname()}:{os.getpid()}"


@functools.cache
def _hostname() -> str:
    return socket.gethostname()[:200]


_dead_cache: dict = {"at": float("-inf"), "owners": ()}


def _dead_owners() -> tuple[str, ...]:
    """Owners of claims on this host whose process no longer exists (looked up once a
    second at most): their claims are taken over at once, not after the lease."""
    now = time.monotonic()
    if now - _dead_cache["at"] < DEAD_OWNER_CHECK_S:
        return _dead_cache["owners"]
    prefix, me = _hostname() + ":", owner()
    holders = db.session.scalars(
        select(OutboxMessage.claimed_by).distinct()
        .where(OutboxMessage.status == "sending",
               OutboxMessage.claimed_by.startswith(prefix, autoescape=True))
    ).all()
    dead = tuple(who for who in holders
                 if who != me and who[len(prefix):].isdigit()
                 and not pids.alive(int(who[len(prefix):])))
    _dead_cache.update(at=now, owners=dead)
    return dead


def _due_condition(dead_owners: bool):
    """Due now (bind ``now``): pending and its time has come, or claimed by a sender
    that lost it (its lease ran out before ``lease_cutoff``, or with ``dead_owners``
    its owner is one of ``dead``, processes of this host that are gone)."""
    c = OUTBOX.c
    lost = c.claimed_at < bindparam("lease_cutoff", type_=c.claimed_at.type)
    if dead_owners:
        lost = or_(lost, c.claimed_by.in_(bindparam("dead", expanding=True)))
    return or_(
        and_(c.status == "pending",
             c.next_attempt_at <= bindparam("now", type_=c.next_attempt_at.type)),
        # A claim whose sender died (crash between claim and mark) is taken again.
        and_(c.status == "sending", lost),
    )


@functools.lru_cache(maxsize=16)
def _claim_statement(dialect: str, dead_owners: bool, columns: tuple[str, ...]):
    """The claiming UPDATE, built once per shape (``columns``: attribute names of
    OutboxMessage to return); its values are bound per pass (``now``,
    ``lease_cutoff``, ``owner``, ``max_attempts``, ``limit``, ``dead``)."""
    c = OUTBOX.c
    due = _due_condition(dead_owners)
    candidates = select(c.id).where(due).order_by(c.id).limit(bindparam("limit"))
    if dialect == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    now = bindparam("now", type_=c.claimed_at.type)
    taken_over = c.status == "sending"
    used_up = and_(taken_over, c.attempts + 1 >= bindparam("max_attempts"))
    return (
        update(OUTBOX)
        .where(c.id.in_(candidates.scalar_subquery()), due)
        .values(status=case((used_up, "failed"), else_="sending"),
                claimed_at=case((used_up, None), else_=now),
                claimed_by=case((used_up, None), else_=bindparam("owner")),
                last_error=case((used_up, "sender lost its claim too often"),
                                else_=c.last_error),
                attempts=c.attempts + case((taken_over, 1), else_=0))
        .returning(c.id, c.status, *(OutboxMessage.__mapper__.columns[key] for key in columns))
    )


def claim_due(limit: int = BATCH_SIZE, columns: tuple = (), then=None) -> list:
    """Atomically claim up to ``limit`` due messages in one statement; return their ids.

    With ``columns`` (of OutboxMessage) the claiming statement returns them too, and
    ``then`` gets the claimed rows, ``(id, status, *columns)`` in id order, inside the
    claim's transaction: what it returns is returned instead of the ids. A sender
    reads its batch this way with no transaction of its own (on PostgreSQL, psycopg
    forgets its prepared statements at every ROLLBACK, so a read-only transaction
    ended by one cost the next requests on that connection their prepared plans).
    If ``then`` raises, nothing is claimed.

    PostgreSQL locks the candidates with ``FOR UPDATE SKIP LOCKED``; SQLite runs
    one writer at a time; on both the UPDATE re-checks that each row is still due,
    so two workers or two instances never both claim it. A lost claim taken over
    counts as an attempt, and one that used up its attempts is parked as ``failed``
    (a message that kills its sender every time is not retried forever).
    """
    now = utcnow()
    cfg = current_app.config
    try:
        dead = _dead_owners()
        statement = _claim_statement(db.engine.dialect.name, bool(dead),
                                     tuple(column.key for column in columns))
        params = {"now": now, "lease_cutoff": now - timedelta(seconds=cfg["MAIL_CLAIM_LEASE"]),
                  "owner": owner(), "max_attempts": cfg["MAIL_MAX_ATTEMPTS"], "limit": limit}
        if dead:
            params["dead"] = list(dead)
        result = db.session.connection().execute(statement, params)
        taken = sorted((row for row in result if row.status == "sending"), key=lambda r: r.id)
        claimed = then(taken) if then is not None else [row.id for row in taken]
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return claimed


# The rows this process still holds: ``ids`` (a list), status ``sending``, its claim.
_HELD = and_(OUTBOX.c.id.in_(bindparam("ids", expanding=True)), OUTBOX.c.status == "sending",
             OUTBOX.c.claimed_by == bindparam("owner"))


def _update_held(statement, ids, **params) -> int:
    """Run an UPDATE ``where(_HELD)`` on ``ids`` with ``params`` and commit; the rows
    it changed."""
    result = db.session.connection().execute(
        statement, {"ids": list(ids), "owner": owner(), **params})
    db.session.commit()
    return result.rowcount


def renew(ids) -> int:
    """Extend this process's claims on ``ids`` (a batch still being sent) and commit."""
    if not ids:
        return 0
    return _update_held(update(OUTBOX).where(_HELD).values(claimed_at=utcnow()), ids)


class LeaseKeeper:
    """One thread per process renews the claims of the batches being sent, every third
    of MAIL_CLAIM_LEASE, so the lease can be short (a dead sender's mail goes out
    soon) and still never runs out under a sender stuck in one slow SMTP call.
    It sleeps on an event while no batch is under way."""

    def __init__(self):
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._batches: dict[int, tuple] = {}
        self._wake = threading.Event()
        self._tokens = itertools.count()
        self._pid = None

    def hold(self, app, ids: list[int]) -> int:
        """Keep ``ids`` (the live list a batch pops from) claimed until ``drop``."""
        token = next(self._tokens)
        with self._lock:
            self._batches[token] = (app, ids, time.monotonic())
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, daemon=True,
                                 name="regapp-outbox-lease").start()
        self._wake.set()
        return token

    def drop(self, token: int) -> None:
        with self._lock:
            self._batches.pop(token, None)

    def _run(self) -> None:
        while True:
            with self._lock:
                batches = list(self._batches.values())
            if not batches:
                self._wake.wait()
                self._wake.clear()
                continue
            interval = max(min(app.config["MAIL_CLAIM_LEASE"] for app, _, _ in batches) / 3,
                           MIN_RENEW_INTERVAL_S)
            time.sleep(interval)
            with self._lock:
                batches = list(self._batches.values())
            for app, ids, since in batches:
                if time.monotonic() - since < interval or not ids:
                    continue
                try:
                    with app.app_context():
                        renew(list(ids))
                except Exception as exc:  # noqa: BLE001 - the batch goes on; the lease may lapse
                    log.warning("outbox: could not renew claims (%s)", type(exc).__name__)


leases = LeaseKeeper()


def mark(ids, **values) -> None:
    """Update rows this process still holds (status ``sending``, its claim) and commit."""
    _update_held(update(OUTBOX).where(_HELD).values(**values), ids)


def mark_sent(ids) -> None:
    """Record rows the SMTP server accepted as ``sent``; the accepted try counts as an
    attempt, as a failed one does in ``record_failure`` (``attempts`` = tries made)."""
    _update_held(_mark_sent_statement(), ids, now=utcnow())


@functools.cache
def _mark_sent_statement():
    c = OUTBOX.c
    # The bodies hold the confirmation link and code: keep them no longer than needed.
    return update(OUTBOX).where(_HELD).values(
        status="sent", sent_at=bindparam("now", type_=c.sent_at.type), last_error=None,
        body_text="", body_html=None, claimed_by=None, attempts=c.attempts + 1)


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
         claimed_by=None, next_attempt_at=utcnow() + timedelta(seconds=delay))
    level = logging.ERROR if status == "failed" else logging.WARNING
    log.log(level, "outbox message %s attempt %s failed: %s%s -> %s", row.id, attempts,
            type(exc).__name__, f" {exc.smtp_code}" if hasattr(exc, "smtp_code") else "",
            status, extra={"event": "delivery_failed", "outbox_id": row.id, "kind": row.kind,
                           "attempts": attempts, "status": status,
                           "account_id": row.account_id})
    return status


def release(todo: list[int], accepted: list[int]) -> None:
    """After an error or a long batch: give back the claims not tried, record the sent."""
    for ids, values in ((todo, {"status": "pending", "claimed_at": None, "claimed_by": None}),
                        (accepted, None)):
        if not ids:
            continue
        try:
            db.session.rollback()
            if values is None:
                mark_sent(ids)
            else:
                mark(ids, **values)
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
