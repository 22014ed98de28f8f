"""The jwt profile (seed 004): sign-up, simplejwt's token views, JWT claims and lifetimes."""

from __future__ import annotations

import base64
import json
import re
import time

import jwt as pyjwt
import pytest
import sqlalchemy as sa

from regapp.core.jwt_tokens import signing_key
from regapp.extensions import db
from regapp.models import User

SIGN_UP = "/api/sign-up/"
OBTAIN = "/api/token/"
REFRESH = "/api/token/refresh/"
ME = "/api/users/me"
# The document's example request.
JOHN = {
    "username": "johndoe",
    "email": "john@example.com",
    "password": "SecurePass123!",
    "first_name": "John",
    "last_name": "Doe",
    "number_phone": "5551234567",
}
MINIMAL = {"username": "jane", "email": "jane@example.com", "password": "Str0ng-passphrase"}
TOKEN_NOT_VALID = {"detail": "Token is invalid or expired", "code": "token_not_valid"}
NO_ACCOUNT = {"detail": "No active account found with the given credentials"}
# The document's example tokens start with this header: {"typ":"JWT","alg":"HS256"}.
SEED_HEADER = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9."


def claims_of(app, token) -> dict:
    return pyjwt.decode(token, signing_key(app.config["SECRET_KEY"]), algorithms=["HS256"])


def forge(app, **claims) -> str:
    """A token signed with the service's JWT key, with ``claims`` as given."""
    return pyjwt.encode(claims, signing_key(app.config["SECRET_KEY"]), algorithm="HS256")


def base_claims(user_id, token_type="refresh", lifetime=300, like=None) -> dict:
    """Good claims; a refresh token's ``fam``/``jti`` (and every ``ver``) are copied from
    the genuine token ``like``, whose family row is live."""
    now = int(time.time())
    out = {"token_type": token_type, "exp": now + lifetime, "iat": now,
           "jti": "0" * 32, "user_id": user_id, "ver": 0}
    if like is not None:
        genuine = pyjwt.decode(like, options={"verify_signature": False})
        out["ver"] = genuine["ver"]
        if token_type == "refresh":
            out.update(jti=genuine["jti"], fam=genuine["fam"])
    return out


def me(client, access):
    return client.get(ME, headers={"Authorization": f"Bearer {access}"})


def user_row(app, user_id) -> User:
    with app.app_context():
        return db.session.get(User, user_id)


def wait_for_next_second():
    """JWT ``iat`` has whole seconds; make the next event happen in a later one."""
    now = time.time()
    time.sleep(1 - now % 1 + 0.01)


# -- the document's examples ----------------------------------------------------


def test_sign_up_document_example(app, client):
    r = client.post(SIGN_UP, json=JOHN)
    assert r.status_code == 201
    assert r.mimetype == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    body = r.get_json()
    assert list(body) == ["refresh", "access", "user"]
    assert list(body["user"]) == ["id", "username", "email", "first_name", "last_name",
                                  "number_phone", "avatar"]
    user = body["user"]
    assert isinstance(user["id"], int)
    assert {k: v for k, v in user.items() if k != "id"} == {
        "username": "johndoe", "email": "john@example.com", "first_name": "John",
        "last_name": "Doe", "number_phone": "5551234567", "avatar": None}
    assert body["refresh"].startswith(SEED_HEADER) and body["access"].startswith(SEED_HEADER)
    assert "SecurePass123!" not in r.get_data(as_text=True)
    row = user_row(app, user["id"])
    assert row.phone == "5551234567" and row.first_name == "John" and row.last_name == "Doe"
    assert row.account_type == "customer" and row.is_email_confirmed is False
    assert "SecurePass123!" not in row.password_hash


def test_missing_fields_document_example(client):
    for kwargs in ({"json": {}}, {}, {"json": {"first_name": "John", "other": 1}},
                   {"data": {"last_name": "Doe"}}):
        r = client.post(SIGN_UP, **kwargs)
        assert r.status_code == 400
        assert r.mimetype == "application/json"
        assert r.get_json() == {"error": "Missing required fields."}


def test_validation_error_document_example(client):
    assert client.post(SIGN_UP, json=JOHN).status_code == 201
    r = client.post(SIGN_UP, json={"email": "john@example.com", "password": "Another-pass-99"})
    assert r.status_code == 400
    body = r.get_json()
    assert body == {"username": ["This field is required."],
                    "email": ["user with this email already exists."]}
    assert list(body) == ["username", "email"]


# -- bodies, defaults and validation ------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "urlencoded", "multipart"])
def test_sign_up_accepts_json_and_form(client, encoding):
    if encoding == "json":
        r = client.post(SIGN_UP, json=JOHN)
    elif encoding == "urlencoded":
        r = client.post(SIGN_UP, data=JOHN)
    else:
        r = client.post(SIGN_UP, data=JOHN, content_type="multipart/form-data")
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["user"]["number_phone"] == "5551234567"


def test_optional_fields_default(client):
    r = client.post(SIGN_UP, json=MINIMAL)
    assert r.status_code == 201
    user = r.get_json()["user"]
    assert (user["first_name"], user["last_name"], user["number_phone"], user["avatar"]) == (
        "", "", None, None)


def test_number_phone_may_be_null_and_has_ten_characters_at_most(client):
    r = client.post(SIGN_UP, json={**MINIMAL, "number_phone": None})
    assert r.status_code == 201 and r.get_json()["user"]["number_phone"] is None
    r = client.post(SIGN_UP, json={**JOHN, "number_phone": "12345678901"})
    assert r.status_code == 400
    assert r.get_json() == {"number_phone": ["Ensure this field has no more than 10 characters."]}


def test_unknown_and_privileged_fields_are_ignored(app, client):
    r = client.post(SIGN_UP, json={**MINIMAL, "id": 1, "account_type": "driver",
                                   "is_email_confirmed": True, "is_staff": True,
                                   "avatar": "http://evil.example/x.png", "user_id": 7})
    assert r.status_code == 201
    user = r.get_json()["user"]
    assert user["avatar"] is None
    row = user_row(app, user["id"])
    assert row.account_type == "customer" and row.is_email_confirmed is False
    assert row.avatar is None


@pytest.mark.parametrize("field", ["username", "email", "password", "first_name",
                                   "last_name", "number_phone"])
# JSON numbers are not wrong: DRF's CharField reads them as str() (test_django_parity.py).
@pytest.mark.parametrize("value", [True, False, ["a@example.com"], {"$ne": None}])
def test_wrong_types_are_400(client, field, value):
    r = client.post(SIGN_UP, json={**JOHN, field: value})
    assert r.status_code == 400
    # drf's catalog words every bad email, whatever its type, as Django's EmailField does.
    message = "Enter a valid email address." if field == "email" else "Not a valid string."
    assert r.get_json() == {field: [message]}


@pytest.mark.parametrize("field", ["username", "email", "password", "first_name", "last_name"])
def test_null_is_400(client, field):
    r = client.post(SIGN_UP, json={**JOHN, field: None})
    assert r.status_code == 400
    assert r.get_json() == {field: ["This field may not be null."]}


def test_blank_required_fields(client):
    r = client.post(SIGN_UP, json={"username": "", "email": " ", "password": ""})
    assert r.status_code == 400
    assert r.get_json() == {"username": ["This field may not be blank."],
                            "email": ["This field may not be blank."],
                            "password": ["This field may not be blank."]}


def test_some_fields_missing_is_per_field(client):
    r = client.post(SIGN_UP, json={"username": "bob"})
    assert r.status_code == 400
    assert r.get_json() == {"email": ["This field is required."],
                            "password": ["This field is required."]}


def test_invalid_email_and_username(client):
    r = client.post(SIGN_UP, json={**JOHN, "email": "a@b@c.com", "username": "john doe"})
    assert r.status_code == 400
    assert r.get_json() == {
        "username": ["Enter a valid username. This value may contain only letters, numbers, "
                     "and @/./+/-/_ characters."],
        "email": ["Enter a valid email address."]}


def test_duplicate_username_and_email(client):
    assert client.post(SIGN_UP, json=JOHN).status_code == 201
    r = client.post(SIGN_UP, json={**JOHN, "username": "JohnDoe"})
    assert r.status_code == 400
    assert r.get_json() == {"username": ["A user with that username already exists."],
                            "email": ["user with this email already exists."]}
    r = client.post(SIGN_UP, json={**MINIMAL, "username": "ＪＯＨＮＤＯＥ"})
    assert r.get_json() == {"username": ["A user with that username already exists."]}


@pytest.mark.parametrize("password, attrs, messages", [
    ("short", {}, ["This password is too short. It must contain at least 8 characters."]),
    ("12345678", {}, ["This password is too common.", "This password is entirely numeric."]),
    ("password", {}, ["This password is too common."]),
    ("janedoe1", {"username": "janedoe"}, ["The password is too similar to the username."]),
    ("jane@example", {"username": "zed"}, ["The password is too similar to the email."]),
])
def test_django_password_messages(client, password, attrs, messages):
    r = client.post(SIGN_UP, json={**MINIMAL, **attrs, "password": password})
    assert r.status_code == 400
    assert r.get_json() == {"password": messages}


def test_malformed_bodies(client):
    r = client.post(SIGN_UP, data='{"username":', content_type="application/json")
    assert r.status_code == 400 and r.get_json()["detail"].startswith("JSON parse error - ")
    r = client.post(SIGN_UP, json=[JOHN])
    assert r.status_code == 400
    assert r.get_json() == {"non_field_errors": [
        "Invalid data. Expected a dictionary, but got list."]}
    r = client.post(SIGN_UP, data="username=x", content_type="text/plain")
    assert r.status_code == 415
    assert r.get_json() == {"detail": 'Unsupported media type "text/plain" in request.'}
    r = client.get(SIGN_UP)
    assert r.status_code == 405 and r.get_json() == {"detail": 'Method "GET" not allowed.'}
    r = client.post(SIGN_UP, json={**JOHN, "first_name": "x" * 70_000})
    assert r.status_code == 413 and r.mimetype == "application/json"


# -- the tokens ---------------------------------------------------------------------


def test_claims_and_lifetimes(app, client):
    before = int(time.time())
    body = client.post(SIGN_UP, json=JOHN).get_json()
    after = int(time.time())
    user_id = body["user"]["id"]
    refresh, access = claims_of(app, body["refresh"]), claims_of(app, body["access"])
    for claims, kind, lifetime in ((refresh, "refresh", 86400), (access, "access", 300)):
        # simplejwt's claims, then the credential version (and the refresh family).
        assert list(claims) == ["token_type", "exp", "iat", "jti", "user_id", "ver",
                                *(["fam"] if kind == "refresh" else [])]
        assert claims["token_type"] == kind
        assert claims["user_id"] == user_id
        assert before <= claims["iat"] <= after
        assert claims["exp"] - claims["iat"] == lifetime
        assert re.fullmatch(r"[0-9a-f]{32}", claims["jti"])
    assert refresh["jti"] != access["jti"]
    assert pyjwt.get_unverified_header(body["access"]) == {"typ": "JWT", "alg": "HS256"}


@pytest.mark.config(JWT_ACCESS_LIFETIME=60, JWT_REFRESH_LIFETIME=3600)
def test_lifetimes_come_from_config(app, client):
    body = client.post(SIGN_UP, json=JOHN).get_json()
    refresh, access = claims_of(app, body["refresh"]), claims_of(app, body["access"])
    assert refresh["exp"] - refresh["iat"] == 3600
    assert access["exp"] - access["iat"] == 60
    new = claims_of(app, client.post(REFRESH, json={"refresh": body["refresh"]})
                    .get_json()["access"])
    assert new["exp"] - new["iat"] == 60


def test_tokens_are_not_signed_with_the_raw_secret_key(app, client):
    body = client.post(SIGN_UP, json=JOHN).get_json()
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(body["access"], app.config["SECRET_KEY"], algorithms=["HS256"])


def test_refresh_returns_a_new_access_token(app, client):
    body = client.post(SIGN_UP, json=JOHN).get_json()
    r = client.post(REFRESH, json={"refresh": body["refresh"]})
    assert r.status_code == 200 and r.mimetype == "application/json"
    # Rotation (issue 10): a new pair, like simplejwt with ROTATE_REFRESH_TOKENS.
    assert list(r.get_json()) == ["access", "refresh"]
    access = r.get_json()["access"]
    claims = claims_of(app, access)
    assert claims["token_type"] == "access"
    assert claims["jti"] != claims_of(app, body["access"])["jti"]
    assert me(client, access).get_json()["username"] == "johndoe"
    # Form bodies work too; the presented refresh token was rotated, so the new one is
    # the one that works (issue 10: refresh rotates).
    rotated = r.get_json()["refresh"]
    assert client.post(REFRESH, data={"refresh": rotated}).status_code == 200


def _none_alg(claims) -> str:
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'typ': 'JWT', 'alg': 'none'})}.{part(claims)}."


def _other_purpose_tokens(app, client, body, user_id, confirmation_token):
    refresh = body["refresh"]
    head, payload, sig = refresh.split(".")
    edited = base_claims(user_id + 1)
    edited_payload = base64.urlsafe_b64encode(
        json.dumps(edited).encode()).rstrip(b"=").decode()
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    return {
        "access token": body["access"],
        "garbage": "not-a-token",
        "truncated": refresh[:-4],
        "flipped signature": f"{head}.{payload}.{flipped}",
        "edited user_id": f"{head}.{edited_payload}.{sig}",
        "signature stripped": f"{head}.{payload}.",
        "alg none": _none_alg(base_claims(user_id)),
        "raw SECRET_KEY": pyjwt.encode(base_claims(user_id), app.config["SECRET_KEY"],
                                       algorithm="HS256"),
        "jsonapi seed style": pyjwt.encode(
            {"user_id": user_id, "exp": int(time.time()) + 300},
            app.config["SECRET_KEY"], algorithm="HS256"),
        "expired": forge(app, **{**base_claims(user_id), "exp": int(time.time()) - 1}),
        "missing exp": forge(app, **{k: v for k, v in base_claims(user_id).items()
                                     if k != "exp"}),
        "missing jti": forge(app, **{k: v for k, v in base_claims(user_id).items()
                                     if k != "jti"}),
        "string user_id": forge(app, **{**base_claims(user_id), "user_id": str(user_id)}),
        "unknown type": forge(app, **{**base_claims(user_id), "token_type": "sliding"}),
        "confirmation token": confirmation_token,
        "null": "null",
        "too long": refresh + "A" * 4096,
    }


def test_refresh_rejects_everything_but_a_good_refresh_token(app, client, last_confirmation):
    body = client.post(SIGN_UP, json=JOHN).get_json()
    user_id = body["user"]["id"]
    _, confirmation_token, _ = last_confirmation()
    assert client.post(REFRESH, json={"refresh": forge(
        app, **base_claims(user_id, like=body["refresh"]))}
                       ).status_code == 200  # the forging helper itself is right
    for name, token in _other_purpose_tokens(app, client, body, user_id,
                                             confirmation_token).items():
        r = client.post(REFRESH, json={"refresh": token})
        assert r.status_code == 401, name
        assert r.get_json() == TOKEN_NOT_VALID, name
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_refresh_field_errors(client):
    r = client.post(REFRESH, json={})
    assert r.status_code == 400 and r.get_json() == {"refresh": ["This field is required."]}
    r = client.post(REFRESH, json={"refresh": ""})
    assert r.get_json() == {"refresh": ["This field may not be blank."]}
    r = client.post(REFRESH, json={"refresh": True})
    assert r.get_json() == {"refresh": ["Not a valid string."]}
    r = client.post(REFRESH, json={"refresh": None})
    assert r.get_json() == {"refresh": ["This field may not be null."]}


@pytest.mark.config(JWT_ACCESS_LIFETIME=0)
def test_expired_access_token_is_rejected(client):
    body = client.post(SIGN_UP, json=JOHN).get_json()
    r = me(client, body["access"])
    assert r.status_code == 401 and r.get_json()["code"] == "token_not_valid"


def test_secret_key_rotation(app, client):
    old_key = app.config["SECRET_KEY"]
    body = client.post(SIGN_UP, json=JOHN).get_json()
    app.config["SECRET_KEY"] = "a-brand-new-secret-key-0123456789-abcdefghij"
    app.config["SECRET_KEY_FALLBACKS"] = [old_key]
    assert me(client, body["access"]).status_code == 200
    r = client.post(REFRESH, json={"refresh": body["refresh"]})
    assert r.status_code == 200
    new_access = r.get_json()["access"]
    claims_of(app, new_access)  # signed with the new key
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert me(client, body["access"]).status_code == 401
    assert client.post(REFRESH, json={"refresh": body["refresh"]}).status_code == 401
    assert me(client, new_access).status_code == 200


# -- POST /api/token/ ---------------------------------------------------------------


def test_obtain_pair_with_username_or_email(app, client):
    user_id = client.post(SIGN_UP, json=JOHN).get_json()["user"]["id"]
    for identifier in ("johndoe", "JohnDoe", "john@example.com", "JOHN@Example.com"):
        r = client.post(OBTAIN, json={"username": identifier, "password": JOHN["password"]})
        assert r.status_code == 200, identifier
        # The pair, then the device token every login answers (issue 10).
        assert list(r.get_json()) == ["refresh", "access", "device_token"]
        assert claims_of(app, r.get_json()["access"])["user_id"] == user_id
    r = client.post(OBTAIN, json={"email": "john@example.com", "password": JOHN["password"]})
    assert r.status_code == 200
    r = client.post(OBTAIN, data={"username": "johndoe", "password": JOHN["password"]})
    assert r.status_code == 200
    assert me(client, r.get_json()["access"]).get_json()["id"] == user_id


def test_obtain_pair_wrong_credentials(client):
    client.post(SIGN_UP, json=JOHN)
    for body in ({"username": "johndoe", "password": "wrong-password"},
                 {"username": "nobody", "password": JOHN["password"]},
                 {"email": "nobody@example.com", "password": JOHN["password"]},
                 {"username": "johndoe", "password": JOHN["password"] + " "},
                 {"username": "johndoe", "password": JOHN["password"].lower()}):
        r = client.post(OBTAIN, json=body)
        assert r.status_code == 401, body
        assert r.get_json() == NO_ACCOUNT
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_obtain_pair_field_errors(client):
    r = client.post(OBTAIN, json={})
    assert r.status_code == 400
    assert r.get_json() == {"username": ["This field is required."],
                            "password": ["This field is required."]}
    r = client.post(OBTAIN, json={"username": ["johndoe"], "password": True})
    assert r.get_json() == {"username": ["Not a valid string."],
                            "password": ["Not a valid string."]}


def test_login_rehashes_weaker_password_hashes(app, client):
    client.post(SIGN_UP, json=JOHN)
    app.config["ARGON2_TIME_COST"] = 2
    r = client.post(OBTAIN, json={"username": "johndoe", "password": JOHN["password"]})
    assert r.status_code == 200
    with app.app_context():
        stored = db.session.scalar(sa.select(User.password_hash))
    assert ",t=2," in stored
    r = client.post(OBTAIN, json={"username": "johndoe", "password": JOHN["password"]})
    assert r.status_code == 200


# -- confirmation and account pre-hijacking ------------------------------------------


def test_email_arrives_and_its_link_confirms(app, client, last_confirmation):
    user_id = client.post(SIGN_UP, json=JOHN).get_json()["user"]["id"]
    link, token, code = last_confirmation("john@example.com")
    assert client.get("/api/confirm-email/", query_string={"token_id": token}).status_code == 200
    assert user_row(app, user_id).is_email_confirmed is True


def test_email_arrives_and_its_code_confirms(app, client, last_confirmation):
    user_id = client.post(SIGN_UP, json=JOHN).get_json()["user"]["id"]
    _, _, code = last_confirmation("john@example.com")
    r = client.post("/api/users/validation", json={"email": "john@example.com", "token": code})
    assert r.status_code in (200, 201)  # the laravel profile's success
    assert user_row(app, user_id).is_email_confirmed is True


def test_tokens_issued_before_confirmation_die_with_it(app, client, last_confirmation):
    body = client.post(SIGN_UP, json=JOHN).get_json()
    assert me(client, body["access"]).get_json()["is_email_confirmed"] is False
    assert client.post(REFRESH, json={"refresh": body["refresh"]}).status_code == 200
    _, token, _ = last_confirmation()
    wait_for_next_second()
    assert client.get("/api/confirm-email/", query_string={"token_id": token}).status_code == 200

    r = me(client, body["access"])
    assert r.status_code == 401 and r.get_json()["code"] == "token_not_valid"
    r = client.post(REFRESH, json={"refresh": body["refresh"]})
    assert r.status_code == 401 and r.get_json() == TOKEN_NOT_VALID

    # The owner logs in again; tokens from the confirmation's own second work too.
    r = client.post(OBTAIN, json={"username": "johndoe", "password": JOHN["password"]})
    fresh = r.get_json()
    assert me(client, fresh["access"]).get_json()["is_email_confirmed"] is True
    assert client.post(REFRESH, json={"refresh": fresh["refresh"]}).status_code == 200


def test_tokens_of_deleted_accounts_are_dead(app, client, runner):
    body = client.post(SIGN_UP, json=JOHN).get_json()
    old_id = body["user"]["id"]
    result = runner.invoke(args=["users", "delete", str(old_id), "--yes"])
    assert result.exit_code == 0, result.output
    assert me(client, body["access"]).status_code == 401
    assert client.post(REFRESH, json={"refresh": body["refresh"]}).status_code == 401
    # The address registers again and gets a new id: the old tokens stay dead.
    new = client.post(SIGN_UP, json=JOHN).get_json()
    assert new["user"]["id"] != old_id
    assert me(client, body["access"]).status_code == 401
    assert me(client, new["access"]).status_code == 200


@pytest.mark.config(RATELIMIT_ENABLED=True, RATELIMIT_TOKEN="2/minute")
def test_token_views_are_throttled_in_drf_format(client):
    client.post(SIGN_UP, json=JOHN)
    login = {"username": "johndoe", "password": "wrong-password"}
    assert [client.post(OBTAIN, json=login).status_code for _ in range(2)] == [401, 401]
    r = client.post(OBTAIN, json={**login, "password": JOHN["password"]})
    assert r.status_code == 429
    retry_after = int(r.headers["Retry-After"])
    assert r.get_json() == {
        "detail": f"Request was throttled. Expected available in {retry_after} seconds."}
