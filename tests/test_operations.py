"""Operations: /healthz and /readyz, JSON log lines with the request id on every line,
events without secrets, incoming X-Request-ID, and the Blinker signals."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa

from regapp import create_app
from regapp import signals
from regapp.core import outbox
from regapp.core import reset
from regapp.core import tokens
from regapp.core.passwords import DjangoPolicy
from regapp.extensions import db
from regapp.models import OutboxMessage
from regapp.models import utcnow
from tests.smtp import free_port

PASSWORD = "Str0ng-passphrase"


# -- /healthz, /readyz ----------------------------------------------------------------------

def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.get_json() == {"status": "ok"}
    assert r.headers["Cache-Control"] == "no-store"


def test_readyz_on_a_migrated_database(app, client, make_user):
    r = client.get("/readyz")
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "ready" and body["database"] == "ok"
    assert body["migration"]["database"] == body["migration"]["head"] != []
    assert body["outbox"] == {"backlog": 0, "failed": 0, "oldest_pending_seconds": None}
    make_user("rdy")
    make_user("rdz")
    with app.app_context():
        db.session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == 2)
                           .values(status="failed"))
        db.session.commit()
    outbox = client.get("/readyz").get_json()["outbox"]
    assert outbox["backlog"] == 1 and outbox["failed"] == 1
    assert 0 <= outbox["oldest_pending_seconds"] < 60


def test_readyz_on_an_unmigrated_database(tmp_path, caplog):
    app = create_app({"TESTING": True,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'empty.sqlite'}"})
    r = app.test_client().get("/readyz")
    assert r.status_code == 503 and r.headers["Retry-After"]
    body = r.get_json()
    assert body["status"] == "not ready" and body["database"] == "not migrated"
    assert body["migration"]["database"] == [] and body["migration"]["head"]
    assert "run `flask db upgrade`" in caplog.text
    with app.app_context():
        db.engine.dispose()


def test_readyz_with_the_database_down(caplog):
    url = f"postgresql+psycopg://nobody:s3cret@127.0.0.1:{free_port()}/none"
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    assert r.get_json() == {"status": "not ready", "database": "unreachable", "outbox": None}
    assert "s3cret" not in caplog.text and "127.0.0.1" not in r.get_data(as_text=True)
    assert app.test_client().get("/healthz").status_code == 200


# -- request ids ---------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "kept"), [
    ("abc-DEF_123", True), ("x" * 64, True), ("x" * 65, False), ("a b", False),
    ("a.b", False), ("", False), ("a\u00e9", False),
])
def test_incoming_request_id(client, given, kept):
    rid = client.get("/healthz", headers={"X-Request-ID": given}).headers["X-Request-ID"]
    assert (rid == given) is kept
    assert rid == given or len(rid) == 32


# -- JSON logs ----------------------------------------------------------------------------

@pytest.fixture
def json_log(app):
    """The regapp handler's output as parsed JSON lines."""
    [handler] = [h for h in logging.getLogger("regapp").handlers
                 if getattr(h, "_regapp_handler", False)]
    stream = io.StringIO()
    old = handler.setStream(stream)
    logging.getLogger("regapp.request").setLevel(logging.INFO)

    def lines():
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield lines
    handler.setStream(old)


@pytest.mark.config(LOG_FORMAT="json", RATELIMIT_ENABLED=True,
                    RATELIMIT_REGISTRATION="2/minute")
def test_json_lines_carry_the_request_id_and_events_without_secrets(
        app, client, json_log, last_confirmation, smtp):
    r = client.post("/api/register/", json={"username": "jay", "email": "jay@x.io",
                                            "password": PASSWORD},
                    headers={"X-Request-ID": "req-1"})
    assert r.status_code == 201
    lines = json_log()
    assert lines and all(line["request_id"] == "req-1" for line in lines)
    [registered] = [line for line in lines if line.get("event") == "registered"]
    assert registered["account_id"] == 1 and registered["profile"] == "drf"
    assert registered["level"] == "INFO" and registered["time"].endswith("Z")

    _, token, code = last_confirmation()
    delivered = [line for line in json_log() if line.get("event") == "delivered"]
    assert delivered and delivered[0]["account_id"] == 1 and delivered[0]["kind"] == "confirm"
    assert "request_id" not in delivered[0]  # sent outside any request

    r = client.post("/api/users/validation", json={"email": "jay@x.io", "token": "000000"},
                    headers={"X-Request-ID": "req-2"})
    r = client.post("/api/users/validation", json={"email": "jay@x.io", "token": code},
                    headers={"X-Request-ID": "req-3"})
    assert r.status_code == 201
    events = {(line.get("event"), line.get("request_id")) for line in json_log()}
    assert ("confirmation_failed", "req-2") in events and ("confirmed", "req-3") in events

    client.post("/api/register/", json={})
    r = client.post("/api/register/", json={}, headers={"X-Request-ID": "req-4"})
    assert r.status_code == 429
    [limited] = [line for line in json_log() if line.get("event") == "rate_limited"]
    assert limited["purpose"] == "registration" and limited["request_id"] == "req-4"

    text = json.dumps(json_log())
    for secret in ("jay@x.io", PASSWORD, token, code):
        assert secret not in text


@pytest.mark.config(LOG_FORMAT="json", MAIL_PORT=free_port(), MAIL_MAX_ATTEMPTS=1)
def test_delivery_failure_is_an_event_with_the_account_id(app, client, json_log, deliver):
    assert client.post("/api/register/", json={"username": "fay", "email": "fay@x.io",
                                               "password": PASSWORD}).status_code == 201
    deliver()
    [failed] = [line for line in json_log() if line.get("event") == "delivery_failed"]
    assert failed["account_id"] == 1 and failed["status"] == "failed"
    assert failed["level"] == "ERROR" and "fay@x.io" not in json.dumps(failed)


def test_text_lines_end_with_the_request_id(app, client):
    [handler] = [h for h in logging.getLogger("regapp").handlers
                 if getattr(h, "_regapp_handler", False)]
    stream = io.StringIO()
    old = handler.setStream(stream)
    try:
        client.post("/api/register/", json={"username": "tex", "email": "tex@x.io",
                                            "password": PASSWORD},
                    headers={"X-Request-ID": "text-1"})
    finally:
        handler.setStream(old)
    [line] = [x for x in stream.getvalue().splitlines() if "account registered" in x]
    assert line.endswith("account registered account_id=1 profile=drf request_id=text-1")


# -- signals -----------------------------------------------------------------------------

@pytest.fixture
def received():
    seen = []
    names = ("user_registered", "confirmation_sent", "email_confirmed", "confirmation_failed",
             "password_reset")

    def receiver_for(name):
        def receiver(sender, **kwargs):
            user = kwargs.pop("user", None)
            seen.append((name, sender.name, None if user is None else user.id, kwargs))
        return receiver

    receivers = {name: receiver_for(name) for name in names}
    for name, receiver in receivers.items():
        getattr(signals, name).connect(receiver)
    yield seen
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


def test_signals(app, client, received, last_confirmation, runner):
    assert client.post("/api/register/", json={"username": "sig", "email": "sig@x.io",
                                               "password": PASSWORD}).status_code == 201
    assert received == [("user_registered", "regapp", 1, {"profile": "drf"}),
                        ("confirmation_sent", "regapp", 1, {"resend": False})]
    received.clear()
    _, token, code = last_confirmation()
    client.post("/api/resend-confirmation/", json={"email": "sig@x.io"})
    assert received == [("confirmation_sent", "regapp", 1, {"resend": True})]
    received.clear()
    client.get("/api/confirm-email/", query_string={"token_id": "bad.token"})
    client.post("/api/users/validation", json={"email": "sig@x.io", "token": "000000"})
    assert received == [
        ("confirmation_failed", "regapp", None, {"reason": "token_invalid", "method": "link"}),
        ("confirmation_failed", "regapp", None, {"reason": "code_mismatch", "method": "code"})]
    received.clear()
    assert client.get("/api/confirm-email/", query_string={"token_id": token}).status_code == 200
    assert received == [("email_confirmed", "regapp", 1, {"method": "link"})]
    received.clear()
    runner.invoke(args=["users", "create", "op@x.io", "--password", PASSWORD])
    runner.invoke(args=["users", "confirm", "op@x.io"])
    assert [(n, uid, kw) for n, _, uid, kw in received] == [
        ("user_registered", 2, {"profile": None}), ("confirmation_sent", 2, {"resend": False}),
        ("email_confirmed", 2, {"method": "operator"})]


def test_signal_for_password_reset(app, received, make_core_user):
    with app.app_context():
        user = make_core_user("rp@x.io")
        received.clear()
        reset.reset_with_token(tokens.make_reset_token(user), "An0ther-passphrase",
                               lambda account: DjangoPolicy())
    assert [(n, uid, kw) for n, _, uid, kw in received] == [
        ("password_reset", 1, {"method": "link"})]


def test_a_failing_receiver_never_breaks_a_sign_up(client, caplog):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    signals.user_registered.connect(broken)
    try:
        r = client.post("/api/register/", json={"username": "brk", "email": "brk@x.io",
                                                "password": PASSWORD})
    finally:
        signals.user_registered.disconnect(broken)
    assert r.status_code == 201
    assert "receiver of user-registered failed" in caplog.text


def test_oldest_pending_age_counts_from_creation(app):
    with app.app_context():
        outbox.enqueue(to="o@x.io", subject="s", body_text="b", body_html=None)
        db.session.commit()
        db.session.execute(sa.update(OutboxMessage).values(
            created_at=utcnow() - timedelta(hours=2)))
        db.session.commit()
        stats = outbox.stats()
    assert stats["backlog"] == 1 and 7190 < stats["oldest_pending_seconds"] < 7300
