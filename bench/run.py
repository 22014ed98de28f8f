"""`make bench`: regapp under gunicorn (the committed gunicorn.conf.py) driven by wrk.

Every figure is a ratio of two measurements taken in the same run on the same
machine. Parts (select with BENCH_PARTS=floor,cheap,confirm,slowsmtp,outbox,scale;
default: all):

  floor     sign-ups/s at saturation, default argon2, vs the hash floor
            min(cores, workers x threads) / one hash's time measured now; only
            sign-ups whose mail reached the sink by the end of the run + 10 s count;
            also shown (reference): hashes/s with that many threads hashing at once
  cheap     sign-ups/s with argon2 made cheap (ARGON2_TIME_COST=1, MEMORY=8 KiB)
            vs a bare Flask JSON POST (bench/bare_app.py) under the same gunicorn
  confirm   confirm by link (GET /api/confirm-email/) and by code
            (POST /api/users/validation) vs the bare Flask GET
  slowsmtp  sign-up p50 with an SMTP sink taking 1 s per message vs an instant one
            (also shown: SMTP refused and blackholed, as register_latency.py did)
  outbox    outbox delivery msgs/s to the sink (rows queued while SMTP is away)
  scale     p50 sign-up and confirm with BENCH_SCALE_USERS existing users vs 1,000
            (both servers up at once, runs interleaved), and EXPLAIN of every
            statement a sign-up, a confirm and a delivery run
  peak RSS per worker (VmHWM) is read after every regapp run.

Environment: BENCH_DATABASE_URL (PostgreSQL admin URL; a database is created and
dropped per server; SQLite files otherwise), BENCH_QUICK=1 (short runs for
development), BENCH_DURATION (s, 15), BENCH_REPEAT (3; runs are interleaved, the
table shows medians and min-max), BENCH_CONNECTIONS (4), BENCH_THREADS (wrk, 2),
BENCH_SCALE_USERS (1000000), BENCH_JSON (bench/results.json). Loopback only.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if os.environ.get("BENCH_DATABASE_URL"):
    os.environ["TEST_DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]

import sqlalchemy as sa  # noqa: E402

from tests.serverkit import PostgresDatabase  # noqa: E402
from tests.serverkit import Server  # noqa: E402
from tests.serverkit import flask_db_upgrade  # noqa: E402
from tests.smtp import free_port  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
DURATION = int(os.environ.get("BENCH_DURATION", "3" if QUICK else "15"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "1" if QUICK else "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "4"))
WRK_THREADS = int(os.environ.get("BENCH_THREADS", "2"))
SCALE_USERS = int(os.environ.get("BENCH_SCALE_USERS", "20000" if QUICK else "1000000"))
# Pending users per confirm kind and repeat (more than a run can confirm).
CONFIRM_SUPPLY = int(os.environ.get("BENCH_CONFIRM_SUPPLY", "5000" if QUICK else "30000"))
GRACE = 3 if QUICK else 10  # mail received by the end of the run plus this many seconds
PARTS = [p for p in os.environ.get(
    "BENCH_PARTS", "floor,cheap,confirm,slowsmtp,outbox,scale").split(",") if p]
JSON_PATH = Path(os.environ.get("BENCH_JSON", ROOT / "bench" / "results.json"))
PG = bool(os.environ.get("BENCH_DATABASE_URL"))
CHEAP = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_COST": "8"}
PASSWORD = "Str0ng-passphrase"
SECRET = "bench-secret-key-0123456789abcdef0123456789"


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


# -- the pieces: SMTP sink, databases, servers, wrk -----------------------------------

class Sink:
    """bench/smtp_sink.py in its own process, driven over its stdin."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "smtp_sink.py"),
                                      str(self.port)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def ask(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def count(self, prefix: str) -> int:
        return int(self.ask(f"count {prefix}"))

    def close(self) -> None:
        self.ask("quit")
        self.proc.wait(5)


class Databases:
    """A fresh database per server: an SQLite file, or a PostgreSQL database."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.pg: list[PostgresDatabase] = []
        self.n = 0

    def new(self) -> str:
        self.n += 1
        if PG:
            database = PostgresDatabase("regapp_bench")
            self.pg.append(database)
            return database.create()
        return f"sqlite:///{self.workdir / f'bench{self.n}.sqlite'}"

    def drop_all(self) -> None:
        for database in self.pg:
            database.drop()


def regapp_server(url: str, sink: Sink, workdir: Path, env: dict | None = None) -> Server:
    # Production's gunicorn.conf.py (workers, threads, access log); the configuration's
    # mail timings; no rate limits (one client address signs up thousands).
    return Server(url, mail_port=sink.port, log_dir=workdir, workers=None, quick_mail=False,
                  env={"SECRET_KEY": SECRET, **(env or {})}).start(timeout=60)


def bare_server(sink: Sink, workdir: Path) -> Server:
    return Server("sqlite://", mail_port=sink.port, log_dir=workdir, workers=None,
                  upgrade=False, app="bench.bare_app:app").start(timeout=60)


LOADS: list[float] = []  # the 1-minute load average at the end of every wrk run
SHARES: list[float] = []  # per wrk run: the busiest worker's share of the workers' CPU


def wrk(url: str, script: str, *args: str, duration: int = DURATION,
        connections: int = CONNECTIONS, server: Server | None = None) -> dict:
    """One wrk run; the numbers its Lua ``done`` printed. With ``server``, also how the
    workers shared the work: ``busiest_worker_share`` of their CPU time (0.5 with two
    workers evenly loaded, 1.0 when one did everything)."""
    before = worker_cpu(server) if server else {}
    cmd = ["wrk", "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{duration}s",
           "--timeout", "30s", "-s", str(ROOT / "bench" / script), url, "--", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    found = re.search(r"^WRKJSON (.*)$", done.stdout, re.M)
    if done.returncode or not found:
        raise SystemExit(f"wrk failed: {done.stdout}\n{done.stderr}")
    result = json.loads(found.group(1))
    # Other processes on the machine take the cores too: each run records the load.
    result["loadavg_1m"] = os.getloadavg()[0]
    LOADS.append(result["loadavg_1m"])
    result["rate"] = result["requests"] / (result["duration_us"] / 1e6)
    if server:
        after = worker_cpu(server)
        spent = [after[pid] - before.get(pid, 0.0) for pid in after]
        if sum(spent) > 0:
            result["busiest_worker_share"] = max(spent) / sum(spent)
            SHARES.append(result["busiest_worker_share"])
    result["ok_rate"] = (result["requests"] - result["bad_status"]) / (result["duration_us"] / 1e6)
    return result


def signups(server: Server, prefix: str, duration: int = DURATION) -> dict:
    return wrk(server.url("/api/sign-up/"), "signup.lua", prefix, "/api/sign-up/",
               duration=duration, server=server)


def worker_rss_kib(server: Server) -> list[int]:
    """Peak resident set (VmHWM) of each gunicorn worker, in KiB."""
    pid = server.proc.pid
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    peaks = []
    for child in children:
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        if found:
            peaks.append(int(found.group(1)))
    return peaks


def worker_cpu(server: Server) -> dict[int, float]:
    """User + system CPU seconds of each gunicorn worker so far (all its threads), by pid."""
    pid = server.proc.pid
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return {}
    spent = {}
    for child in children:
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        spent[int(child)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return spent


def worker_cpu_seconds(server: Server) -> float:
    """User + system CPU time of the gunicorn workers so far (all their threads)."""
    return sum(worker_cpu(server).values())


def wait_for_mail(sink: Sink, prefix: str, expected: int, grace: float) -> int:
    """Mail received for ``prefix`` once ``expected`` arrived or ``grace`` s passed."""
    deadline = time.monotonic() + grace
    while True:
        got = sink.count(prefix)
        if got >= expected or time.monotonic() >= deadline:
            return got
        time.sleep(0.2)


def gunicorn_settings() -> tuple[int, int]:
    """workers, threads as gunicorn.conf.py sets them (GUNICORN_* overrides)."""
    return int(os.environ.get("GUNICORN_WORKERS", "2")), int(
        os.environ.get("GUNICORN_THREADS", "4"))


def cores() -> int:
    return len(os.sched_getaffinity(0))


def hash_seconds(samples: int = 15) -> float:
    """Median time of one argon2 hash at the configured (default) cost, in this process."""
    from argon2 import PasswordHasher  # noqa: PLC0415

    from config import Config  # noqa: PLC0415

    hasher = PasswordHasher(time_cost=Config.ARGON2_TIME_COST,
                            memory_cost=Config.ARGON2_MEMORY_COST,
                            parallelism=Config.ARGON2_PARALLELISM)
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        hasher.hash(PASSWORD)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def parallel_hashes_per_s(threads: int, total: int = 48) -> float:
    """Hashes/s at the configured cost with ``threads`` threads doing nothing else
    (argon2-cffi releases the GIL): what the machine's cores and memory bandwidth
    allow when every hash runs beside others, as the workers' do under load."""
    import threading  # noqa: PLC0415

    from argon2 import PasswordHasher  # noqa: PLC0415

    from config import Config  # noqa: PLC0415

    hasher = PasswordHasher(time_cost=Config.ARGON2_TIME_COST,
                            memory_cost=Config.ARGON2_MEMORY_COST,
                            parallelism=Config.ARGON2_PARALLELISM)
    left = iter(range(total))
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                if next(left, None) is None:
                    return
            hasher.hash(PASSWORD)

    started = time.perf_counter()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return total / (time.perf_counter() - started)


# -- the parts ----------------------------------------------------------------------

class Bench:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.dbs = Databases(workdir)
        self.sink = Sink()
        self.results: dict = {"rss_kib": []}
        self.seq = 0

    def prefix(self, tag: str) -> str:
        self.seq += 1
        return f"{tag}{self.seq}x"

    def note_rss(self, server: Server) -> None:
        self.results["rss_kib"].extend(worker_rss_kib(server))

    def counted_signups(self, server: Server, tag: str, duration: int = DURATION) -> dict:
        """A sign-up run; ``counted_rate`` counts only those whose mail arrived in time."""
        prefix = self.prefix(tag)
        run = signups(server, prefix, duration)
        accepted = run["requests"] - run["bad_status"]
        mailed = wait_for_mail(self.sink, prefix, accepted, GRACE)
        run.update(prefix=prefix, accepted=accepted, mailed=mailed,
                   counted_rate=min(accepted, mailed) / (run["duration_us"] / 1e6))
        return run

    def part_floor(self) -> None:
        workers, threads = gunicorn_settings()
        server = regapp_server(self.dbs.new(), self.sink, self.workdir)
        runs, hashes, parallel = [], [], []
        try:
            self.counted_signups(server, "warm", duration=2)
            for _ in range(REPEAT):
                hashes.append(hash_seconds())
                parallel.append(parallel_hashes_per_s(min(cores(), workers * threads)))
                runs.append(self.counted_signups(server, "floor"))
            self.note_rss(server)
        finally:
            server.stop(timeout=30)
        hash_s = statistics.median(hashes)
        floor = min(cores(), workers * threads) / hash_s
        self.results["floor"] = {
            "hash_ms": hash_s * 1000, "cores": cores(), "workers": workers, "threads": threads,
            "floor_per_s": floor, "runs": runs,
            "ratios": [r["counted_rate"] / floor for r in runs],
            # Reference, not the figure: hashing alone in that many threads at once.
            "parallel_hashes_per_s": parallel,
            "parallel_ratios": [r["counted_rate"] / p for r, p in zip(runs, parallel, strict=True)]}

    def part_cheap(self) -> None:
        ratios, regapp_rates, bare_rates = [], [], []
        server = regapp_server(self.dbs.new(), self.sink, self.workdir, CHEAP)
        bare = bare_server(self.sink, self.workdir)
        try:
            self.counted_signups(server, "warm", duration=2)
            wrk(bare.url("/echo"), "signup.lua", "bare", "/echo", duration=2)
            for _ in range(REPEAT):  # interleaved
                run = self.counted_signups(server, "cheap")
                bare_run = wrk(bare.url("/echo"), "signup.lua", "bare", "/echo", server=bare)
                regapp_rates.append(run["counted_rate"])
                bare_rates.append(bare_run["ok_rate"])
                ratios.append(run["counted_rate"] / bare_run["ok_rate"])
            self.note_rss(server)
        finally:
            server.stop(timeout=30)
            bare.stop()
        self.results["cheap"] = {"signups_per_s": regapp_rates, "bare_post_per_s": bare_rates,
                                 "ratios": ratios}

    def pending(self, url: str, n: int) -> tuple[Path, Path, int]:
        """``n`` pending users confirming by link and ``n`` by code: replay files."""
        prefix = self.prefix("pend")
        links, codes = self.workdir / f"{prefix}-links.txt", self.workdir / f"{prefix}-codes.txt"
        bulk_users(url, 2 * n, prefix=prefix, pending=(links, codes))
        return links, codes, n

    def replay(self, server: Server, path: Path, lines: int, duration: int) -> dict:
        run = wrk(server.url("/"), "replay.lua", str(path), str(WRK_THREADS),
                  duration=duration, server=server)
        run["reused_lines"] = run["requests"] > lines
        return run

    def part_confirm(self) -> None:
        url = self.dbs.new()
        server = regapp_server(url, self.sink, self.workdir, CHEAP)
        bare = bare_server(self.sink, self.workdir)
        out = {"link_per_s": [], "code_per_s": [], "bare_get_per_s": [], "link_ratios": [],
               "code_ratios": [], "runs": []}
        duration = max(2, DURATION // 3)
        try:
            for _ in range(REPEAT):
                links, codes, n = self.pending(url, CONFIRM_SUPPLY)
                link = self.replay(server, links, n, duration)
                code = self.replay(server, codes, n, duration)
                ping = wrk(bare.url("/ping"), "replay.lua", str(self._ping_file()),
                           str(WRK_THREADS), duration=duration, server=bare)
                out["runs"].append({"link": link, "code": code, "bare": ping})
                out["link_per_s"].append(link["ok_rate"])
                out["code_per_s"].append(code["ok_rate"])
                out["bare_get_per_s"].append(ping["ok_rate"])
                out["link_ratios"].append(link["ok_rate"] / ping["ok_rate"])
                out["code_ratios"].append(code["ok_rate"] / ping["ok_rate"])
            self.note_rss(server)
        finally:
            server.stop(timeout=30)
            bare.stop()
        if any(r[k]["reused_lines"] for r in out["runs"] for k in ("link", "code")):
            log("bench: confirm ran out of pending users; raise BENCH_CONFIRM_SUPPLY")
        self.results["confirm"] = out

    def _ping_file(self) -> Path:
        path = self.workdir / "ping.txt"
        path.write_text("GET\t/ping\n")
        return path

    def part_slowsmtp(self) -> None:
        """Sign-up p50 per SMTP state: instant, 1 s per message (the target), and, as
        register_latency.py did, refused (nothing listens) and blackholed (accepts,
        never answers)."""
        modes = ("instant", "slow", "down", "blackhole")
        out = {f"{mode}_p50_ms": [] for mode in modes}
        out["ratios"] = []
        for _ in range(REPEAT):
            p50 = {}
            for mode in modes:
                self.sink.ask(f"delay {1 if mode == 'slow' else 0}")
                with smtp_state(mode, self.sink) as port:
                    server = regapp_server(self.dbs.new(), self.sink, self.workdir,
                                           {"MAIL_PORT": str(port)})
                    try:
                        signups(server, self.prefix("warm"), duration=2)
                        p50[mode] = signups(server, self.prefix(mode))["p50_us"] / 1000
                        self.note_rss(server)
                    finally:
                        server.stop(timeout=30)
                        self.sink.ask("delay 0")
                out[f"{mode}_p50_ms"].append(p50[mode])
            out["ratios"].append(p50["slow"] / p50["instant"])
        self.results["slowsmtp"] = out

    def part_outbox(self) -> None:
        """Queue N messages (one INSERT transaction, from outside) into an idle server's
        database; time the sink's arrivals, and the workers' CPU time meanwhile."""
        n = 2000 if QUICK else 10000
        rates, cpu_ms = [], []
        for _ in range(REPEAT):
            url = self.dbs.new()
            server = regapp_server(url, self.sink, self.workdir)
            try:
                time.sleep(1)  # workers started, dispatchers asleep on an empty queue
                prefix = self.prefix("ob")
                cpu_before = worker_cpu_seconds(server)
                queue_messages(url, prefix, n)  # found at the next poll (MAIL_POLL_INTERVAL)
                got = wait_for_mail(self.sink, prefix, n, 120)
                cpu = worker_cpu_seconds(server) - cpu_before
                first, last, count = self.sink.ask(f"span {prefix}").split()
                self.note_rss(server)
            finally:
                server.stop(timeout=30)
            if got < n:
                raise SystemExit(f"outbox: only {got} of {n} messages arrived")
            rates.append((int(count) - 1) / (float(last) - float(first)))
            cpu_ms.append(cpu / n * 1000)
        # A dispatcher's share of its worker at 100 sign-ups/s over the workers.
        workers, _ = gunicorn_settings()
        share = [ms / 1000 * 100 / workers for ms in cpu_ms]
        self.results["outbox"] = {"messages": n, "msgs_per_s": rates,
                                  "worker_cpu_ms_per_msg": cpu_ms,
                                  "share_of_worker_at_100_signups_per_s": share}

    def part_scale(self) -> None:
        """Both sizes served at once and measured in interleaved runs (small, large,
        small, ...), so a drift of the machine's speed during the part hits both."""
        sizes = (("small", 1000), ("large", SCALE_USERS))
        out, servers, urls = {}, {}, {}
        try:
            for label, users in sizes:
                url = urls[label] = self.dbs.new()
                env = {"DATABASE_URL": url, "REGAPP_CONFIG": "development"}
                flask_db_upgrade({**os.environ, **env})
                started = time.monotonic()
                bulk_users(url, users)
                out[label] = {"users": users, "load_s": time.monotonic() - started,
                              "signup_p50_ms": [], "link_p50_ms": [], "code_p50_ms": []}
                servers[label] = regapp_server(url, self.sink, self.workdir, CHEAP)
            duration = max(2, DURATION // 3)
            for _ in range(REPEAT):
                for label, _users in sizes:
                    out[label]["signup_p50_ms"].append(
                        signups(servers[label], self.prefix("sc"))["p50_us"] / 1000)
                pending = {label: self.pending(urls[label], CONFIRM_SUPPLY) for label, _ in sizes}
                for kind, index in (("link_p50_ms", 0), ("code_p50_ms", 1)):
                    for label, _users in sizes:
                        path, n = pending[label][index], pending[label][2]
                        out[label][kind].append(
                            self.replay(servers[label], path, n, duration)["p50_us"] / 1000)
            for server in servers.values():
                self.note_rss(server)
        finally:
            for server in servers.values():
                server.stop(timeout=30)
        out["explain"] = explain_hot_queries(urls["large"], self.sink)
        for key in ("signup_p50_ms", "link_p50_ms", "code_p50_ms"):
            out[key.replace("_ms", "_ratio")] = (statistics.median(out["large"][key])
                                                 / statistics.median(out["small"][key]))
        self.results["scale"] = out


@contextlib.contextmanager
def smtp_state(mode: str, sink: Sink):
    """The MAIL_PORT for ``mode``: the sink, a closed port, or a silent listener."""
    if mode in ("instant", "slow"):
        yield sink.port
        return
    if mode == "down":
        yield free_port()  # bound and released: connections are refused
        return
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(512)  # the kernel accepts; nobody ever says a word
    try:
        yield hole.getsockname()[1]
    finally:
        hole.close()


# -- data: bulk users, queued mail, EXPLAIN -------------------------------------------

def queue_messages(url: str, prefix: str, n: int) -> None:
    """``n`` pending outbox rows, inserted in one transaction (executemany)."""
    from regapp.models import OutboxMessage  # noqa: PLC0415
    from regapp.models import utcnow  # noqa: PLC0415

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    stamp = utcnow()
    rows = [{"to_addr": f"{prefix}{i}@example.com", "subject": "bench",
             "body_text": f"message {i}\n", "body_html": None,
             "message_id": f"<bench.{prefix}.{i}@localhost>", "status": "pending",
             "attempts": 0, "next_attempt_at": stamp, "created_at": stamp, "kind": "confirm"}
            for i in range(n)]
    with engine.begin() as conn:
        conn.execute(sa.insert(OutboxMessage.__table__), rows)
    engine.dispose()


def bulk_users(url: str, n: int, prefix: str = "filler",
               pending: tuple[Path, Path] | None = None) -> None:
    """``n`` confirmed users with one shared hash: COPY on PostgreSQL, executemany on
    SQLite. With ``pending`` (two paths) they are unconfirmed instead, each with a
    confirmation code, and the paths get replay lines: half confirm by link (a token
    signed with the bench's SECRET_KEY, as the server's mail would carry), half by code."""
    from regapp import create_app  # noqa: PLC0415
    from regapp.core import identity  # noqa: PLC0415
    from regapp.core import passwords  # noqa: PLC0415
    from regapp.models import User  # noqa: PLC0415
    from regapp.models import utcnow  # noqa: PLC0415

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": SECRET,
                      "OUTBOX_AUTOSTART": False, "RATELIMIT_ENABLED": False, **{
                          k: int(v) for k, v in CHEAP.items()}})
    with app.app_context():
        pw_hash = passwords.hash_password(PASSWORD)
        stamp = utcnow()
        columns = ["username", "username_key", "email", "email_key", "password_hash",
                   "account_type", "is_email_confirmed", "confirmed_at", "code_failures",
                   "created_at", "profile", "credential_version", "contested",
                   "reset_counter", "reset_code_failures"]
        chunk = 20000
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        for start in range(0, n, chunk):
            rows = []
            for i in range(start, min(n, start + chunk)):
                name, email = f"{prefix}{i}", f"{prefix}{i}@example.org"
                rows.append((name, identity.username_key(name), email,
                             identity.email_key(email), pw_hash, "customer", not pending,
                             None if pending else stamp, 0, stamp, "jwt", 0, False, 0, 0))
            if PG:
                raw = engine.raw_connection()
                try:
                    with raw.cursor() as cur, cur.copy(
                            f"COPY users ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                    raw.commit()
                finally:
                    raw.close()
            else:
                with engine.begin() as conn:
                    conn.execute(sa.insert(User.__table__),
                                 [dict(zip(columns, row, strict=True)) for row in rows])
        if pending:
            _confirmations(engine, prefix, pending)
        if PG:
            with engine.connect() as conn:
                conn.execute(sa.text("ANALYZE users"))
                conn.commit()
        engine.dispose()


def _confirmations(engine, prefix: str, paths: tuple[Path, Path]) -> None:
    """A code row for each pending ``prefix`` user; replay lines for link and code."""
    from types import SimpleNamespace  # noqa: PLC0415

    from regapp.core import tokens  # noqa: PLC0415
    from regapp.models import EmailConfirmation  # noqa: PLC0415
    from regapp.models import User  # noqa: PLC0415
    from regapp.models import utcnow  # noqa: PLC0415

    with engine.connect() as conn:
        users = conn.execute(sa.select(User.id, User.email, User.email_key)
                             .where(User.username.startswith(prefix))
                             .order_by(User.id)).all()
    stamp = utcnow()
    expires = stamp + timedelta(days=1)
    rows, links, codes = [], [], []
    for i, (user_id, email, email_key) in enumerate(users):
        user = SimpleNamespace(id=user_id, email_key=email_key)
        code = tokens.new_code()
        rows.append({"user_id": user_id, "attempts": 0, "expires_at": expires,
                     "created_at": stamp,
                     "code_hash": tokens.hash_code(tokens.code_subject(user), code)})
        if i % 2:
            codes.append("POST\t/api/users/validation\t"
                         + json.dumps({"email": email, "token": code}))
        else:
            links.append("GET\t/api/confirm-email/?token_id="
                         + tokens.make_confirm_token(user))
    with engine.begin() as conn:
        conn.execute(sa.insert(EmailConfirmation.__table__), rows)
    paths[0].write_text("\n".join(links) + "\n")
    paths[1].write_text("\n".join(codes) + "\n")


def explain_hot_queries(url: str, sink: Sink) -> list[dict]:
    """Every statement of one sign-up, its confirm by link and by code, and one
    delivery pass, run in this process against ``url``; the plan of each."""
    from regapp import create_app  # noqa: PLC0415
    from regapp.core import delivery  # noqa: PLC0415
    from regapp.extensions import db  # noqa: PLC0415
    from regapp.models import OutboxMessage  # noqa: PLC0415

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": SECRET,
                      "OUTBOX_AUTOSTART": False, "RATELIMIT_ENABLED": False,
                      "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": sink.port,
                      **{k: int(v) for k, v in CHEAP.items()}})
    seen: dict[str, tuple] = {}

    recording = [True]  # off for the bench's own look at the outbox

    def record(conn, cursor, statement, parameters, context, executemany):
        if not recording[0]:
            return
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("SELECT", "UPDATE", "DELETE", "INSERT", "WITH") and statement not in seen:
            seen[statement] = parameters

    client = app.test_client()
    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", record)
        try:
            for i, how in enumerate(("link", "code")):
                name = f"explain{i}{int(time.time())}"
                r = client.post("/api/sign-up/", json={"username": name, "password": PASSWORD,
                                                       "email": f"{name}@example.com"})
                assert r.status_code == 201, r.text
                recording[0] = False
                body = db.session.scalars(sa.select(OutboxMessage.body_text).where(
                    OutboxMessage.to_addr == f"{name}@example.com")).one()
                token = re.search(r"token_id=([A-Za-z0-9_.\-]+)", body).group(1)
                code = re.search(r"^\s*([0-9]{6})\s*$", body, re.M).group(1)
                db.session.rollback()
                recording[0] = True
                if how == "link":
                    r = client.get(f"/api/confirm-email/?token_id={token}")
                else:
                    r = client.post("/api/users/validation",
                                    json={"email": f"{name}@example.com", "token": code})
                assert r.status_code < 300, r.text
            delivery.send_all_due()
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", record)
        plans = []
        with db.engine.connect() as conn:
            for statement, params in seen.items():
                upper = statement.lstrip().upper()
                if upper.startswith("INSERT") or (  # or rows.together's WITH of INSERTs
                        upper.startswith("WITH")
                        and not re.search(r"\b(SELECT|UPDATE|DELETE)\b", upper)):
                    plans.append({"sql": _short(statement), "plan": "insert", "index": True})
                    continue
                prefix = "EXPLAIN " if PG else "EXPLAIN QUERY PLAN "
                trans = conn.begin()
                try:
                    rows = conn.exec_driver_sql(prefix + statement, params).all()
                finally:
                    trans.rollback()
                plan = " | ".join(" ".join(str(c) for c in row) for row in rows)
                tables = r"(users|outbox_messages|email_confirmations)\b"
                full_scan = re.search((r"Seq Scan on " if PG else r"\bSCAN ") + tables
                                      + r"(?! USING)", plan) is not None
                plans.append({"sql": _short(statement), "plan": plan, "index": not full_scan})
        db.engine.dispose()
    return plans


def _proc_field(path: str, name: str) -> str | None:
    """The first ``name: value`` line of a /proc file (CPU model, memory)."""
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    return None


def _short(statement: str) -> str:
    return " ".join(statement.split())[:160]


# -- report ---------------------------------------------------------------------------

def spread(values: list[float]) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:.3g} ({min(values):.3g}-{max(values):.3g})"


def table(results: dict) -> str:
    rows = [("figure", "median (min-max)", "target")]
    if "floor" in results:
        f = results["floor"]
        rows.append((f"1. sign-ups/s / hash floor ({f['floor_per_s']:.0f}/s: "
                     f"min({f['cores']}, {f['workers']}x{f['threads']}) / {f['hash_ms']:.1f} ms)",
                     spread(f["ratios"]), ">= 0.85"))
        rows.append(("   counted sign-ups/s (mail received)",
                     spread([r["counted_rate"] for r in f["runs"]]), ""))
        rows.append(("   hashes/s, hashing alone in that many threads (reference)",
                     spread(f["parallel_hashes_per_s"]), ""))
        rows.append(("   sign-ups/s / that (reference)", spread(f["parallel_ratios"]), ""))
    if "cheap" in results:
        c = results["cheap"]
        rows.append(("2. cheap-hash sign-ups/s / bare Flask POST", spread(c["ratios"]), ">= 0.12"))
        rows.append(("   cheap-hash sign-ups/s", spread(c["signups_per_s"]), ""))
        rows.append(("   bare Flask POST/s", spread(c["bare_post_per_s"]), ""))
    if "confirm" in results:
        c = results["confirm"]
        rows.append(("3. confirm by link / bare Flask GET", spread(c["link_ratios"]), ">= 0.2"))
        rows.append(("   confirm by code / bare Flask GET", spread(c["code_ratios"]), ">= 0.2"))
        rows.append(("   link/s, code/s, bare GET/s", " / ".join(
            spread(c[k]) for k in ("link_per_s", "code_per_s", "bare_get_per_s")), ""))
    if "slowsmtp" in results:
        s = results["slowsmtp"]
        rows.append(("4. sign-up p50, SMTP 1 s/msg / instant", spread(s["ratios"]), "<= 1.10"))
        rows.append(("   p50 ms instant / slow / down / blackhole", " / ".join(
            spread(s[f"{m}_p50_ms"]) for m in ("instant", "slow", "down", "blackhole")), ""))
    if "outbox" in results:
        o = results["outbox"]
        rows.append(("5. outbox delivery msgs/s", spread(o["msgs_per_s"]), ">= 500"))
        rows.append(("   dispatcher CPU per message (ms)", spread(o["worker_cpu_ms_per_msg"]),
                     ""))
        rows.append(("   dispatcher share of a worker at 100 sign-ups/s",
                     spread(o["share_of_worker_at_100_signups_per_s"]), "<= 0.10"))
    if "scale" in results:
        s = results["scale"]
        users = s["large"]["users"]
        for key, name in (("signup_p50_ratio", "sign-up"), ("link_p50_ratio", "confirm link"),
                          ("code_p50_ratio", "confirm code")):
            rows.append((f"6. p50 {name}, {users:,} users / 1,000", f"{s[key]:.3g}", "<= 1.2"))
        unindexed = [p for p in s["explain"] if not p["index"]]
        rows.append(("   hot statements without an index",
                     f"{len(unindexed)} of {len(s['explain'])}", "0"))
    if LOADS:
        rows.append(("   1-min load average at the end of each wrk run", spread(LOADS),
                     f"{len(LOADS)} runs, {results['meta']['cores']} cores"))
    if SHARES:
        rows.append(("   busiest worker's share of the workers' CPU per wrk run",
                     spread(SHARES), "0.5: even"))
    if results["rss_kib"]:
        rows.append(("7. peak RSS per worker (MiB)",
                     f"{max(results['rss_kib']) / 1024:.1f} (max of "
                     f"{len(results['rss_kib'])} workers)", ""))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)).rstrip()
                     for row in rows)


def main() -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench does this)")
    workdir = Path(tempfile.mkdtemp(prefix="regapp-bench-"))
    bench = Bench(workdir)
    started = time.time()
    ok = False
    try:
        for part in PARTS:
            log(f"bench: {part} ...")
            getattr(bench, f"part_{part}")()
        ok = True
    finally:
        bench.sink.close()
        bench.dbs.drop_all()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"bench: logs kept in {workdir}")
    results = bench.results
    results["meta"] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started), "database": "postgresql" if PG else "sqlite",
        "cores": cores(), "machine": platform.platform(), "python": platform.python_version(),
        "quick": QUICK, "duration_s": DURATION, "repeat": REPEAT,
        "wrk": f"-t{WRK_THREADS} -c{CONNECTIONS}", "loadavg": os.getloadavg(),
        "wrk_loadavg_1m": LOADS, "busiest_worker_share": SHARES,
        "cpu": _proc_field("/proc/cpuinfo", "model name"),
        "memory": _proc_field("/proc/meminfo", "MemTotal")}
    JSON_PATH.write_text(json.dumps(results, indent=1, default=str))
    print(table(results))
    print(f"(JSON: {JSON_PATH})")


if __name__ == "__main__":
    main()
