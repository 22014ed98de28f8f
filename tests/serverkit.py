"""Run regapp the way the contract says, in a subprocess, for black-box tests.

    .venv/bin/flask --app regapp db upgrade
    .venv/bin/gunicorn --bind 127.0.0.1:<port> -w N wsgi:app

``Server`` starts both with a clean environment (``DATABASE_URL``, ``MAIL_*``,
``SECRET_KEY``, ``RATELIMIT_ENABLED=false`` ...), waits until it answers,
always terminates the whole process group, and keeps gunicorn's output
(stdout and stderr) in a log file the test can read.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from tests.smtp import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
# Variables of the machine's environment that would change what the server does.
OWN_PREFIXES = ("MAIL_", "RATELIMIT_", "REGAPP_", "GUNICORN_", "ARGON2_", "DATABASE_URL",
                "SECRET_KEY", "FRONTEND_URL", "OUTBOX_", "CONFIRM_", "RESEND_")


class ServerError(RuntimeError):
    """The server did not come up; the message carries its log."""


# Quick dispatcher passes and retries, so tests wait for mail in seconds.
QUICK_MAIL = {"MAIL_RETRY_BASE": "1", "MAIL_RETRY_MAX": "1", "MAIL_POLL_INTERVAL": "1",
              "MAIL_TIMEOUT": "2"}


def clean_env(**values: str) -> dict:
    """This process's environment without anything that steers the server, plus ``values``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)},
            **{k: str(v) for k, v in values.items()}}


def flask_db_upgrade(env: dict) -> None:
    """``flask db upgrade`` as the contract runs it, with ``env``; ServerError if it fails."""
    done = subprocess.run([BIN / "flask", "--app", "regapp", "db", "upgrade"],
                          cwd=ROOT, env=env, capture_output=True, timeout=60)
    if done.returncode:
        raise ServerError("flask db upgrade failed:\n"
                          + done.stderr.decode(errors="replace")[-3000:])


class Server:
    """``flask db upgrade`` then ``gunicorn wsgi:app`` on a free loopback port.

    The one gunicorn runner of the tests and the bench. ``workers=None`` leaves
    the count to gunicorn.conf.py; ``args`` go to gunicorn before ``wsgi:app``;
    ``env`` overrides the defaults below (``quick_mail=False`` keeps the mail
    timings of the configuration). ``start()`` may be called again after a stop
    or a crash: same port, same database, the log is appended to. ``app`` is the
    WSGI target (the bench's bare Flask app uses it).
    """

    def __init__(self, database_url: str, *, mail_port: int, log_dir: Path,
                 workers: int | None = 2, env: dict | None = None, args: tuple = (),
                 upgrade: bool = True, quick_mail: bool = True, app: str = "wsgi:app"):
        self.database_url = database_url
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.args = tuple(args)
        self.upgrade = upgrade
        self.app = app
        self.log_path = Path(log_dir) / f"gunicorn-{self.port}.log"
        self.env = clean_env(**{
            "REGAPP_CONFIG": "development",
            "DATABASE_URL": database_url,
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": mail_port,
            "SECRET_KEY": "serverkit-" + uuid.uuid4().hex,
            "FRONTEND_URL": self.base,
            "RATELIMIT_ENABLED": "false",
            **(QUICK_MAIL if quick_mail else {}),
            **(env or {}),
        })
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> Server:
        """Migrate, start gunicorn and wait for an HTTP answer; raise ServerError if not."""
        if self.upgrade:
            flask_db_upgrade(self.env)
        workers = () if self.workers is None else ("--workers", str(self.workers))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [BIN / "gunicorn", "--bind", f"127.0.0.1:{self.port}",
                 *workers, *self.args, self.app],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            self._wait_until_up(timeout)
        except BaseException:
            self.stop(signal.SIGKILL)
            raise
        return self

    def _wait_until_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"gunicorn exited early:\n{self.log()}")
            try:
                urllib.request.urlopen(f"{self.base}/confirm-email/", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # any HTTP answer means it is serving
            except OSError:
                time.sleep(0.05)
        raise ServerError(f"gunicorn did not answer within {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10, *,
             check: bool = False) -> None:
        """Send ``sig`` to the master (SIGKILL: to the whole process group) and wait;
        SIGKILL the group if it lingers, and then, with ``check``, raise ServerError."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        if sig == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
            if check:
                raise ServerError(
                    f"gunicorn ignored {sig!r} for {timeout}s:\n{self.log()}") from None

    def log(self) -> str:
        """Everything gunicorn and the app wrote so far (error log and access log)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def url(self, path: str) -> str:
        return self.base + path

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


# -- what a client sees ---------------------------------------------------------------

@dataclass
class Answer:
    """One HTTP answer: status, headers and body text."""

    status: int
    headers: dict
    text: str

    def json(self):
        return json.loads(self.text)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


def request(method: str, url: str, data=None, *, form: bool = False, timeout: float = 30,
            headers: dict | None = None) -> Answer:
    """Send one request; HTTP errors are answers too. ``data`` dicts go as JSON or a form."""
    body = None
    req_headers = dict(headers or {})
    if data is not None:
        if form:
            body = urllib.parse.urlencode(data).encode()
            req_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        else:
            body = json.dumps(data).encode()
            req_headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=body, method=method, headers=req_headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Answer(resp.status, dict(resp.headers), resp.read().decode())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, dict(exc.headers), exc.read().decode())


def in_parallel(count: int, work, timeout: float = 60) -> list:
    """Run ``work(i)`` in ``count`` threads released together; results (or exceptions) in order."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i):
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if any(t.is_alive() for t in threads):
        raise AssertionError("a request hung")
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise AssertionError(f"{len(errors)} requests failed") from errors[0]
    return results


# -- databases of a test's own ----------------------------------------------------------

def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{Path(directory) / 'server.sqlite'}"


class PostgresDatabase:
    """A throwaway database on TEST_DATABASE_URL's server: ``url`` is known before
    ``create()`` (a test can point an app at it first); ``drop()`` forces it away.

    The one place tests and the bench CREATE and DROP databases; as a context
    manager it is created on entry and dropped on exit.
    """

    def __init__(self, prefix: str = "regapp_srv", template: str | None = None):
        if not TEST_DATABASE_URL:
            raise RuntimeError("TEST_DATABASE_URL is not set")
        self.name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.template = template
        self.url = sa.engine.make_url(TEST_DATABASE_URL).set(
            database=self.name).render_as_string(hide_password=False)

    def _admin(self, sql: str) -> None:
        admin = sa.create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(sql))
        finally:
            admin.dispose()

    def create(self) -> str:
        template = f' TEMPLATE "{self.template}"' if self.template else ""
        self._admin(f'CREATE DATABASE "{self.name}"{template}')
        return self.url

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def __enter__(self) -> str:
        return self.create()

    def __exit__(self, *exc_info) -> None:
        self.drop()


@contextlib.contextmanager
def postgres_database(prefix: str = "regapp_srv", template: str | None = None):
    """A new PostgreSQL database (empty, or a copy of ``template``), dropped afterwards."""
    database = PostgresDatabase(prefix, template)
    try:
        yield database.create()
    finally:
        database.drop()


@contextlib.contextmanager
def database(backend: str, directory: Path):
    """``sqlite``: a file in ``directory``; ``postgresql``: a fresh database."""
    if backend == "sqlite":
        yield sqlite_url(directory)
    else:
        with postgres_database() as url:
            yield url


def rows(database_url: str, sql: str, **params) -> list:
    """Run one query against the server's database from outside (what an operator sees)."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).all()
    finally:
        engine.dispose()


def execute(database_url: str, *statements: str) -> None:
    """Run DDL/DML in one committed transaction (triggers, fixtures)."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()
