"""End to end: the server started exactly as the contract says, mail with nobody sending."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import sqlalchemy as sa

from tests.serverkit import Server
from tests.serverkit import postgres_database
from tests.smtp import confirmation

PASSWORD = "Str0ng-passphrase"


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
def start_server(database_url, mailbox, tmp_path):
    """``flask db upgrade`` then ``gunicorn wsgi:app [extra args]``; always terminated."""
    servers: list[Server] = []

    def start(*extra_args):
        # gunicorn.conf.py's worker count unless the args say otherwise; rate limits
        # are tested elsewhere (five sign-ups here).
        server = Server(database_url, mail_port=mailbox.port, log_dir=tmp_path, workers=None,
                        args=extra_args)
        servers.append(server)
        server.start(timeout=15)
        return server.base, server.log_path

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


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
