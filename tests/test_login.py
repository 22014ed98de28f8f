"""Issue 10: login for every deployment, rotating refresh tokens, logout, and login
throttling that an attacker can't turn against the owner."""

from __future__ import annotations

import jwt as pyjwt
import pytest

from tests.conftest import PASSWORD
from tests.smtp import reset

NO_ACCOUNT = {"detail": "No active account found with the given credentials"}
NOT_VALID = {"detail": "Token is invalid or expired", "code": "token_not_valid"}


def login(client, ident, password=PASSWORD, field="email", **extra):
    return client.post("/api/login/", json={field: ident, "password": password, **extra})


def refresh(client, token):
    return client.post("/api/token/refresh/", json={"refresh": token})


def me(client, access):
    return client.get("/api/users/me", headers={"Authorization": f"Bearer {access}"})


def test_login_by_email_or_username(client, make_user):
    make_user("alice")
    for field, ident in (("email", "ALICE@x.io"), ("username", "Alice"),
                         ("username", "alice@x.io")):
        r = login(client, ident, field=field)
        assert r.status_code == 200, (field, ident)
        body = r.get_json()
        assert list(body) == ["refresh", "access", "device_token"]
        assert me(client, body["access"]).get_json()["username"] == "alice"
    r = login(client, "alice", "wrong-password", field="username")
    assert (r.status_code, r.get_json()) == (401, NO_ACCOUNT)
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert login(client, "nobody@x.io").get_json() == NO_ACCOUNT
    r = client.post("/api/login/", json={"password": PASSWORD})
    assert (r.status_code, r.get_json()) == (
        400, {"non_field_errors": ['Must include "email" or "username".']})
    r = client.post("/api/login/", json={"email": "alice@x.io"})
    assert (r.status_code, r.get_json()) == (400, {"password": ["This field is required."]})


@pytest.mark.config(REGAPP_PROFILES=["drf"])
def test_shared_routes_exist_whatever_profiles_are_enabled(client, make_user):
    make_user("alice")
    body = login(client, "alice@x.io").get_json()
    assert refresh(client, body["refresh"]).status_code == 200
    assert client.post("/api/password-reset/", json={"email": "a@x.io"}).status_code == 202
    assert client.post("/api/logout/", json={"refresh": "x.y.z"}).status_code == 401
    assert client.post("/api/token/", json={}).status_code == 404  # the jwt profile's own


def test_an_at_sign_means_an_email_only(client, make_user):
    # A username that looks like someone else's address never matches that address,
    # and never stops its owner signing up.
    make_user("bob@x.io", "mallory@x.io", password="Mallory-secret-9")
    make_user("bob", "bob@x.io")
    assert login(client, "bob@x.io", "Mallory-secret-9", field="username").status_code == 401
    r = login(client, "bob@x.io", field="username")
    assert r.status_code == 200
    assert me(client, r.get_json()["access"]).get_json()["username"] == "bob"


def test_refresh_rotates_and_reuse_revokes_that_family_only(app, client, make_user):
    make_user("alice")
    phone = login(client, "alice@x.io").get_json()
    laptop = login(client, "alice@x.io").get_json()
    r = refresh(client, phone["refresh"])
    assert r.status_code == 200 and list(r.get_json()) == ["access", "refresh"]
    rotated = r.get_json()["refresh"]
    claims = pyjwt.decode(rotated, options={"verify_signature": False})
    assert claims["fam"] == pyjwt.decode(phone["refresh"],
                                         options={"verify_signature": False})["fam"]
    # Presenting the rotated-away token again (a thief, or a replay) is refused...
    assert (refresh(client, phone["refresh"]).status_code,
            refresh(client, phone["refresh"]).get_json()) == (401, NOT_VALID)
    # ... and kills the whole family, including the newest token of it,
    assert refresh(client, rotated).status_code == 401
    # but not the account's other logins.
    assert refresh(client, laptop["refresh"]).status_code == 200


def test_logout_revokes_that_family_only(client, make_user):
    make_user("alice")
    phone = login(client, "alice@x.io").get_json()
    laptop = login(client, "alice@x.io").get_json()
    r = client.post("/api/logout/", json={"refresh": phone["refresh"]})
    assert (r.status_code, r.get_json()) == (200, {})
    assert refresh(client, phone["refresh"]).status_code == 401
    r = client.post("/api/logout/", json={"refresh": phone["refresh"]})
    assert (r.status_code, r.get_json()) == (401, NOT_VALID)
    assert refresh(client, laptop["refresh"]).status_code == 200
    for bad in ("garbage", laptop["access"]):
        r = client.post("/api/logout/", json={"refresh": bad})
        assert (r.status_code, r.get_json()) == (401, NOT_VALID)
    r = client.post("/api/logout/", json={})
    assert (r.status_code, r.get_json()) == (400, {"refresh": ["This field is required."]})


def test_envelope_login(client):
    r = client.post("/api/v1/user/register", json={
        "username": "ann", "email_address": "ann@x.io", "password": PASSWORD})
    first = r.get_json()["results"]["api_token"]
    for body in ({"username": "ann"}, {"email_address": "ANN@x.io"}, {"email": "ann@x.io"}):
        r = client.post("/api/v1/user/login", json={**body, "password": PASSWORD})
        assert r.status_code == 200, body
        env = r.get_json()
        assert (env["message"], env["error"], env["error_code"], env["status"]) == (
            "User successfully logged in", None, 0, 200)
        results = env["results"]
        assert results["username"] == "ann" and results["email_address"] == "ann@x.io"
        assert results["api_token"] != first and results["device_token"]
        token = results["api_token"]
        r = client.get("/api/users/me", headers={"Authorization": f"Token {token}"})
        assert r.status_code == 200
    # Each login's api_token replaces the one before.
    r = client.get("/api/users/me", headers={"Authorization": f"Token {first}"})
    assert r.status_code == 401
    r = client.post("/api/v1/user/login", json={"username": "ann", "password": "wrong-one"})
    env = r.get_json()
    assert r.status_code == 401
    assert (env["results"], env["error_code"], env["status"]) == (None, -401, 401)
    r = client.post("/api/v1/user/login", json={"password": PASSWORD})
    assert (r.status_code, r.get_json()["error_code"]) == (400, -4)
    r = client.post("/api/v1/user/login", json={"username": "ann"})
    assert (r.status_code, r.get_json()["error_code"], r.get_json()["message"]) == (
        400, -4, "Missing attributes needed for logging in: password.")
    r = client.post("/api/v1/user/login", json={"email_address": "ann@x.io"})
    assert r.get_json()["message"] == "Missing attributes needed for logging in: password."
    r = client.post("/api/v1/user/login", json={"username": ["ann"], "password": PASSWORD})
    assert (r.status_code, r.get_json()["error_code"]) == (400, -5)


def test_envelope_api_token_from_before_confirmation_dies_and_login_gives_a_new_one(
        client, last_confirmation):
    r = client.post("/api/v1/user/register", json={
        "username": "ann", "email_address": "ann@x.io", "password": PASSWORD})
    early = r.get_json()["results"]["api_token"]
    _, token, _ = last_confirmation()
    assert client.post("/confirm-email/", data={"token_id": token}).status_code == 200
    assert client.get("/api/users/me",
                      headers={"Authorization": f"Token {early}"}).status_code == 401
    fresh = client.post("/api/v1/user/login", json={"username": "ann", "password": PASSWORD}
                        ).get_json()["results"]["api_token"]
    r = client.get("/api/users/me", headers={"Authorization": f"Token {fresh}"})
    assert r.status_code == 200 and r.get_json()["is_email_confirmed"] is True


# -- the per-account lock -------------------------------------------------------------------

def hammer(client, variants, count):
    """``count`` wrong passwords spread over ``variants`` of the identifier."""
    for i in range(count):
        r = login(client, variants[i % len(variants)], "wrong-password")
        assert (r.status_code, r.get_json()) == (401, NO_ACCOUNT)


def test_lock_after_100_wrong_passwords_spares_known_devices(app, client, make_user):
    assert app.config["LOGIN_LOCK_THRESHOLD"] == 100
    make_user("victim", "victim@x.io")
    device = login(client, "victim@x.io").get_json()["device_token"]
    # Case, spaces and invisible characters all name the same account: one count.
    hammer(client, ["victim@x.io", "VICTIM@x.io", " victim@x.io", "victim@x\u034f.io",
                    "victim@x.io\ufe0f"], 99)
    assert login(client, "victim@x.io").status_code == 200  # 99: not locked yet
    hammer(client, ["victim@x.io"], 1)
    # Locked: the right password without a device token is answered like a wrong one,
    for ident, field in (("victim@x.io", "email"), ("victim", "username")):
        r = login(client, ident, field=field)
        assert (r.status_code, r.get_json()) == (401, NO_ACCOUNT)
    r = client.post("/api/token/", json={"username": "victim", "password": PASSWORD})
    assert r.status_code == 401
    assert login(client, "victim@x.io", device_token="forged").status_code == 401
    # and a known device still gets in, on every login route.
    assert login(client, "victim@x.io", device_token=device).status_code == 200
    r = client.post("/api/token/", json={"username": "victim", "password": PASSWORD,
                                         "device_token": device})
    assert r.status_code == 200
    # Another account's device token is no key to this one.
    make_user("other", "other@x.io")
    other = login(client, "other@x.io").get_json()["device_token"]
    assert login(client, "victim@x.io", device_token=other).status_code == 401


def test_an_unresolvable_spelling_never_reaches_the_account(client, make_user):
    make_user("victim", "victim@x.io")
    # U+3002 and fullwidth dots are no address to the normaliser registration uses,
    # so they match no account: refused, and nothing counted against the owner.
    for ident in ("victim@x\u3002io", "victim@x\uff0eio"):
        assert login(client, ident).get_json() == NO_ACCOUNT
    assert login(client, "victim@x.io").status_code == 200


@pytest.mark.config(LOGIN_LOCK_THRESHOLD=3)
def test_unknown_identifiers_are_counted_and_answered_alike(client):
    answers = {(r.status_code, r.get_data()) for r in
               (login(client, "ghost@x.io", "wrong-password") for _ in range(5))}
    assert answers == {(401, b'{"detail":"No active account found with the given '
                             b'credentials"}\n')}


@pytest.mark.config(LOGIN_LOCK_THRESHOLD=3)
def test_a_reset_always_works_and_clears_the_lock(client, make_user, deliver):
    make_user("victim", "victim@x.io")
    hammer(client, ["victim@x.io"], 3)
    assert login(client, "victim@x.io").status_code == 401
    assert client.post("/api/password-reset/", json={"email": "victim@x.io"}
                       ).status_code == 202
    _, token, _ = reset(deliver()[-1])
    r = client.post("/api/password-reset/confirm/",
                    json={"token": token, "new_password": "Brand-new-secret-3"})
    assert r.status_code == 200
    assert login(client, "victim@x.io", "Brand-new-secret-3").status_code == 200
    assert login(client, "victim@x.io").status_code == 401  # the old password is gone
