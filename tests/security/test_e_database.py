"""SECURITY.md E5 (crash inside the registration transaction) and E6 (database down).

Already proven elsewhere:
- E5 drf, database error ->
  tests/test_outbox.py::test_failed_registration_transaction_leaves_neither_row
- E6 dispatcher thread outlives an unreachable database, in-process ->
  tests/test_outbox.py::test_dispatcher_survives_a_database_outage
- E6 envelope 503 envelope -> tests/profiles/test_envelope.py (OperationalError -> -503)
"""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from regapp import create_app
from regapp.core import mail
from regapp.core import tokens
from regapp.extensions import db
from tests.dbstate import fail_outbox_inserts
from tests.profile_matrix import SERVER_ERROR
from tests.serverkit import TEST_DATABASE_URL
from tests.serverkit import Server
from tests.serverkit import postgres_database
from tests.serverkit import request
from tests.smtp import SMTPServer
from tests.smtp import confirmation
from tests.tcpproxy import TCPProxy

PASSWORD = "Str0ng-passphrase"
TABLES = ("users", "email_confirmations", "outbox_messages")
PROFILES = ("drf", "envelope", "laravel", "jsonapi", "jwt")
# What no answer and no log line may contain when the database fails.
LEAKS = ("Traceback", "[SQL", "SELECT ", "INSERT ", "sqlite3", "psycopg", "OperationalError:",
         "postgresql", "unable to open", "Connection refused")


def address(profile: str, n: str = "1") -> str:
    return f"e-{profile}-{n}@example.org"


def payload(profile: str, n: str = "1") -> tuple[str, dict]:
    email = address(profile, n)
    if profile == "drf":
        return "/api/register/", {"username": f"e{profile}{n}", "email": email,
                                  "password": PASSWORD}
    if profile == "envelope":
        return "/api/v1/user/register", {"username": f"e{profile}{n}", "email_address": email,
                                         "password": PASSWORD}
    if profile == "laravel":
        return "/api/users/register", {"first_name": "Ada", "last_name": "Down", "email": email,
                                       "postal_code": "5673RE", "password": PASSWORD}
    if profile == "jsonapi":
        return "/api/users/registration", {"email": email, "password": PASSWORD,
                                           "password_confirmation": PASSWORD}
    return "/api/sign-up/", {"username": f"e{profile}{n}", "email": email, "password": PASSWORD}


UNAVAILABLE = {
    "drf": {"detail": "Service temporarily unavailable, try again later."},
    "envelope": {"results": None,
                 "message": "The service is temporarily unavailable: try again in 5 seconds.",
                 "error": "Service Unavailable", "error_code": -503, "status": 503},
    "laravel": {"message": "Service Unavailable"},
    "jsonapi": {"errors": [{"status": "503", "title": "Service unavailable",
                            "detail": "Service unavailable", "source": {}}],
                "jsonapi": {"version": "1.0"}},
    "jwt": {"detail": "Service temporarily unavailable, try again later."},
}


def assert_unavailable(profile, status, headers, text, body):
    """A 503 in ``profile``'s own format, with Retry-After, and nothing about the database."""
    assert (status, body) == (503, UNAVAILABLE[profile]), text
    assert int(headers["Retry-After"]) > 0
    if profile == "jsonapi":
        assert headers["Content-Type"].startswith("application/vnd.api+json")
    assert not any(leak in text for leak in LEAKS), text


def counts(app) -> dict:
    with app.app_context():
        return {t: db.session.scalar(sa.text(f"SELECT count(*) FROM {t}")) for t in TABLES}


# -- E5: the transaction fails after the user INSERT --------------------------------------


@pytest.mark.parametrize("profile", [p for p in PROFILES if p != "drf"])  # drf: see top
def test_e5_database_error_before_commit_leaves_nothing(app, client, backend, profile):
    path, data = payload(profile)
    fail_outbox_inserts(app, backend, True)
    try:
        r = client.post(path, json=data)
    finally:
        fail_outbox_inserts(app, backend, False)
    assert_unavailable(profile, r.status_code, r.headers, r.get_data(as_text=True), r.get_json())
    assert counts(app) == dict.fromkeys(TABLES, 0)
    # Nothing half-made: the same registration goes through on retry.
    r = client.post(path, json=data)
    assert r.status_code == 201, r.get_data(as_text=True)
    assert counts(app) == dict.fromkeys(TABLES, 1)


@pytest.mark.parametrize("profile", PROFILES)
def test_e5_crash_before_commit_leaves_nothing(app, client, profile, monkeypatch, caplog):
    # A bug (not a database error) after the user row was flushed: queueing the email blows up.
    def crash(*args, **kwargs):
        raise RuntimeError("injected crash while queueing the email")

    path, data = payload(profile)
    monkeypatch.setattr(mail, "queue_confirmation", crash)
    r = client.post(path, json=data)
    monkeypatch.undo()
    assert (r.status_code, r.get_json()) == (500, SERVER_ERROR[profile])
    assert "injected" not in r.get_data(as_text=True)
    assert counts(app) == dict.fromkeys(TABLES, 0)
    assert any("injected crash" in str(rec.exc_info[1]) for rec in caplog.records
               if rec.exc_info)  # operators see it, clients don't
    r = client.post(path, json=data)
    assert r.status_code == 201, r.get_data(as_text=True)
    assert counts(app) == dict.fromkeys(TABLES, 1)


# -- E6: SQLite file that can't be opened ------------------------------------------------

def test_e6_unwritable_sqlite_answers_503_everywhere(tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    app = create_app({"TESTING": True, "RATELIMIT_ENABLED": True,  # the limiter runs first
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{blocker / 'regapp.sqlite'}"})
    client = app.test_client()
    with app.app_context():
        token = tokens.make_confirm_token(SimpleNamespace(id=1, email_key="e@example.org"))
    calls = [(profile, "POST", *payload(profile)) for profile in PROFILES] + [
        ("drf", "GET", f"/api/confirm-email/?token_id={token}", None),
        ("jsonapi", "GET", f"/api/users/verification?email_token={token}", None),
        ("laravel", "POST", "/api/users/validation", {"email": "e@example.org", "token": token}),
        ("laravel", "POST", "/api/users/validation", {"email": "e@example.org",
                                                      "token": "123456"}),
        ("drf", "POST", "/api/resend-confirmation/", {"email": "e@example.org"}),
        ("jwt", "POST", "/api/token/", {"username": "e", "password": PASSWORD}),
    ]
    with caplog.at_level(logging.INFO):
        for profile, method, path, data in calls:
            r = client.open(path, method=method, json=data)
            assert_unavailable(profile, r.status_code, r.headers, r.get_data(as_text=True),
                               r.get_json())
        # The browser page behind the emailed link: a 503 page, not a 500.
        for r in (client.get(f"/confirm-email/?token_id={token}"),
                  client.post("/confirm-email/", data={"token_id": token})):
            assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
            assert r.mimetype == "text/html"
            assert not any(leak in r.get_data(as_text=True) for leak in LEAKS)
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "database unavailable: OperationalError" in logged
    assert not any(rec.exc_info for rec in caplog.records)  # no traceback in the log
    assert str(tmp_path) not in logged and not any(leak in logged for leak in LEAKS)


# -- E6: PostgreSQL goes away and comes back, under gunicorn ------------------------------

SECRET = "dsn-Secret-pw-4242"


@pytest.fixture
def pg_behind_proxy(tmp_path):
    """A fresh database reached through a cuttable proxy; the DSN carries a password
    (trust auth ignores it) that must never show up anywhere."""
    if not TEST_DATABASE_URL:
        pytest.skip("needs TEST_DATABASE_URL")
    real = sa.engine.make_url(TEST_DATABASE_URL)
    with postgres_database("regapp_e6") as url, TCPProxy(real.host or "127.0.0.1",
                                                         real.port or 5432) as proxy:
        proxied = sa.engine.make_url(url).set(host="127.0.0.1", port=proxy.port,
                                              password=SECRET)
        yield proxy, proxied.render_as_string(hide_password=False)


def test_e6_postgresql_down_then_back_without_restart(pg_behind_proxy, tmp_path):
    proxy, url = pg_behind_proxy
    mailbox = SMTPServer().start()
    server = Server(url, mail_port=mailbox.port, workers=2, log_dir=tmp_path)
    try:
        server.start()
        r = request("POST", server.url("/api/register/"), payload("drf", "before")[1])
        assert r.status == 201, r.text
        _, token, code = confirmation(mailbox.wait_for(1)[0])
        email = address("drf", "before")

        proxy.cut()  # every pooled connection reset, new ones refused
        down = [(profile, "POST", *payload(profile, "down")) for profile in PROFILES] + [
            ("drf", "GET", f"/api/confirm-email/?token_id={token}", None),
            ("jsonapi", "GET", f"/api/users/verification?email_token={token}", None),
            ("laravel", "POST", "/api/users/validation", {"email": email, "token": code}),
        ]
        for profile, method, path, data in down:
            started = time.monotonic()
            r = request(method, server.url(path), data)
            assert time.monotonic() - started < 3
            assert_unavailable(profile, r.status, r.headers, r.text, r.json())
        page = request("GET", server.url(f"/confirm-email/?token_id={token}"))
        assert page.status == 503 and int(page.headers["Retry-After"]) > 0

        # A host that is down without resetting connections: bounded by connect_timeout.
        proxy.blackhole()
        started = time.monotonic()
        r = request("POST", server.url("/api/register/"), payload("drf", "hole")[1])
        assert_unavailable("drf", r.status, r.headers, r.text, r.json())
        assert time.monotonic() - started < 10
        time.sleep(0.5)  # each worker's dispatcher has failed a pass by now

        proxy.cut()
        proxy.restore()  # same port: the app is not restarted
        for profile in PROFILES:
            path, data = payload(profile, "after")
            r = request("POST", server.url(path), data)
            assert r.status == 201, (profile, r.text)
        # Mail queued after the outage goes out: the dispatchers lived through it.
        arrived = {m["To"] for m in mailbox.wait_for(6, timeout=10)}
        assert {address(p, "after") for p in PROFILES} <= arrived
        r = request("GET", server.url(f"/api/confirm-email/?token_id={token}"))
        assert r.status == 200 and r.json()["is_email_confirmed"] is True
    finally:
        server.stop()
        mailbox.stop()

    log = server.log()
    assert "outbox dispatcher pass failed (OperationalError)" in log
    assert "database unavailable: OperationalError" in log
    for leak in (*LEAKS, SECRET, "Exception in thread", token, code):
        assert leak not in log, leak
