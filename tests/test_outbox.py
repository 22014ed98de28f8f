"""The durable mail outbox against a real SMTP server: commit, retry, park, claim, dispatch."""

from __future__ import annotations

import logging
import os
import random
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from regapp import create_app
from regapp.core import delivery
from regapp.core import dispatcher as dispatch
from regapp.core import outbox
from regapp.extensions import db
from regapp.models import OutboxMessage
from regapp.models import User
from regapp.models import utcnow
from tests.dbstate import fail_outbox_inserts
from tests.serverkit import PostgresDatabase
from tests.smtp import Recorder
from tests.smtp import SMTPServer
from tests.smtp import confirmation
from tests.smtp import free_port

PASSWORD = "Str0ng-passphrase"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
MIGRATIONS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")


class AttemptRecorder(Recorder):
    """Records the Message-ID of every DATA attempt, accepted or not; refuses some RCPTs."""

    def __init__(self):
        super().__init__()
        self.attempts: list[str] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        for line in envelope.content.splitlines():
            if line.lower().startswith(b"message-id:"):
                self.attempts.append(line.split(b":", 1)[1].strip().decode())
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture(params=[True, False], ids=["pipelining", "one-at-a-time"])
def server(request):
    """A private SMTP server (stoppable without disturbing other tests), with and
    without PIPELINING: regapp pipelines where the server allows, else it goes
    command by command, and every outcome must be the same."""
    srv = SMTPServer()
    srv.recorder = AttemptRecorder()
    srv.recorder.pipelining = request.param
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def blackhole():
    """A TCP port that accepts connections (kernel backlog) and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def dispatcher(app):
    """Start the app's dispatcher thread; always stopped before the app is torn down."""
    started = []

    def start():
        thread = dispatch.ensure_dispatcher(app)
        started.append(thread)
        return thread

    yield start
    dispatch.stop_dispatcher(app)
    for thread in started:
        assert not thread.is_alive()


def users(make_user, n: int = 1, prefix: str = "user"):
    """Sign up ``n`` users (``make_user``) at example.com; return their addresses."""
    return [make_user(f"{prefix}{i}", f"{prefix}{i}@example.com") for i in range(n)]


def queue(app, n: int, prefix: str = "bulk") -> None:
    """Queue ``n`` plain messages through the public ``enqueue`` in one commit."""
    with app.app_context():
        for i in range(n):
            outbox.enqueue(to=f"{prefix}{i}@example.com", subject=f"hello {i}",
                           body_text=f"body {i}", body_html=None)
        db.session.commit()


def rows(app) -> list[OutboxMessage]:
    with app.app_context():
        found = db.session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).all()
        db.session.expunge_all()
        return found


def set_rows(app, **values) -> None:
    """Rewrite every outbox row (time travel: make retries due, age claims)."""
    with app.app_context():
        db.session.execute(sa.update(OutboxMessage).values(**values))
        db.session.commit()


def send(app) -> dict:
    with app.app_context():
        return delivery.send_all_due()


def message_ids(messages) -> list[str]:
    return [m["Message-ID"] for m in messages]


def closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


# -- the transaction -------------------------------------------------------------------

def test_email_row_is_committed_with_the_user(app, client, make_user):
    users(make_user)
    r = client.post("/api/register/", json={"username": "other", "email": "USER0@example.com",
                                            "password": PASSWORD})
    assert r.status_code == 400  # duplicate: that transaction left no second confirmation
    # (only the duplicate-sign-up mail to the address's owner, issue 10)
    [row] = [row for row in rows(app) if row.kind == "confirm"]
    assert (row.to_addr, row.status, row.attempts) == ("user0@example.com", "pending", 0)
    assert row.message_id.startswith("<") and row.message_id.endswith("@localhost>")


def test_message_ids_do_not_depend_on_the_random_module(app, client):
    """A reseeded ``random`` (a test generator, a library) made two Message-IDs equal
    within one clock tick: the second sign-up's resend answered 503 (found by
    schemathesis)."""
    for name in ("seeded0", "seeded1"):
        random.seed(7)
        r = client.post("/api/register/", json={"username": name, "email": f"{name}@x.io",
                                                "password": PASSWORD})
        assert r.status_code == 201, r.get_json()
        random.seed(7)
        r = client.post("/api/resend-confirmation/", json={"email": f"{name}@x.io"})
        assert r.status_code == 202
    ids = [row.message_id for row in rows(app)]
    assert len(ids) == 4 and len(set(ids)) == 4


def test_failed_registration_transaction_leaves_neither_row(app, client, backend, smtp, make_user):
    fail_outbox_inserts(app, backend, True)
    try:
        r = client.post("/api/register/", json={"username": "u", "email": "u@example.com",
                                                "password": PASSWORD})
    finally:
        fail_outbox_inserts(app, backend, False)
    assert r.status_code == 503 and r.is_json
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(User.id))) == 0
    assert rows(app) == []
    # Nothing half-made blocks a retry of the same registration.
    users(make_user, prefix="u")
    assert len(rows(app)) == 1


# -- the response never waits for SMTP --------------------------------------------------

@pytest.mark.config(MAIL_PORT=closed_port())
def test_registration_succeeds_while_smtp_is_down(app, client, make_user):
    users(make_user, 2)
    with app.app_context():
        assert delivery.send_due() == {"sent": 0, "retry": 2, "failed": 0}
    assert [r.status for r in rows(app)] == ["pending", "pending"]


@pytest.mark.config(OUTBOX_AUTOSTART=True, MAIL_TIMEOUT=1, MAIL_POLL_INTERVAL=1)
def test_response_is_fast_while_the_sender_hangs_on_smtp(app, client, dispatcher, blackhole,
                                                         make_user):
    app.config["MAIL_PORT"] = blackhole
    dispatcher()
    users(make_user, 1, prefix="first")
    time.sleep(0.2)  # the dispatcher is now stuck waiting for a greeting
    started = time.monotonic()
    users(make_user, 1, prefix="second")
    assert time.monotonic() - started < 1.0
    assert rows(app)[0].status == "sending"  # the sender really was stuck meanwhile


# -- exactly once, retries and backoff --------------------------------------------------

def test_delivered_exactly_once(app, client, smtp, make_user):
    emails = users(make_user, 3)
    assert send(app) == {"sent": 3, "retry": 0, "failed": 0}
    assert send(app) == {"sent": 0, "retry": 0, "failed": 0}
    stored = rows(app)
    assert sorted(message_ids(smtp.messages)) == sorted(r.message_id for r in stored)
    assert sorted(m["To"] for m in smtp.messages) == emails
    for row in stored:
        assert row.status == "sent" and row.sent_at is not None and row.attempts == 1
        # The secrets are gone from the row; what operators need stays.
        assert row.body_text == "" and row.body_html is None
        assert row.to_addr and row.subject == "Confirm your email address"


@pytest.mark.config(MAIL_RETRY_BASE=10)
def test_smtp_down_retried_with_backoff_then_delivered_once(app, client, server, make_user):
    port = server.port
    app.config["MAIL_PORT"] = port
    server.stop()
    users(make_user)
    for attempt, delay in ((1, 10), (2, 20), (3, 40)):
        before = utcnow()
        assert send(app) == {"sent": 0, "retry": 1, "failed": 0}
        after = utcnow()
        [row] = rows(app)
        assert (row.status, row.attempts) == ("pending", attempt)
        # Due ``delay`` seconds after the failure, which came between before and after
        # (a loaded machine can take a second over the refused connection).
        slack = timedelta(milliseconds=5)
        assert (before + timedelta(seconds=delay) - slack <= row.next_attempt_at
                <= after + timedelta(seconds=delay) + slack)
        assert send(app) == {"sent": 0, "retry": 0, "failed": 0}  # not due yet
        set_rows(app, next_attempt_at=utcnow() - timedelta(seconds=1))
    restarted = SMTPServer(port)
    restarted.start()
    try:
        assert send(app) == {"sent": 1, "retry": 0, "failed": 0}
        assert send(app) == {"sent": 0, "retry": 0, "failed": 0}
        assert message_ids(restarted.messages) == [row.message_id]
    finally:
        restarted.stop()


@pytest.mark.config(MAIL_MAX_ATTEMPTS=3, MAIL_PORT=closed_port())
def test_parked_after_max_attempts_and_visible_to_operators(app, client, runner, smtp, make_user):
    [email] = users(make_user)
    assert send(app) == {"sent": 0, "retry": 2, "failed": 1}
    [row] = rows(app)
    assert (row.status, row.attempts) == ("failed", 3)
    assert "ConnectionRefusedError" in row.last_error
    assert send(app) == {"sent": 0, "retry": 0, "failed": 0}  # parked: no more tries
    listed = runner.invoke(args=["mail", "list", "--status", "failed"])
    assert listed.exit_code == 0 and email in listed.output and f"{row.id}\t" in listed.output
    app.config["MAIL_PORT"] = smtp.port
    with app.app_context():
        assert outbox.retry() == 1
    assert send(app)["sent"] == 1
    assert message_ids(smtp.messages) == [row.message_id]


def test_4xx_replies_are_retried_with_the_same_message_id(app, client, server, make_user):
    app.config["MAIL_PORT"] = server.port
    server.recorder.reply = "451 4.3.0 try later"
    users(make_user)
    with app.app_context():
        assert delivery.send_due() == {"sent": 0, "retry": 1, "failed": 0}
        assert delivery.send_due() == {"sent": 0, "retry": 1, "failed": 0}
    [row] = rows(app)
    assert (row.status, row.attempts) == ("pending", 2)
    assert "451" in row.last_error
    server.recorder.reply = None
    assert send(app) == {"sent": 1, "retry": 0, "failed": 0}
    assert server.recorder.attempts == [row.message_id] * 3
    assert message_ids(server.messages) == [row.message_id]


def test_5xx_replies_are_parked_after_the_permanent_limit(app, client, server, make_user):
    app.config["MAIL_PORT"] = server.port
    server.recorder.reply = "550 5.1.1 no such user"
    users(make_user)
    assert send(app) == {"sent": 0, "retry": 2, "failed": 1}
    [row] = rows(app)
    assert (row.status, row.attempts) == ("failed", app.config["MAIL_MAX_PERMANENT_ATTEMPTS"])
    assert "550" in row.last_error
    assert server.messages == []


def test_poisoned_messages_do_not_block_the_batch(app, client, server, make_user):
    app.config["MAIL_PORT"] = server.port
    server.recorder.refuse.add("gone@example.com")
    with app.app_context():
        outbox.enqueue(to="mıke@example.org", subject="hi", body_text="x", body_html=None)
        outbox.enqueue(to="a@example.com", subject="hi\r\nBcc: victim@evil.example",
                       body_text="x", body_html=None)
        outbox.enqueue(to="gone@example.com", subject="hi", body_text="x", body_html=None)
        db.session.commit()
    emails = users(make_user, 2)
    with app.app_context():
        counts = delivery.send_due()
    assert counts == {"sent": 2, "retry": 1, "failed": 2}
    assert [m["To"] for m in server.messages] == emails
    assert all(m["Bcc"] is None for m in server.messages)
    assert all("victim" not in rcpt for _, rcpts in server.recorder.envelopes for rcpt in rcpts)
    status = {r.to_addr: (r.status, r.attempts) for r in rows(app)}
    assert status["mıke@example.org"] == ("failed", 1)
    assert status["a@example.com"] == ("failed", 1)
    assert status["gone@example.com"] == ("pending", 1)  # 5xx: bounded retries


def test_lines_starting_with_a_dot_arrive_as_written(app, server):
    """SMTP ends the text at a line holding one dot: such lines are sent doubled
    (RFC 5321 4.5.2) and the server hands the text back as it was written."""
    app.config["MAIL_PORT"] = server.port
    text = ".\n..two\n.three\nlast ."
    with app.app_context():
        outbox.enqueue(to="dots@example.com", subject="dots", body_text=text, body_html=None)
        db.session.commit()
    assert send(app) == {"sent": 1, "retry": 0, "failed": 0}
    [msg] = server.messages
    assert msg.get_content().replace("\r\n", "\n") == text + "\n"


# -- claims: concurrent senders, crashed senders, errors mid-batch ---------------------

@pytest.mark.parametrize("separate_apps", [False, True], ids=["one-app", "two-apps"])
def test_concurrent_senders_deliver_each_message_once(app, smtp, separate_apps):
    queue(app, 40)
    senders = [create_app({**app.config}) if separate_apps else app for _ in range(4)]
    barrier = threading.Barrier(len(senders))
    errors, totals = [], []

    def run(sender_app):
        try:
            with sender_app.app_context():
                barrier.wait()
                total = {"sent": 0, "retry": 0, "failed": 0}
                # Small batches, so the senders keep racing for the same rows.
                while counts := delivery.send_due(limit=3):
                    if not any(counts.values()):
                        break
                    total = {k: total[k] + counts[k] for k in total}
                totals.append(total)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if separate_apps:
        for sender_app in senders:
            with sender_app.app_context():
                db.engine.dispose()
    assert errors == []
    assert sum(t["sent"] for t in totals) == 40
    ids = message_ids(smtp.messages)
    assert len(ids) == 40 and len(set(ids)) == 40
    assert {r.status for r in rows(app)} == {"sent"}


def test_a_claim_stuck_in_sending_is_resent_after_the_lease(app, smtp):
    queue(app, 1)
    with app.app_context():
        assert len(outbox.claim_due()) == 1  # a sender claims it, then dies
    assert send(app) == {"sent": 0, "retry": 0, "failed": 0}
    assert rows(app)[0].status == "sending"
    lease = app.config["MAIL_CLAIM_LEASE"]
    set_rows(app, claimed_at=utcnow() - timedelta(seconds=lease + 1))
    assert send(app) == {"sent": 1, "retry": 0, "failed": 0}
    assert message_ids(smtp.messages) == [rows(app)[0].message_id]


def test_claims_of_a_process_that_is_gone_are_taken_over_before_their_lease(app, smtp):
    """A claim held by a process of this host that no longer exists is taken at once
    (counted as an attempt); one held by a live process waits for its lease."""
    queue(app, 3)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = socket.gethostname()
        with app.app_context():
            first, second, _ = (r.id for r in rows(app))
            for row_id, pid in ((first, gone.pid), (second, live.pid)):
                db.session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == row_id)
                                   .values(status="sending", claimed_at=utcnow(),
                                           claimed_by=f"{host}:{pid}"))
            db.session.commit()
        time.sleep(outbox.DEAD_OWNER_CHECK_S)  # this process looked for dead owners before
        assert send(app) == {"sent": 2, "retry": 0, "failed": 0}
        by_id = {r.id: r for r in rows(app)}
        assert (by_id[first].status, by_id[first].attempts) == ("sent", 2)
        assert (by_id[second].status, by_id[second].claimed_by) == ("sending",
                                                                      f"{host}:{live.pid}")
        assert sorted(m["To"] for m in smtp.messages) == sorted(
            r.to_addr for r in by_id.values() if r.status == "sent")
    finally:
        live.kill()
        live.wait()


@pytest.mark.config(MAIL_MAX_ATTEMPTS=3)
def test_lost_claims_count_as_attempts_and_end_parked(app, smtp):
    """A message whose sender dies every time is not retried forever (E4)."""
    queue(app, 1)
    lease = app.config["MAIL_CLAIM_LEASE"]
    with app.app_context():
        assert len(outbox.claim_due()) == 1  # claimed, then the sender "dies"
    for attempts in (1, 2):
        set_rows(app, claimed_at=utcnow() - timedelta(seconds=lease + 1))
        with app.app_context():
            assert len(outbox.claim_due()) == 1  # taken over: one more attempt
        assert rows(app)[0].attempts == attempts
    set_rows(app, claimed_at=utcnow() - timedelta(seconds=lease + 1))
    with app.app_context():
        assert outbox.claim_due() == []
    [row] = rows(app)
    assert (row.status, row.attempts) == ("failed", 3)
    assert smtp.messages == []


@pytest.mark.config(MAIL_CLAIM_LEASE=0)
def test_a_batch_gives_back_what_it_cannot_send_within_half_its_lease(app, smtp):
    queue(app, 3)
    with app.app_context():
        assert delivery.send_due() == {"sent": 0, "retry": 0, "failed": 0}
    assert [(r.status, r.claimed_at, r.attempts) for r in rows(app)] == [("pending", None, 0)] * 3
    assert smtp.messages == []


def _fail_recording_for(app, backend, address: str, on: bool) -> None:
    """A database that refuses to record a failed attempt for one address."""
    with app.app_context(), db.engine.begin() as conn:
        if backend == "postgresql":
            if on:
                conn.execute(sa.text(
                    "CREATE FUNCTION no_record() RETURNS trigger LANGUAGE plpgsql AS "
                    f"$$ BEGIN IF NEW.attempts > 0 AND NEW.to_addr = '{address}' THEN "
                    "RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; END $$"))
                conn.execute(sa.text(
                    "CREATE TRIGGER no_record BEFORE UPDATE ON outbox_messages "
                    "FOR EACH ROW EXECUTE FUNCTION no_record()"))
            else:
                conn.execute(sa.text("DROP TRIGGER IF EXISTS no_record ON outbox_messages"))
                conn.execute(sa.text("DROP FUNCTION IF EXISTS no_record()"))
        elif on:
            conn.execute(sa.text(
                "CREATE TRIGGER no_record BEFORE UPDATE ON outbox_messages "
                f"WHEN NEW.attempts > 0 AND NEW.to_addr = '{address}' "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"))
        else:
            conn.execute(sa.text("DROP TRIGGER IF EXISTS no_record"))


def test_send_due_that_raises_leaves_nothing_in_sending(app, backend, server):
    app.config["MAIL_PORT"] = server.port
    server.recorder.refuse.add("bad1@example.com")
    queue(app, 4, prefix="bad")
    _fail_recording_for(app, backend, "bad1@example.com", True)
    try:
        with app.app_context(), pytest.raises(sa.exc.DBAPIError):
            delivery.send_due()
    finally:
        _fail_recording_for(app, backend, "bad1@example.com", False)
    assert [(r.status, r.attempts) for r in rows(app)] == [
        ("sent", 1), ("pending", 0), ("pending", 0), ("pending", 0)]
    assert send(app)["sent"] == 2
    assert [m["To"] for m in server.messages] == [f"bad{i}@example.com" for i in (0, 2, 3)]


def test_a_batch_is_claimed_and_read_in_one_transaction_with_no_rollback(app, smtp,
                                                                         statements):
    """The claim returns what the batch sends; the accounts are looked up before its
    commit. No transaction of a pass ends in ROLLBACK: on PostgreSQL psycopg drops
    every prepared statement of the connection at one, and the pool hands that
    connection to the next sign-up."""
    queue(app, 3)
    ended = []
    with app.app_context():
        sa.event.listen(db.engine, "commit", lambda conn: ended.append("commit"))
        sa.event.listen(db.engine, "rollback", lambda conn: ended.append("rollback"))
        statements.clear()
        assert delivery.send_due() == {"sent": 3, "retry": 0, "failed": 0}
    batch_reads = [s for s in statements
                   if s.lstrip().upper().startswith("SELECT") and "body_text" in s]
    claims = [s for s in statements if s.lstrip().upper().startswith("UPDATE")
              and "RETURNING" in s.upper() and "body_text" in s]
    assert batch_reads == [] and len(claims) == 1
    assert ended == ["commit", "commit"]  # the claim (with the read), then "sent"
    assert [m["Subject"] for m in smtp.messages] == ["hello 0", "hello 1", "hello 2"]
    assert [(r.status, r.attempts) for r in rows(app)] == [("sent", 1)] * 3


def test_a_claim_whose_reader_fails_claims_nothing(app):
    queue(app, 2)

    def reader(claimed):
        assert [row.id for row in claimed] == sorted(row.id for row in claimed)
        raise RuntimeError("the batch could not be read")

    with app.app_context(), pytest.raises(RuntimeError):
        outbox.claim_due(columns=(OutboxMessage.to_addr,), then=reader)
    assert [(r.status, r.claimed_by) for r in rows(app)] == [("pending", None)] * 2


@pytest.mark.config(MAIL_TIMEOUT=1)
def test_smtp_connection_times_out_and_the_row_is_kept(app, smtp, blackhole):
    app.config["MAIL_PORT"] = blackhole
    queue(app, 2)
    started = time.monotonic()
    with app.app_context():
        assert delivery.send_due() == {"sent": 0, "retry": 2, "failed": 0}
    assert time.monotonic() - started < 3
    assert all(r.status == "pending" and "timed out" in r.last_error for r in rows(app))
    app.config["MAIL_PORT"] = smtp.port
    assert send(app)["sent"] == 2


# -- no secrets in logs or rows ---------------------------------------------------------

def test_logs_and_errors_hold_no_body_token_or_code(app, client, server, caplog, make_user):
    app.config["MAIL_PORT"] = server.port
    server.recorder.reply = "451 4.3.0 try later"
    users(make_user)
    with caplog.at_level(logging.DEBUG):
        with app.app_context():
            assert delivery.send_due()["retry"] == 1
        server.recorder.reply = None
        assert send(app)["sent"] == 1
    link, token, code = confirmation(server.messages[0])
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("regapp"))
    assert "451" in ours
    for secret in (token, code, link, "please confirm"):
        assert secret not in ours
    with app.app_context():
        errors = db.session.scalars(sa.select(OutboxMessage.last_error)).all()
    assert all(token not in (e or "") and code not in (e or "") for e in errors)


# -- the dispatcher thread --------------------------------------------------------------

@pytest.mark.config(OUTBOX_AUTOSTART=True, MAIL_POLL_INTERVAL=60)
def test_dispatcher_delivers_after_commit_without_anyone_sending(app, client, smtp, dispatcher,
                                                                 make_user):
    thread = dispatcher()
    assert dispatcher() is thread and thread.is_alive()  # one per process
    users(make_user, 2)
    messages = smtp.wait_for(2, timeout=5)
    assert sorted(m["To"] for m in messages) == ["user0@example.com", "user1@example.com"]
    time.sleep(0.1)
    assert len(smtp.messages) == 2


def test_dispatcher_is_off_unless_autostarted(app):
    assert dispatch.ensure_dispatcher(app) is None


@pytest.mark.parametrize("db_kind", ["sqlite", "postgresql"])
def test_dispatcher_survives_a_database_outage(db_kind, tmp_path, smtp, caplog):
    if db_kind == "postgresql" and not TEST_DATABASE_URL:
        pytest.skip("needs TEST_DATABASE_URL")
    later = None  # the database does not exist yet when the dispatcher starts
    if db_kind == "postgresql":
        later = PostgresDatabase("regapp_late")
        uri = later.url
    else:
        uri = "sqlite:///" + str(tmp_path / "later" / "regapp.sqlite")  # no directory yet
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": uri, "OUTBOX_AUTOSTART": True,
                      "MAIL_POLL_INTERVAL": 1, "MAIL_PORT": smtp.port})
    try:
        with caplog.at_level(logging.WARNING, logger="regapp.core.outbox"):
            thread = dispatch.ensure_dispatcher(app)
            time.sleep(1.5)  # at least two failed passes
            assert thread.is_alive()
            assert "dispatcher pass failed (OperationalError)" in caplog.text
        if later is not None:
            later.create()
        else:
            (tmp_path / "later").mkdir()
        with app.app_context():
            upgrade(directory=MIGRATIONS)
        queue(app, 1)
        smtp.wait_for(1, timeout=5)
        assert dispatch.ensure_dispatcher(app) is thread
    finally:
        dispatch.stop_dispatcher(app)
        with app.app_context():
            db.engine.dispose()
        if later is not None:
            later.drop()
