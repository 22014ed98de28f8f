"""SECURITY.md E9: unhandled errors and unknown routes; the request log and its request id.

Already proved elsewhere (item -> test), not repeated here:
- /api/nope (and other unknown /api/ paths) -> JSON 404:
  tests/test_api_errors.py::test_unknown_api_path_is_json_404
- GET/PUT/PATCH/DELETE /api/register/ -> drf 405 with Allow:
  tests/test_api_errors.py::test_wrong_method_is_json_405_with_allow
- forced exception on /api/register/ -> generic drf 500, nothing leaked:
  tests/test_api_errors.py::test_unexpected_error_is_a_plain_json_500
- secrets in logs and error bodies (F8): tests/security/test_f_config.py
"""

from __future__ import annotations

import logging
import re

import pytest

from regapp.auth.profiles import common
from regapp.core import confirmation
from regapp.core import jwt_tokens
from regapp.core import registration
from tests.profile_matrix import SERVER_ERROR

PASSWORD = "Str0ng-passphrase"
CANARY = "canary-7f3e1c"
RID_RE = re.compile(r"[0-9a-f]{32}\Z")
JSON_TYPES = {"application/json", "application/vnd.api+json"}

REGISTER = {
    "drf": ("/api/register/", {"username": "ann", "email": "ann@x.io", "password": PASSWORD}),
    "envelope": ("/api/v1/user/register",
                 {"username": "ann", "email_address": "ann@x.io", "password": PASSWORD}),
    "laravel": ("/api/users/register",
                {"first_name": "Ann", "last_name": "Lee", "email": "ann@x.io",
                 "postal_code": "1234 AB", "password": PASSWORD}),
    "jsonapi": ("/api/users/registration",
                {"email": "ann@x.io", "password": PASSWORD, "password_confirmation": PASSWORD}),
    "jwt": ("/api/sign-up/", {"username": "ann", "email": "ann@x.io", "password": PASSWORD}),
}


def method_not_allowed(profile: str, method: str) -> dict:
    """The 405 body a client of ``profile`` sees for ``method`` on its register route."""
    return {
        "drf": {"detail": f'Method "{method}" not allowed.'},
        "envelope": {"results": None, "message": f"The {method} method is not allowed for "
                     "this URL.", "error": "Method Not Allowed", "error_code": -405,
                     "status": 405},
        "laravel": {"message": f"The {method} method is not supported for this route. "
                               "Supported methods: POST."},
        "jsonapi": {"errors": [{"status": "405", "title": "Method not allowed",
                                "detail": "The method is not allowed for the requested URL.",
                                "source": {}}], "jsonapi": {"version": "1.0"}},
        "jwt": {"detail": f'Method "{method}" not allowed.'},
    }[profile]


def boom(*args, **kwargs):
    raise RuntimeError(f"boom {CANARY}")


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.INFO)
    return caplog


def request_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "regapp.request"]


def assert_generic_json_500(response, rid_logs):
    assert response.status_code == 500
    assert response.mimetype in JSON_TYPES
    assert CANARY.encode() not in response.data and b"Traceback" not in response.data
    rid = response.headers["X-Request-ID"]
    assert RID_RE.match(rid)
    # The traceback is logged, tied to the id the client was given.
    errors = [r for r in rid_logs.records if r.levelno >= logging.ERROR and r.exc_info]
    assert len(errors) == 1 and f"request_id={rid}" in errors[0].getMessage()
    return rid


# -- forced exceptions: the profile's own 500, generic, request id logged -----------------

@pytest.mark.parametrize("profile", list(REGISTER))
def test_forced_error_in_a_registration_view(client, logs, monkeypatch, profile):
    monkeypatch.setattr(registration, "register", boom)
    path, body = REGISTER[profile]
    r = client.post(path, json=body)
    rid = assert_generic_json_500(r, logs)
    assert r.get_json() == SERVER_ERROR[profile]
    assert f"POST {path} 500" in "\n".join(request_lines(logs))
    assert any(rid in line for line in request_lines(logs))


@pytest.mark.parametrize(("method", "path", "kwargs", "profile"), [
    ("GET", "/api/confirm-email/", {"query_string": {"token_id": "a.b.c"}}, "drf"),
    ("GET", "/api/users/verification", {"query_string": {"email_token": "a.b.c"}}, "jsonapi"),
    ("POST", "/api/users/validation", {"json": {"email": "ann@x.io", "token": "123456"}},
     "laravel"),
    ("POST", "/api/resend-confirmation/", {"json": {"email": "ann@x.io"}}, "drf"),
    ("POST", "/api/token/refresh/", {"json": {"refresh": "a.b.c"}}, "jwt"),
    ("GET", "/api/users/me", {"headers": {"Authorization": "Bearer a.b.c"}}, "drf"),
])
def test_forced_error_in_other_api_views(client, logs, monkeypatch, method, path, kwargs,
                                         profile):
    for name in ("confirm", "confirm_code", "user_for_token", "resend_confirmation"):
        monkeypatch.setattr(confirmation, name, boom)
    monkeypatch.setattr(jwt_tokens, "rotate", boom)
    monkeypatch.setattr(common, "current_user", boom)
    r = client.open(path, method=method, **kwargs)
    assert_generic_json_500(r, logs)
    assert r.get_json() == SERVER_ERROR[profile]
    assert "a.b.c" not in logs.text  # the query string never reaches the log


@pytest.mark.config(PROPAGATE_EXCEPTIONS=False)  # as in production: no test-time re-raise
def test_forced_error_in_the_page_is_a_plain_html_500(client, logs, monkeypatch):
    monkeypatch.setattr(confirmation, "user_for_token", boom)
    r = client.get("/confirm-email/", query_string={"token_id": "a.b.c"})
    assert r.status_code == 500 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert "Internal Server Error" in html
    assert CANARY not in html and "Traceback" not in html and "a.b.c" not in html
    rid = r.headers["X-Request-ID"]
    assert f"unhandled RuntimeError on GET /confirm-email/ request_id={rid}" in logs.text
    assert "a.b.c" not in logs.text


# -- wrong methods: 405 with Allow in every profile's format -------------------------------

@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("profile", list(REGISTER))
def test_wrong_method_on_every_registration_route(client, profile, method):
    path, _ = REGISTER[profile]
    r = client.open(path, method=method)
    assert r.status_code == 405 and r.mimetype in JSON_TYPES
    assert r.get_json() == method_not_allowed(profile, method)
    assert {m.strip() for m in r.headers["Allow"].split(",")} == {"POST", "OPTIONS"}


# -- TRACE is never supported, never echoes -------------------------------------------------

@pytest.mark.parametrize("method", ["TRACE", "TRACK"])
@pytest.mark.parametrize("path", ["/", "/api/register/", "/api/users/verification",
                                  "/api/nope", "/confirm-email/", "/nope"])
def test_trace_is_405_and_echoes_nothing(client, method, path):
    r = client.open(path, method=method, data=CANARY,
                    headers={"X-Canary": CANARY, "Cookie": f"session={CANARY}",
                             "Authorization": f"Bearer {CANARY}"})
    assert r.status_code == 405
    assert "Allow" in r.headers and "TRACE" not in r.headers["Allow"]
    assert CANARY.encode() not in r.data
    assert r.mimetype != "message/http"
    if path.startswith("/api/"):
        assert r.mimetype in JSON_TYPES


def test_trace_on_a_route_lists_its_methods(client):
    r = client.open("/api/register/", method="TRACE")
    assert r.get_json() == {"detail": 'Method "TRACE" not allowed.'}
    assert {m.strip() for m in r.headers["Allow"].split(",")} == {"POST", "OPTIONS"}


# -- the request log -----------------------------------------------------------------------

def test_one_line_per_request_with_id_status_and_duration(client, logs):
    r = client.get("/api/confirm-email/", query_string={"token_id": "secret.token.value"})
    assert r.status_code == 400
    rid = r.headers["X-Request-ID"]
    [line] = request_lines(logs)
    assert re.fullmatch(rf"GET /api/confirm-email/ 400 \d+\.\dms request_id={rid}", line)
    assert "secret.token.value" not in logs.text and "token_id" not in logs.text


def test_request_ids_are_fresh_unless_the_client_sends_a_sane_one(client, logs):
    # Issue 7: an incoming X-Request-ID of 1-64 [A-Za-z0-9_-] is honoured (a proxy's id
    # ties its log to ours); anything else is replaced, never echoed or logged.
    r = client.get("/api/nope", headers={"X-Request-ID": CANARY})
    assert r.headers["X-Request-ID"] == CANARY
    assert f"request_id={CANARY}" in request_lines(logs)[0]
    bad = ["x" * 65, "a b", "a\x1bb", "ab/../c", "é", "", "a,b", f"{CANARY}\u2028x"]
    ids = {client.get("/api/nope", headers={"X-Request-ID": value}).headers["X-Request-ID"]
           for value in bad} | {client.get("/api/nope").headers["X-Request-ID"]
                                for _ in range(3)}
    assert len(ids) == len(bad) + 3
    assert all(RID_RE.match(rid) for rid in ids)


@pytest.mark.parametrize("raw", ["/api/nope%0d%0aGET /forged 200", "/nope%1b[31mred%00",
                                 "/api/%E2%80%A8x%0a"])
def test_control_characters_in_the_path_are_escaped(client, logs, raw):
    client.get(raw)
    [line] = request_lines(logs)
    assert line.isprintable() and line.isascii()
    assert "\\n" in line or "\\x1b" in line or "\\u2028" in line
