"""Registration latency with SMTP up, down and blackholed: the mail path must not show.

Starts regapp as the contract says (``flask db upgrade``, ``gunicorn wsgi:app``,
gunicorn.conf.py's workers) on a database of its own, SQLite and, when
TEST_DATABASE_URL is set, PostgreSQL; signs up N users spread over the five
profiles with a few client threads per SMTP state, and prints medians, p90s and
the down/up and blackhole/up ratios. Only loopback traffic. Not part of the suite:

    .venv/bin/python bench/register_latency.py [-n 200] [--threads 4] [--cheap-hash]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.serverkit import TEST_DATABASE_URL  # noqa: E402
from tests.serverkit import Server  # noqa: E402
from tests.serverkit import ServerError  # noqa: E402
from tests.serverkit import postgres_database  # noqa: E402
from tests.smtp import SMTPServer  # noqa: E402
from tests.smtp import free_port  # noqa: E402

PASSWORD = "Str0ng-passphrase"
MODES = ("up", "down", "blackhole")


def payload(profile: str, name: str) -> tuple[str, dict]:
    """The register path and a valid body for one of the five profiles."""
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
    }[profile]


PROFILES = ("drf", "envelope", "laravel", "jsonapi", "jwt")


def sign_up(base: str, profile: str, name: str) -> tuple[int, float]:
    """``(status, seconds)`` for one registration."""
    path, body = payload(profile, name)
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        exc.read()
        status = exc.code
    return status, time.perf_counter() - started


def run_batch(base: str, prefix: str, count: int, threads: int) -> list[float]:
    """``count`` sign-ups by ``threads`` clients; every one must be a 201."""
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()

    def work(first):
        for i in range(first, count, threads):
            status, seconds = sign_up(base, PROFILES[i % 5], f"{prefix}{i}")
            with lock:
                if status == 201:
                    latencies.append(seconds)
                else:
                    failures.append(status)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} sign-ups failed: statuses {sorted(set(failures))}")
    return latencies


class SMTPSide:
    """One port that is, in turn, a real SMTP server, closed, or a silent listener."""

    def __init__(self):
        self.port = free_port()
        self.server: SMTPServer | None = None
        self.hole: socket.socket | None = None

    def set(self, mode: str) -> None:
        self.close()
        if mode == "up":
            self.server = SMTPServer(self.port).start()
        elif mode == "blackhole":
            self.hole = socket.socket()
            self.hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.hole.bind(("127.0.0.1", self.port))
            self.hole.listen(128)  # accepted by the kernel, never answered

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.hole is not None:
            self.hole.close()
            self.hole = None


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def measure(backend: str, url: str, args, workdir: Path) -> dict[str, list[float]]:
    """Latencies per SMTP mode against one server on ``url``."""
    smtp = SMTPSide()
    env = {"MAIL_TIMEOUT": str(args.mail_timeout)}
    if args.cheap_hash:
        env.update({"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_COST": "1024"})
    # gunicorn.conf.py's workers, the configuration's mail timings; no rate limit
    # (one client address signs up hundreds of users).
    server = Server(url, mail_port=smtp.port, log_dir=workdir, workers=None, env=env,
                    quick_mail=False)
    try:
        server.start(timeout=30)
    except ServerError as exc:
        raise SystemExit(f"{backend}: {exc}") from None
    results = {}
    try:
        smtp.set("up")
        run_batch(server.base, f"{backend}-warm-", 10, args.threads)  # imports, connections
        for mode in MODES:
            smtp.set(mode)
            time.sleep(0.5)  # let the senders meet the new SMTP state
            results[mode] = run_batch(server.base, f"{backend}-{mode}-", args.n, args.threads)
            print(f"  {backend:10} {mode:9} done", file=sys.stderr)
    finally:
        server.stop(timeout=30)
        smtp.close()
    return results


def databases(workdir: Path):
    """``(backend, url)`` for SQLite and, if configured, PostgreSQL (dropped afterwards)."""
    yield "sqlite", f"sqlite:///{workdir / 'bench.sqlite'}"
    if TEST_DATABASE_URL:
        with postgres_database("regapp_bench") as url:
            yield "postgresql", url


def main() -> None:
    """Run every backend and SMTP mode; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="sign-ups per SMTP mode")
    parser.add_argument("--threads", type=int, default=4, help="concurrent clients")
    parser.add_argument("--mail-timeout", type=int, default=5, help="MAIL_TIMEOUT seconds")
    parser.add_argument("--cheap-hash", action="store_true",
                        help="argon2 t=1, m=1 MiB, so the table shows the rest of the request")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="regapp-bench-"))
    rows = []
    for backend, url in databases(workdir):
        results = measure(backend, url, args, workdir)
        up = statistics.median(results["up"])
        for mode in MODES:
            median = statistics.median(results[mode])
            rows.append((backend, mode, len(results[mode]), median * 1000,
                         percentile(results[mode], 0.9) * 1000, median / up))
    shutil.rmtree(workdir, ignore_errors=True)  # kept (with the logs) when a run fails
    print(f"{'backend':10} {'smtp':9} {'n':>5} {'median ms':>10} {'p90 ms':>8} "
          f"{'median / up':>11}")
    for backend, mode, n, median, p90, ratio in rows:
        print(f"{backend:10} {mode:9} {n:5d} {median:10.1f} {p90:8.1f} {ratio:11.2f}")


if __name__ == "__main__":
    main()
