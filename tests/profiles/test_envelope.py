"""The envelope profile (seed 001): ``{results, message, error, error_code, status}``."""

from __future__ import annotations

import hashlib
import re

import pytest
import sqlalchemy as sa

from regapp.core import registration
from regapp.extensions import db
from regapp.models import User

REGISTER = "/api/v1/user/register"
ME = "/api/users/me"
# The document's example request (it sends "email", its table says "email_address").
TIM = {"username": "tim1990", "email": "tim.smith12@aol.com", "password": "il1kep1es"}
ENVELOPE_KEYS = ["results", "message", "error", "error_code", "status"]


def register(client, body=None, **kwargs):
    return client.post(REGISTER, json=TIM if body is None else body, **kwargs)


def assert_failure(r, error_code, status=400) -> dict:
    """An envelope failure: results null, error text, the code, status = HTTP status."""
    assert r.status_code == status
    assert r.mimetype == "application/json"
    body = r.get_json()
    assert list(body) == ENVELOPE_KEYS
    assert body["results"] is None
    assert body["error_code"] == error_code
    assert body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["error"], str) and body["error"]
    return body


def rows(app) -> list[User]:
    with app.app_context():
        return list(db.session.scalars(sa.select(User).order_by(User.id)))


# -- the document's example ------------------------------------------------------------


def test_document_example(app, client):
    r = register(client)
    assert r.status_code == 201
    assert r.mimetype == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    body = r.get_json()
    assert list(body) == ENVELOPE_KEYS
    assert (body["message"], body["error"], body["error_code"], body["status"]) == (
        "New user successfully registered", None, 0, 201)
    results = body["results"]
    assert list(results) == ["id", "username", "email", "email_address", "api_token",
                             "account_type"]
    assert isinstance(results["id"], int)
    assert results["username"] == "tim1990"
    assert results["email"] == results["email_address"] == "tim.smith12@aol.com"
    assert results["account_type"] == "customer"
    token = results["api_token"]
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert "il1kep1es" not in r.get_data(as_text=True)
    [row] = rows(app)
    # Shown once, stored only as a hash.
    assert row.api_token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(row.__dict__)
    assert row.account_type == "customer" and row.is_email_confirmed is False


def test_email_address_key_and_precedence(app, client, deliver):
    r = register(client, {"username": "a1", "email_address": "a1@example.com",
                          "password": "Str0ng-passphrase"})
    assert r.status_code == 201 and r.get_json()["results"]["email_address"] == "a1@example.com"
    # Both keys: email_address wins, and that is the address that gets the mail.
    r = register(client, {"username": "b2", "email": "ignored@example.com",
                          "email_address": "b2@example.com", "password": "Str0ng-passphrase"})
    assert r.get_json()["results"]["email"] == "b2@example.com"
    assert sorted(m["To"] for m in deliver()) == ["a1@example.com", "b2@example.com"]


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded",
                                          "multipart/form-data"])
def test_form_bodies(client, content_type):
    r = client.post(REGISTER, data=TIM, content_type=content_type)
    assert r.status_code == 201
    assert r.get_json()["results"]["username"] == "tim1990"


def test_account_type_in_body_is_ignored(app, client):
    r = register(client, {**TIM, "account_type": "driver", "is_email_confirmed": True,
                          "api_token": "0" * 32, "id": 1})
    assert r.status_code == 201
    results = r.get_json()["results"]
    assert results["account_type"] == "customer"
    assert results["api_token"] != "0" * 32
    [row] = rows(app)
    assert row.account_type == "customer" and row.is_email_confirmed is False


# -- the document's error codes ---------------------------------------------------------


def test_username_taken_is_minus_1(client):
    register(client)
    for username in ("tim1990", "TIM1990", "ｔｉｍ１９９０"):
        body = assert_failure(register(client, {**TIM, "username": username,
                                                "email": "other@example.com"}), -1)
        assert body["message"] == "Username already exists for a different account."


def test_email_taken_is_minus_2(client):
    register(client)
    body = assert_failure(register(client, {**TIM, "username": "other",
                                            "email": "Tim.Smith12@AOL.com"}), -2)
    assert body["message"] == "Email address already used to register an account."


def test_both_taken_reports_both(client):
    register(client)
    body = assert_failure(register(client), -1)
    assert "Username already exists" in body["message"]
    assert "Email address already used" in body["message"]


@pytest.mark.parametrize("password, text", [
    ("short", "This password is too short. It must contain at least 8 characters."),
    ("password", "This password is too common."),
    ("12345678", "This password is entirely numeric."),
    ("tim1990x", "The password is too similar to the username."),
    ("x" * 1025, "This password is too long. It must contain at most 1024 characters."),
])
def test_weak_password_is_minus_3(app, client, password, text):
    body = assert_failure(register(client, {**TIM, "password": password}), -3)
    assert text in body["message"]
    assert body["message"].startswith("Password invalid: ")
    assert rows(app) == []


@pytest.mark.parametrize("missing", ["username", "email", "password"])
def test_missing_attribute_is_minus_4(client, missing):
    body = assert_failure(register(client, {k: v for k, v in TIM.items() if k != missing}), -4)
    wire = "email_address" if missing == "email" else missing
    assert body["message"] == f"Missing attributes needed for registering: {wire}."


@pytest.mark.parametrize("value", [None, "", "   "])
def test_null_or_blank_is_minus_4(client, value):
    body = assert_failure(register(client, {**TIM, "username": value}), -4)
    assert "username" in body["message"]


def test_empty_body_is_minus_4(client):
    for kwargs in ({"json": {}}, {"data": {}}):
        body = assert_failure(client.post(REGISTER, **kwargs), -4)
        assert body["message"] == ("Missing attributes needed for registering: "
                                   "username, email_address, password.")
    assert_failure(client.post(REGISTER), -4)


# -- the codes regapp adds (module docstring) -------------------------------------------


@pytest.mark.parametrize("field", ["username", "email", "password"])
@pytest.mark.parametrize("value", [12345678, 1.5, True, ["x@example.com"], {"$ne": None}])
def test_wrong_types_are_minus_5(app, client, field, value):
    body = assert_failure(register(client, {**TIM, field: value}), -5)
    assert body["error"] == "Invalid attributes"
    assert rows(app) == []


@pytest.mark.parametrize("field, value", [
    ("email", "a@b@c.com"),
    ("email", "user@x.com\r\nBcc: v@evil.io"),
    ("email", "a" * 250 + "@x.com"),
    ("username", "tim 1990"),
    ("username", "tim\u200b1990"),
    ("username", "a" * 151),
    ("username", "a\x00b"),
])
def test_invalid_values_are_minus_5(client, field, value):
    assert_failure(register(client, {**TIM, field: value}), -5)


def test_missing_wins_over_invalid(client):
    body = assert_failure(register(client, {"username": 5, "password": "Str0ng-passphrase"}), -4)
    assert "email_address" in body["message"] and "username" in body["message"]


@pytest.mark.parametrize("raw", ['{"username":', "[1, 2]", "null", '"x"', "12", "\xff"])
def test_malformed_body_is_minus_6(client, raw):
    body = assert_failure(client.post(REGISTER, data=raw, content_type="application/json"), -6)
    assert body["error"] == "Malformed request body"


# -- HTTP-level failures under /api/v1/ ---------------------------------------------------


def test_http_errors_are_enveloped(client):
    assert_failure(client.get("/api/v1/nope"), -404, 404)
    assert_failure(client.get("/api/v1/"), -404, 404)
    r = client.get(REGISTER)
    body = assert_failure(r, -405, 405)
    assert body["error"] == "Method Not Allowed" and "GET" in body["message"]
    assert "POST" in r.headers["Allow"]
    assert_failure(client.post(REGISTER, data="x", content_type="text/plain"), -415, 415)
    assert_failure(client.post(REGISTER, data="<a/>", content_type="application/xml"), -415, 415)
    assert_failure(client.post(REGISTER, json={**TIM, "pad": "x" * 70_000}), -413, 413)


@pytest.mark.config(RATELIMIT_ENABLED=True, RATELIMIT_REGISTRATION="1/minute")
def test_rate_limit_is_enveloped(client):
    assert register(client).status_code == 201
    r = register(client, {**TIM, "username": "other", "email": "other@example.com"})
    assert_failure(r, -429, 429)
    assert int(r.headers["Retry-After"]) > 0


def test_server_error_is_enveloped(client, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("a bug with a secret: il1kep1es")

    monkeypatch.setattr(registration, "register", boom)
    r = register(client)
    assert_failure(r, -500, 500)
    assert "il1kep1es" not in r.get_data(as_text=True)


def test_database_down_is_enveloped(client, monkeypatch):
    def down(*args, **kwargs):
        raise sa.exc.OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(registration, "register", down)
    r = register(client)
    assert_failure(r, -503, 503)
    assert int(r.headers["Retry-After"]) > 0


# -- confirmation, the api_token and pre-hijacking ----------------------------------------


def test_email_arrives_and_its_link_confirms(app, client, last_confirmation):
    register(client)
    link, token, code = last_confirmation("tim.smith12@aol.com")
    assert link.endswith(token) and len(code) == 6
    assert client.get("/api/confirm-email/", query_string={"token_id": token}).status_code == 200
    assert rows(app)[0].is_email_confirmed is True


def test_email_arrives_and_its_code_confirms(app, client, last_confirmation):
    register(client)
    _, _, code = last_confirmation("tim.smith12@aol.com")
    r = client.post("/api/users/validation", json={"email": TIM["email"], "token": code})
    assert r.status_code in (200, 201)  # the laravel profile's success
    assert rows(app)[0].is_email_confirmed is True


def test_api_token_works_until_confirmation(app, client, last_confirmation):
    token = register(client).get_json()["results"]["api_token"]
    r = client.get(ME, headers={"Authorization": f"Token {token}"})
    assert r.status_code == 200
    assert r.get_json()["username"] == "tim1990"
    assert r.get_json()["is_email_confirmed"] is False

    _, confirm_token, _ = last_confirmation()
    assert client.get("/api/confirm-email/",
                      query_string={"token_id": confirm_token}).status_code == 200
    r = client.get(ME, headers={"Authorization": f"Token {token}"})
    assert r.status_code == 401
    assert r.get_json() == {"detail": "Invalid token."}
    assert rows(app)[0].api_token_hash is None
    # The owner signs in with the password instead.
    r = client.post("/api/token/", json={"email": TIM["email"], "password": TIM["password"]})
    assert r.status_code == 200


def test_api_token_is_not_a_confirmation_token(app, client):
    token = register(client).get_json()["results"]["api_token"]
    assert client.get("/api/confirm-email/", query_string={"token_id": token}).status_code == 400
    assert rows(app)[0].is_email_confirmed is False


def test_api_tokens_of_deleted_accounts_are_dead(client, runner):
    results = register(client).get_json()["results"]
    result = runner.invoke(args=["users", "delete", str(results["id"]), "--yes"])
    assert result.exit_code == 0, result.output
    r = client.get(ME, headers={"Authorization": f"Token {results['api_token']}"})
    assert r.status_code == 401
