"""End to end: the server started exactly as the contract says, mail with nobody sending."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.smtp import SMTPServer
from tests.smtp import confirmation
from tests.serverkit import postgres_database
from tests.smtp import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD = "Str0ng-passphrase"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")


def request(method, url, data=None, content_type="application/json", timeout=5):
    """``(status, headers, body text)``; HTTP errors are answers too."""
    if isinstance(data, dict):
        data = (json.dumps(data) if content_type == "application/json"
                else urllib.parse.urlencode(data)).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


@pytest.fixture
def database_url(backend, tmp_path):
    """A database of this test's own: a temp SQLite file, or a new PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'e2e.sqlite'}"
        return
    with postgres_database("regapp_e2e") as url:
        yield url


@pytest.fixture
def mailbox():
    server = SMTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def start_server(database_url, mailbox, tmp_path):
    """``flask db upgrade`` then ``gunicorn wsgi:app [extra args]``; always terminated."""
    procs = []

    def start(*extra_args):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MAIL_")},
            "REGAPP_CONFIG": "development",
            "DATABASE_URL": database_url,
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(mailbox.port),
            "SECRET_KEY": "e2e-secret-" + uuid.uuid4().hex,
            "FRONTEND_URL": base,
            # Quick retries, so mail queued while SMTP was down leaves within seconds.
            "MAIL_RETRY_BASE": "1",
            "MAIL_RETRY_MAX": "1",
            "MAIL_POLL_INTERVAL": "1",
            "MAIL_TIMEOUT": "2",
            "RATELIMIT_ENABLED": "false",  # limits are tested elsewhere; five sign-ups here
        }
        subprocess.run([BIN / "flask", "--app", "regapp", "db", "upgrade"], cwd=ROOT,
                       env=env, check=True, capture_output=True, timeout=60)
        log_path = tmp_path / f"gunicorn-{port}.log"
        with open(log_path, "wb") as log:
            procs.append(subprocess.Popen(
                [BIN / "gunicorn", "--bind", f"127.0.0.1:{port}", *extra_args, "wsgi:app"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        _wait_until_up(base, procs[-1], log_path)
        return base, log_path

    try:
        yield start
    finally:
        for proc in procs:
            _terminate(proc)


def _wait_until_up(base, proc, log_path, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited early:\n{log_path.read_text()}")
        try:
            urllib.request.urlopen(f"{base}/confirm-email/", timeout=1)
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"gunicorn did not answer within {timeout}s:\n{log_path.read_text()}")


def _terminate(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def register(base, i):
    email = f"e2e{i}@example.com"
    status, _, body = request("POST", f"{base}/api/register/", {
        "username": f"e2e{i}", "email": email, "password": PASSWORD})
    assert status == 201, body
    return email


def wait_for_mail(mailbox, count, timeout=5.0):
    return mailbox.wait_for(count, timeout=timeout)[count - 1]


def test_register_confirm_and_survive_smtp_outage(start_server, mailbox, database_url):
    base, log_path = start_server()

    # 1: link at the drf endpoint; the email arrives with nobody calling send.
    email = register(base, 1)
    msg = wait_for_mail(mailbox, 1)
    assert msg["To"] == email
    link, token, code = confirmation(msg)
    assert link.startswith(f"{base}/confirm-email/?token_id=")
    status, _, body = request("GET", f"{base}/api/confirm-email/?token_id={token}")
    assert status == 200 and json.loads(body)["is_email_confirmed"] is True

    # 2: the 6-digit code at the laravel endpoint.
    email = register(base, 2)
    _, token2, code = confirmation(wait_for_mail(mailbox, 2))
    status, _, body = request("POST", f"{base}/api/users/validation",
                              {"email": email, "token": code})
    assert status == 201 and json.loads(body) == {"message": "Validated"}, body

    # 3: the emailed link in a browser: GET shows the button, POSTing its form confirms.
    register(base, 3)
    link, token3, _ = confirmation(wait_for_mail(mailbox, 3))
    status, _, page = request("GET", link)
    assert status == 200 and "Confirm my email" in page
    action = re.search(r'<form method="post" action="([^"]+)"', page).group(1)
    hidden = re.search(r'name="token_id" value="([^"]+)"', page).group(1)
    status, _, page = request("POST", urllib.parse.urljoin(base, action),
                              {"token_id": hidden}, "application/x-www-form-urlencoded")
    assert status == 200 and "Email confirmed" in page
    for confirmed in (token2, token3):
        status, _, body = request("GET", f"{base}/api/confirm-email/?token_id={confirmed}")
        assert status == 400 and "already confirmed" in body

    # 4: SMTP down: sign-ups still succeed at once; mail leaves when SMTP is back.
    mailbox.stop()
    started = time.monotonic()
    register(base, 4)
    register(base, 5)
    assert time.monotonic() - started < 3
    time.sleep(1.5)  # the dispatchers try, fail, and back off
    assert len(mailbox.messages) == 3
    mailbox.start()
    messages = mailbox.wait_for(5, timeout=8)
    time.sleep(1.2)  # another dispatcher pass: nothing is sent twice
    ids = [m["Message-ID"] for m in mailbox.messages]
    assert len(ids) == 5 and len(set(ids)) == 5
    assert sorted(m["To"] for m in messages[3:]) == ["e2e4@example.com", "e2e5@example.com"]

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            states = conn.execute(sa.text(
                "SELECT status, attempts FROM outbox_messages ORDER BY id")).all()
            confirmed = conn.execute(sa.text(
                "SELECT email FROM users WHERE is_email_confirmed ORDER BY id")).scalars().all()
    finally:
        engine.dispose()
    assert [s for s, _ in states] == ["sent"] * 5
    assert all(attempts >= 1 for _, attempts in states[3:])  # they did wait for SMTP
    assert confirmed == ["e2e1@example.com", "e2e2@example.com", "e2e3@example.com"]

    # Tokens travel in query strings: the access log must not show them.
    log_text = log_path.read_text()
    assert "/api/confirm-email/" in log_text
    assert token not in log_text and token3 not in log_text and code not in log_text


@pytest.mark.parametrize("backend", ["sqlite"])
def test_preloaded_workers_deliver_mail(start_server, mailbox):
    # --preload imports the app (and starts a dispatcher) in the master before fork().
    base, _ = start_server("--preload", "--workers", "3")
    emails = [register(base, i) for i in range(4)]
    mailbox.wait_for(4, timeout=5)
    time.sleep(1.2)
    assert sorted(m["To"] for m in mailbox.messages) == emails
