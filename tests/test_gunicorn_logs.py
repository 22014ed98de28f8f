"""LOG_FORMAT=json under gunicorn: every line of the server's output is one JSON object,
gunicorn's own (error log and access log) as well as regapp's, and the access log's
fields are keys. The query string, where confirmation tokens travel, never appears."""

from __future__ import annotations

import json
import time

import pytest

from tests.serverkit import Server
from tests.serverkit import request
from tests.smtp import confirmation

PASSWORD = "Str0ng-passphrase"
EMAIL = "json-log@example.com"


def lines_of(log: str) -> list[dict]:
    """Every non-empty line as JSON (a line that is not JSON fails the test)."""
    out = []
    for line in log.splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                pytest.fail(f"not a JSON line: {line!r}\n\n{log}")
    return out


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.1)
    return predicate()


def test_gunicorn_lines_are_json_with_access_fields(tmp_path, mailbox):
    server = Server(f"sqlite:///{tmp_path / 'json.sqlite'}", mail_port=mailbox.port,
                    log_dir=tmp_path, workers=1, env={"LOG_FORMAT": "json"})
    with server:
        r = request("POST", server.url("/api/register/"),
                    {"username": "jsonlog", "email": EMAIL, "password": PASSWORD},
                    headers={"X-Request-ID": "signup-req-1"})
        assert r.status == 201
        _, token, _ = confirmation(mailbox.wait_for(1)[-1])
        r = request("GET", server.url(f"/confirm-email/?token_id={token}&utm=x"),
                    headers={"X-Request-ID": "confirm-req-1"})
        assert r.status == 200
        r = request("GET", server.url("/api/no-such-route?secret=q"))
        assert r.status == 404
        assert wait_for(lambda: sum('"gunicorn.access"' in line
                                    for line in server.log().splitlines()) >= 3)
    log = server.log()
    records = lines_of(log)

    error_log = [rec for rec in records if rec["logger"] == "gunicorn.error"]
    messages = [rec["message"] for rec in error_log]
    assert any(m.startswith("Listening at: http://127.0.0.1:") for m in messages), messages
    assert any(m.startswith("Booting worker") for m in messages), messages
    assert all(rec["level"] and rec["time"].endswith("Z") for rec in error_log)

    access = {rec["request_id"]: rec for rec in records if rec["logger"] == "gunicorn.access"}
    signup = access["signup-req-1"]
    assert (signup["method"], signup["path"], signup["status"]) == ("POST", "/api/register/",
                                                                     201)
    assert isinstance(signup["duration_ms"], int) and signup["duration_ms"] >= 0
    confirm = access["confirm-req-1"]
    assert (confirm["method"], confirm["path"], confirm["status"]) == ("GET", "/confirm-email/",
                                                                       200)
    missing = [rec for rec in access.values() if rec["path"] == "/api/no-such-route"]
    assert [(rec["method"], rec["status"]) for rec in missing] == [("GET", 404)]
    assert len(missing[0]["request_id"]) >= 16  # one was made up for it

    # regapp's own events are JSON lines of the same shape, with the request id.
    registered = [rec for rec in records if rec.get("event") == "registered"]
    assert [rec["request_id"] for rec in registered] == ["signup-req-1"]
    # Nothing secret: no token, no query string, no address, no password.
    for secret in (token, "token_id", "secret=q", "utm=", EMAIL, PASSWORD):
        assert secret not in log


def test_text_stays_the_default(tmp_path, mailbox):
    server = Server(f"sqlite:///{tmp_path / 'text.sqlite'}", mail_port=mailbox.port,
                    log_dir=tmp_path, workers=1)
    with server:
        assert request("GET", server.url("/healthz"),
                       headers={"X-Request-ID": "text-req-1"}).status == 200
        assert wait_for(lambda: "text-req-1" in server.log())
    log = server.log()
    assert '"GET /healthz HTTP/1.1" 200' in log and "Listening at:" in log
    assert not [line for line in log.splitlines() if line.startswith("{")]
