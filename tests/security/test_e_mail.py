"""SECURITY.md E1-E4, E8 and D5 against the running server: gunicorn started as the
contract says, a real SMTP server on loopback, SQLite and PostgreSQL.

Already proven in-process (tests/test_outbox.py), not repeated here:
  E1 row stays pending, no 500     -> test_registration_succeeds_while_smtp_is_down
  E1/E2 response never waits       -> test_response_is_fast_while_the_sender_hangs_on_smtp
  E2 connect timeout keeps the row -> test_smtp_connection_times_out_and_the_row_is_kept
  E3 backoff 10/20/40 s            -> test_smtp_down_retried_with_backoff_then_delivered_once
  E3 4yz same Message-ID, 5yz park -> test_4xx_replies_are_retried_with_the_same_message_id,
                                      test_5xx_replies_are_parked_after_the_permanent_limit
  E3 poison never blocks others    -> test_poisoned_messages_do_not_block_the_batch
  E4 lease re-claim (in-process)   -> test_a_claim_stuck_in_sending_is_resent_after_the_lease
  D5 claim race, threads + apps    -> test_concurrent_senders_deliver_each_message_once
  E8 --preload -w 3 on SQLite      -> tests/test_server.py::test_preloaded_workers_deliver_mail

Each test gets a copy of one migrated database and its own servers; the mail
settings are shortened (1 s retries and polls, MAIL_TIMEOUT=2). Slowest: E1 and E8
(10-15 s each per database on a busy 2-core machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.serverkit import PostgresDatabase
from tests.serverkit import Server
from tests.serverkit import clean_env
from tests.serverkit import flask_db_upgrade
from tests.serverkit import postgres_database
from tests.smtp import Recorder
from tests.smtp import SMTPServer

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PASSWORD = "Str0ng-passphrase"


# -- what a client sends and sees ------------------------------------------------------

def _payloads(name: str) -> dict[str, tuple[str, dict]]:
    email = f"{name}@example.com"
    return {
        "drf": ("/api/register/", {"username": name, "email": email, "password": PASSWORD}),
        "envelope": ("/api/v1/user/register",
                     {"username": name, "email_address": email, "password": PASSWORD}),
        "laravel": ("/api/users/register", {"first_name": "Ann", "last_name": "Lee",
                                            "email": email, "postal_code": "5673RE",
                                            "password": PASSWORD}),
        "jsonapi": ("/api/users/registration", {"email": email, "password": PASSWORD,
                                                "password_confirmation": PASSWORD}),
        "jwt": ("/api/sign-up/", {"username": name, "email": email, "password": PASSWORD}),
    }


PROFILES = list(_payloads("x"))


def shape(value):
    """The JSON's structure with every leaf replaced by its type name."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


def register(base: str, name: str, profile: str = "drf") -> dict:
    """One sign-up; what the client saw, with the wall-clock latency."""
    path, body = _payloads(name)[profile]
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, headers, raw = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, exc.headers, exc.read()
    latency = time.perf_counter() - started
    return {"profile": profile, "status": status, "latency": latency, "body": raw[:300],
            "seen": (status, headers["Content-Type"], headers.get("Cache-Control"),
                     sorted(h for h in headers if h not in ("Date", "Content-Length")),
                     shape(json.loads(raw)))}


def register_many(bases: list[str], prefix: str, count: int, threads: int = 4) -> list[dict]:
    """``count`` sign-ups spread over the five profiles (and the servers) by a few threads."""
    results: list = [None] * count

    def work(start):
        for i in range(start, count, threads):
            results[i] = register(bases[i % len(bases)], f"{prefix}{i}", PROFILES[i % 5])

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(120)
    assert all(r is not None for r in results), "a sign-up hung"
    bad = [r for r in results if r["status"] != 201]
    assert not bad, bad[:3]
    return results


def median_ms(results) -> float:
    return statistics.median(r["latency"] for r in results) * 1000


def shapes(results) -> dict[str, set]:
    seen: dict[str, set] = {}
    for r in results:
        seen.setdefault(r["profile"], set()).add(json.dumps(r["seen"]))
    return seen


# -- the SMTP side ---------------------------------------------------------------------

class Sink(Recorder):
    """Records every DATA attempt's Message-ID; scripted replies per recipient."""

    def __init__(self):
        super().__init__()
        self.attempts: list[tuple[str, str]] = []  # (recipient, Message-ID)
        self.refuse: dict[str, str] = {}  # recipient -> RCPT reply, every time
        self.replies: dict[str, list[str]] = {}  # recipient -> DATA replies, one per try
        self.delay = 0.0  # seconds before each DATA reply (a slow server)
        self.on_data = None  # called with the recipient after recording, before replying

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        rcpt = envelope.rcpt_tos[0]
        msgid = next((line.split(b":", 1)[1].strip().decode()
                      for line in envelope.content.splitlines()
                      if line.lower().startswith(b"message-id:")), "")
        with self.lock:
            self.attempts.append((rcpt, msgid))
        if self.delay:
            await asyncio.sleep(self.delay)
        scripted = self.replies.get(rcpt)
        if scripted:
            return scripted.pop(0)
        reply = await super().handle_DATA(server, session, envelope)
        if self.on_data is not None:
            self.on_data(rcpt)
        return reply


def message_ids(sink: SMTPServer) -> list[str]:
    return [m["Message-ID"] for m in sink.messages]


class Blackhole:
    """A TCP port that accepts connections (kernel backlog) and never says a word."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)

    def close(self):
        self.sock.close()


# -- the server ------------------------------------------------------------------------

def _upgrade(url: str) -> None:
    """``flask db upgrade``, as the contract runs it."""
    flask_db_upgrade(clean_env(REGAPP_CONFIG="development", DATABASE_URL=url))


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """``migrated(backend)``: a database built by ``flask db upgrade``, once per backend
    for this module; each test starts from a copy of it (saves seconds per test)."""
    made: dict[str, str] = {}
    with contextlib.ExitStack() as stack:

        def migrated(backend: str) -> str:
            if backend not in made:
                if backend == "sqlite":
                    made[backend] = str(tmp_path_factory.mktemp("tmpl") / "template.sqlite")
                    _upgrade(f"sqlite:///{made[backend]}")
                else:
                    template = PostgresDatabase("regapp_e_tmpl")
                    _upgrade(stack.enter_context(template))
                    made[backend] = template.name
            return made[backend]

        yield migrated


@pytest.fixture
def database_url(backend, migrated, tmp_path):
    """This test's own migrated database: a temp SQLite file, or a new PostgreSQL database."""
    template = migrated(backend)
    if backend == "sqlite":
        path = tmp_path / "e.sqlite"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    with postgres_database("regapp_e", template=template) as url:
        yield url


@pytest.fixture
def launch(database_url, tmp_path):
    """``launch(smtp_port, *gunicorn_args, **env)``: start a server; always killed after."""
    servers: list[Server] = []

    def launch(smtp_port: int, *args: str, **env_overrides) -> Server:
        server = Server(database_url, mail_port=smtp_port, log_dir=tmp_path, workers=None,
                        args=args, upgrade=False, env={**E_ENV, **env_overrides})
        servers.append(server)
        return server.start()

    try:
        yield launch
    finally:
        for server in servers:
            server.stop(signal.SIGKILL)


# The contract's variables (serverkit's, with quick retries) plus cheap hashing: latency
# of mail, not of argon2, is what these tests measure.
E_ENV = {
    "FRONTEND_URL": "http://127.0.0.1:5000",
    "MAIL_MAX_ATTEMPTS": "1000",  # SMTP stays down for many 1-second retries
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_COST": "1024",
}


def outbox(database_url: str) -> list[tuple]:
    """``(to_addr, status, attempts, message_id)`` of every outbox row, by id."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(
                "SELECT to_addr, status, attempts, message_id FROM outbox_messages ORDER BY id"))]
    finally:
        engine.dispose()


def column(database_url: str, name: str) -> list:
    """One column of every outbox row, by id."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(
                f"SELECT {name} FROM outbox_messages ORDER BY id")).scalars())
    finally:
        engine.dispose()


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def all_sent(database_url: str) -> list[tuple] | None:
    rows = outbox(database_url)
    return rows if rows and all(s == "sent" for _, s, _, _ in rows) else None


def assert_each_once(sink: SMTPServer, database_url: str, duplicates: tuple = (),
                     settle: float = 1.3) -> list:
    """Every outbox row is sent and arrived exactly once with its own Message-ID,
    except the Message-IDs in ``duplicates`` (E4's window), which arrived twice."""
    rows = wait_until(lambda: all_sent(database_url), 20, "every row sent")
    expected = len(rows) + len(duplicates)
    wait_until(lambda: len(sink.messages) >= expected, 10, f"{expected} messages")
    time.sleep(settle)  # one more dispatcher pass everywhere: nothing is sent twice
    ids = message_ids(sink)
    for mid in duplicates:
        ids.remove(mid)
    assert len(ids) == len(rows), Counter(ids).most_common(3)
    assert sorted(ids) == sorted(mid for *_, mid in rows)
    return rows


@pytest.fixture
def sink():
    server = SMTPServer()
    server.recorder = Sink()
    yield server
    server.stop()


# -- E1 SMTP down ----------------------------------------------------------------------

# Slowest scenario (about a third of this file's time): 255 sign-ups over HTTP.
def test_e1_smtp_down_signups_are_fast_and_identical_then_delivered_once(
        launch, sink, database_url):
    sink.start()
    server = launch(sink.port)
    register_many([server.base], "warm", 5)  # each worker's first request imports things
    up = register_many([server.base], "up", 50)
    wait_until(lambda: len(sink.messages) >= 55, 15, "the SMTP-up mail")

    sink.stop()
    down = register_many([server.base], "down", 200)
    # Same latency, same answer: an SMTP outage is invisible to (and unguessable by) clients.
    assert median_ms(down) < 3 * median_ms(up) + 50, (median_ms(down), median_ms(up))
    assert shapes(down) == shapes(up)
    assert len(shapes(up)) == 5 and all(len(s) == 1 for s in shapes(up).values())
    # The dispatchers find SMTP down and back off; the mail stays queued.
    wait_until(lambda: any(n for _, _, n, _ in outbox(database_url)[55:]), 5,
               "a failed attempt")
    assert {s for _, s, _, _ in outbox(database_url)[55:]} <= {"pending", "sending"}

    started = time.monotonic()
    sink.start()
    rows = assert_each_once(sink, database_url)
    assert time.monotonic() - started < 15
    assert len(rows) == 255


# -- E2 SMTP blackhole -----------------------------------------------------------------

def test_e2_blackholed_smtp_times_out_backs_off_then_delivers_once(launch, sink, database_url):
    hole = Blackhole(sink.port)
    try:
        # A 300 s MAIL_CLAIM_LEASE: rows must be given back, not expire.
        server = launch(sink.port, MAIL_TIMEOUT=2, MAIL_CLAIM_LEASE=300)
        register_many([server.base], "first", 10)
        time.sleep(0.5)  # both workers' senders now wait on the silent port
        signups = register_many([server.base], "hole", 20, threads=2)
        latencies = sorted(r["latency"] for r in signups)
        # Nothing a sign-up needs (the database) is held while a sender waits on SMTP.
        assert statistics.median(latencies) < 0.5 and latencies[-1] < 3, latencies
        # Each sender waits MAIL_TIMEOUT for a greeting that never comes, gives the
        # rows back (attempts counted) and backs off; over and over, never stuck.
        wait_until(lambda: all(n >= 1 for _, _, n, _ in outbox(database_url)), 10,
                   "every row tried")
        assert all(e.endswith("timed out") for e in column(database_url, "last_error"))
    finally:
        hole.close()
    sink.start()
    assert_each_once(sink, database_url)
    assert "WORKER TIMEOUT" not in server.log()


# -- E3 reply classes ------------------------------------------------------------------

def test_e3_4yz_retried_5yz_parked_and_listed_others_delivered(launch, sink, database_url):
    rec = sink.recorder
    rec.replies["t421@example.com"] = ["421 4.3.2 closing, try later"] * 2
    rec.replies["t451@example.com"] = ["451 4.3.0 try later"] * 2
    rec.replies["p554@example.com"] = ["554 5.6.0 rejected"] * 10
    rec.refuse["p550@example.com"] = "550 5.1.1 no such user"
    sink.start()
    server = launch(sink.port, MAIL_MAX_PERMANENT_ATTEMPTS=2)
    names = ["t421", "p550", "ok1", "t451", "p554", "ok2"]
    for i, name in enumerate(names):
        assert register(server.base, name, PROFILES[i % 5])["status"] == 201

    def settled():
        rows = {to: (s, n) for to, s, n, _ in outbox(database_url)}
        return all(s in ("sent", "failed") for s, _ in rows.values()) and rows
    rows = wait_until(settled, 15, "every message sent or parked")
    # attempts = tries made, the accepted one included (as the delivery log says).
    assert rows == {"t421@example.com": ("sent", 3), "p550@example.com": ("failed", 2),
                    "ok1@example.com": ("sent", 1), "t451@example.com": ("sent", 3),
                    "p554@example.com": ("failed", 2), "ok2@example.com": ("sent", 1)}
    time.sleep(1.3)  # parked means parked: no further attempts
    tried = Counter(rcpt for rcpt, _ in rec.attempts)
    assert tried == {"t421@example.com": 3, "t451@example.com": 3, "p554@example.com": 2,
                     "ok1@example.com": 1, "ok2@example.com": 1}
    for rcpt in ("t421@example.com", "t451@example.com"):  # one Message-ID across retries
        assert len({mid for r, mid in rec.attempts if r == rcpt}) == 1
    assert sorted(m["To"] for m in sink.messages) == [
        "ok1@example.com", "ok2@example.com", "t421@example.com", "t451@example.com"]

    listed = subprocess.run([BIN / "flask", "--app", "regapp", "mail", "list", "--status",
                             "failed", "--no-header"], cwd=ROOT, env=server.env,
                            capture_output=True, text=True, timeout=60,
                            check=True).stdout.splitlines()
    # id, status, attempts, to, ..., last error: the reply code, for the operator
    assert [(f[1], f[3], f[3][1:4] in f[-1]) for f in (line.split("\t") for line in listed)] == [
        ("failed", "p550@example.com", True), ("failed", "p554@example.com", True)]


# -- E4 crash between the SMTP server's 250 and the "sent" commit ----------------------

def test_e4_crash_after_smtp_accepted_resends_once_with_the_same_message_id(
        launch, sink, database_url):
    server = launch(sink.port, MAIL_CLAIM_LEASE=3)  # SMTP down: the mail waits
    for i, profile in enumerate(PROFILES[:3]):
        assert register(server.base, f"crash{i}", profile)["status"] == 201
    crashed = []

    def crash(rcpt):
        # The message is on the SMTP server; the sender dies before it hears the 250.
        if not crashed:
            crashed.append(sink.messages[-1]["Message-ID"])
            os.killpg(server.proc.pid, signal.SIGKILL)
    sink.recorder.on_data = crash
    sink.start()
    wait_until(lambda: crashed, 5, "the first delivery")
    server.proc.wait(5)
    time.sleep(0.2)  # a DATA the other worker had under way is recorded too
    states = {mid: s for _, s, _, mid in outbox(database_url)}
    # On the SMTP server, and not recorded as sent: the window E4 is about.
    unrecorded = tuple(mid for mid in message_ids(sink) if states[mid] == "sending")
    assert crashed[0] in unrecorded and len(unrecorded) <= 2  # one per worker at most

    server.start()  # same database; nobody knows whether the claimed mail went out
    # The claims' lease expires; that mail goes again, same Message-ID, once more only.
    rows = assert_each_once(sink, database_url, duplicates=unrecorded)
    assert len(rows) == 3


def test_e4_worker_killed_under_load_its_claims_go_out_within_15_s(launch, sink, database_url):
    """``kill -9`` of a gunicorn worker whose dispatcher holds claims mid-batch: a live
    dispatcher on this host takes them over at once. The lease is 300 s here, so only
    that path delivers in time; each is re-sent at most once, with the same Message-ID."""
    sink.recorder.delay = 0.05  # a slow server: batches are in flight when the kill comes
    sink.start()
    server = launch(sink.port, MAIL_CLAIM_LEASE=300, MAIL_POLL_INTERVAL=5)
    accepted: list[str] = []
    stop = threading.Event()

    def load(first):
        for i in range(first, 10_000, 4):
            if stop.is_set():
                return
            try:
                if register(server.base, f"kill{i}", PROFILES[i % 5])["status"] == 201:
                    accepted.append(f"kill{i}@example.com")
            except (OSError, ValueError, http.client.HTTPException):
                pass  # a request the killed worker had: no answer, or one cut off mid-body
    loaders = [threading.Thread(target=load, args=(t,)) for t in range(4)]
    for thread in loaders:
        thread.start()
    try:
        def holder():
            found = sa_rows(database_url, "SELECT claimed_by, message_id FROM outbox_messages "
                                          "WHERE status = 'sending' AND claimed_by IS NOT NULL")
            return found if len(found) >= 3 else None
        claims = wait_until(holder, 30, "a dispatcher holding claims")
        victim = claims[0][0]
        os.kill(int(victim.rpartition(":")[2]), signal.SIGKILL)
        killed_at = time.monotonic()
        held = {mid for owner, mid in claims if owner == victim}
        time.sleep(2)  # load goes on while the master replaces the worker
    finally:
        stop.set()
        for thread in loaders:
            thread.join(30)

    # Everything the dead dispatcher held arrives within 15 s of the kill.
    wait_until(lambda: held <= set(message_ids(sink)), 15 - (time.monotonic() - killed_at),
               "the dead worker's claimed mail")
    assert time.monotonic() - killed_at < 15
    # Every accepted sign-up's mail arrives; only the dead worker's claims may arrive
    # twice (sent before the crash, not yet recorded as sent), never three times.
    rows = wait_until(lambda: all_sent(database_url), 30, "every row sent")
    arrived = Counter(message_ids(sink))
    assert max(arrived.values()) <= 2
    assert {mid for mid, n in arrived.items() if n == 2} <= held
    assert set(accepted) <= {m["To"] for m in sink.messages}
    assert sorted(arrived) == sorted(mid for *_, mid in rows)
    assert len(accepted) >= 10


def sa_rows(database_url: str, sql: str) -> list[tuple]:
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


# -- D5 many senders; E8 gunicorn lifecycle --------------------------------------------

def test_d5_two_instances_of_two_workers_deliver_each_message_once(launch, sink, database_url):
    # Four dispatchers (two per instance) on one database. Mail piles up while SMTP
    # is down, so when it returns all four race for the same 100 due rows.
    servers = [launch(sink.port, "-w", "2"), launch(sink.port, "-w", "2")]
    register_many([server.base for server in servers], "d5-", 100)
    sink.start()
    rows = assert_each_once(sink, database_url)
    assert len(rows) == 100


def test_e8_preload_recycling_sighup_sigterm_lose_and_repeat_nothing(launch, sink, database_url):
    # --preload: the app (and a dispatcher) start in the master, before fork();
    # --max-requests: workers are replaced while they have mail to send.
    sink.start()
    server = launch(sink.port, "-w", "2", "--preload", "--max-requests", "10",
                    MAIL_CLAIM_LEASE=300)
    register_many([server.base], "cycle", 30)
    # (the last check below also catches any duplicate sent in this phase)
    assert len(assert_each_once(sink, database_url, settle=0)) == 30
    assert server.log().count("Autorestarting worker") >= 2

    # SIGHUP, then SIGTERM, while a slow SMTP server takes a backlog: graceful stops
    # give back their claims (MAIL_CLAIM_LEASE is 300 s here), so none waits for a lease.
    sink.stop()
    register_many([server.base], "term", 20)
    sink.recorder.delay = 0.5
    sink.start()
    wait_until(lambda: len(sink.recorder.attempts) >= 32, 10, "a backlog being sent")
    server.proc.send_signal(signal.SIGHUP)  # new workers; the old ones stop mid-backlog
    wait_until(lambda: len(sink.recorder.attempts) >= 35, 15, "the new workers sending")
    server.stop(signal.SIGTERM, timeout=25, check=True)
    states = Counter(s for _, s, _, _ in outbox(database_url))
    assert states["sending"] == 0 and states["pending"] > 0, states
    assert "Handling signal: hup" in server.log()

    sink.recorder.delay = 0
    server.start()
    assert len(assert_each_once(sink, database_url)) == 50
