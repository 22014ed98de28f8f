"""SECURITY.md B10 (the jwt profile's tokens) and B13 (account pre-hijacking).

Already proven elsewhere (item -> test), not repeated here. J = tests/profiles/test_jwt.py.
- B10 claims token_type/exp/iat/jti/user_id, header typ + HS256: J::test_claims_and_lifetimes
- B10 at /api/token/refresh/ (alg none, user_id edited, signature stripped or flipped,
  expired, missing exp/jti, string user_id, other token_type, access token, "null", garbage,
  raw SECRET_KEY, seed-style JWT, confirmation token):
  J::test_refresh_rejects_everything_but_a_good_refresh_token
- B10 at /api/users/me (HS512, alg none, expired, another user, bool user_id, no iat,
  no token_type, refresh as access): tests/test_me.py::test_other_purpose_and_tampered_tokens,
  tests/test_me.py::test_refresh_token_is_not_an_access_token
- B10 blank refresh -> 400: J::test_refresh_field_errors; deleted user, address registered
  again: J::test_tokens_of_deleted_accounts_are_dead
- B13 the takeover scenario in both endings: tests/security/test_takeover.py
- B13 JWTs die at link confirmation, login works after:
  J::test_tokens_issued_before_confirmation_die_with_it; api_token dies at confirmation:
  tests/profiles/test_envelope.py::test_api_token_works_until_confirmation
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta

import jwt
import pytest
from sqlalchemy import update

from regapp.core.jwt_tokens import signing_key
from regapp.extensions import db
from regapp.models import User
from regapp.models import utcnow
from tests.security.test_b_tokens import PASSWORD
from tests.security.test_b_tokens import confirm_at
from tests.security.test_b_tokens import outcome
from tests.security.test_b_tokens import register_via
from tests.smtp import text_part

ME = "/api/users/me"
REFRESH = "/api/token/refresh/"
OBTAIN = "/api/token/"
NOT_VALID_ME = {"detail": "Given token not valid for any token type", "code": "token_not_valid"}
NOT_VALID_REFRESH = {"detail": "Token is invalid or expired", "code": "token_not_valid"}
DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64(data) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def craft(key: bytes, header: dict, claims: dict, mac: str = "HS256") -> str:
    """A JWT with any header, MACed with ``mac`` (by hand: PyJWT refuses most of these)."""
    signing_input = f"{b64(header)}.{b64(claims)}"
    signature = hmac.new(key, signing_input.encode(), DIGESTS[mac]).digest()
    return f"{signing_input}.{b64(signature)}"


LIVE: dict = {}  # claims copied from a genuine token of the test (credential version, family)


def claims(uid, token_type, changes=None) -> dict:
    """Good claims for ``uid``; a change to ``...`` drops that claim."""
    now = int(time.time())
    out = {"token_type": token_type, "exp": now + 300, "iat": now, "jti": "a" * 32,
           "user_id": uid, "ver": 0}
    out.update(LIVE.get(token_type, {}))
    out.update(changes or {})
    return {k: v for k, v in out.items() if v is not ...}


def me(client, access):
    return client.get(ME, headers={"Authorization": f"Bearer {access}"})


def refresh(client, token):
    return client.post(REFRESH, json={"refresh": token})


# -- B10: only HS256, with this service's key, of the right type ---------------------------

def forgeries(key: bytes, user_id: int, token_type: str) -> dict:
    good = claims(user_id, token_type)
    header = {"typ": "JWT", "alg": "HS256"}
    signing_input, signature = craft(key, header, good).rsplit(".", 1)
    out = {}
    for alg in ("none", "None", "NONE", "nOnE"):
        out[f"alg {alg}, no signature"] = f"{b64({'typ': 'JWT', 'alg': alg})}.{b64(good)}."
        out[f"alg {alg}, HS256 signature"] = craft(key, {"typ": "JWT", "alg": alg}, good)
    for alg in ("HS384", "HS512"):
        out[f"{alg} with the right key"] = craft(key, {"typ": "JWT", "alg": alg}, good, alg)
    for alg in ("RS256", "ES256", "PS256", "EdDSA", "hs256", "HS256 ", "", None, ["HS256"]):
        out[f"alg {alg!r} header, HS256 signature"] = craft(key, {"typ": "JWT", "alg": alg},
                                                           good)
    out["no alg header"] = craft(key, {"typ": "JWT"}, good)
    for name, changes in {
        "missing exp": {"exp": ...}, "missing iat": {"iat": ...},
        "missing user_id": {"user_id": ...}, "exp in the past": {"exp": int(time.time()) - 1},
        "user_id 0": {"user_id": 0}, "user_id -1": {"user_id": -1},
        "user_id 2**31": {"user_id": 2**31}, "user_id 2**63": {"user_id": 2**63},
        "user_id 1e3": {"user_id": 1e3}, "user_id null": {"user_id": None},
        "user_id list": {"user_id": [user_id]}, "user_id as text": {"user_id": str(user_id)},
        "token_type upper-case": {"token_type": token_type.upper()},
        "jti not a string": {"jti": 5},
    }.items():
        out[name] = craft(key, header, claims(user_id, token_type, changes))
    out["signature stripped"] = f"{signing_input}."
    out["edited user_id, original signature"] = f"{b64(claims(user_id + 1, token_type))}." \
                                          f"{signing_input.split('.')[1]}.{signature}"
    out["four segments"] = f"{signing_input}.{signature}.{signature}"
    out["padded signature"] = f"{signing_input}.{signature}=="
    out["another service's key"] = craft(signing_key("some-other-secret"), header, good)
    return out


@pytest.mark.parametrize("endpoint", ["me", "refresh"])
def test_b10_only_hs256_with_this_services_key(app, client, endpoint, monkeypatch):
    _, body = register_via(client, "jwt", "alice")
    uid = body["user"]["id"]
    genuine = jwt.decode(body["refresh"], options={"verify_signature": False})
    # A forged refresh token names the live rotation family of the genuine one.
    monkeypatch.setitem(LIVE, "refresh", {k: genuine[k] for k in ("ver", "jti", "fam")})
    register_via(client, "jwt", "bob")  # uid + 1 exists: an edited id must not reach it
    key = signing_key(app.config["SECRET_KEY"])
    if endpoint == "me":
        call, token_type, expected = me, "access", NOT_VALID_ME
    else:
        call, token_type, expected = refresh, "refresh", NOT_VALID_REFRESH
    r = call(client, craft(key, {"typ": "JWT", "alg": "HS256"}, claims(uid, token_type)))
    assert r.status_code == 200  # the forging helper itself is right
    for name, token in forgeries(key, uid, token_type).items():
        r = call(client, token)
        assert (r.status_code, r.get_json()) == (401, expected), name


def test_b10_each_token_type_only_where_it_belongs(app, client):
    _, body = register_via(client, "jwt", "alice")
    assert (refresh(client, body["access"]).status_code, me(client, body["refresh"]).status_code
            ) == (401, 401)
    new_access = refresh(client, body["refresh"]).get_json()["access"]
    assert me(client, new_access).status_code == 200
    for token in ("", " ", "null", "None", "undefined", "garbage", "a.b.c", "..", "{}"):
        r = refresh(client, token)
        assert r.status_code in (400, 401), repr(token)
        assert r.status_code == 400 or r.get_json() == NOT_VALID_REFRESH
        assert me(client, token or "x").status_code == 401


# -- B13: credentials from before the confirmation, and purged accounts -----------------------

def wait_for_next_second():
    """JWT ``iat`` has whole seconds: make the confirmation happen in a later one."""
    time.sleep(1 - time.time() % 1 + 0.01)


def test_b13_every_way_of_confirming_retires_earlier_credentials(app, client, runner,
                                                                 last_confirmation):
    routes = ("page", "jsonapi", "laravel", "code", "operator")
    held = {}
    for route in routes:
        email, body = register_via(client, "jwt", f"jwt-{route}")
        held[email] = ("jwt", route, body["access"], body["refresh"])
        email, body = register_via(client, "envelope", f"env-{route}")
        held[email] = ("envelope", route, body["results"]["api_token"], None)
    for profile, _, token, _ in held.values():  # they work before
        auth = f"Bearer {token}" if profile == "jwt" else f"Token {token}"
        assert client.get(ME, headers={"Authorization": auth}).status_code == 200
    wait_for_next_second()
    for email, (_, route, _, _) in held.items():
        _, link_token, code = last_confirmation(email)
        if route == "operator":
            assert runner.invoke(args=["users", "confirm", email]).exit_code == 0
        elif route == "code":
            r = client.post("/api/users/validation", json={"email": email, "token": code})
            assert r.status_code == 201
        else:
            assert outcome(route, confirm_at(client, route, link_token, email)) == "ok"
    for email, (profile, route, token, refresh_token) in held.items():
        if profile == "jwt":
            assert me(client, token).get_json() == NOT_VALID_ME, route
            assert refresh(client, refresh_token).get_json() == NOT_VALID_REFRESH, route
        else:
            r = client.get(ME, headers={"Authorization": f"Token {token}"})
            assert (r.status_code, r.get_json()) == (401, {"detail": "Invalid token."}), route
        # The owner, who now holds the address, signs in with the password.
        r = client.post(OBTAIN, json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, route
        assert me(client, r.get_json()["access"]).get_json()["is_email_confirmed"] is True


def test_b13_purge_frees_the_address_and_kills_every_credential(app, client, runner,
                                                                last_confirmation):
    jwt_email, jwt_body = register_via(client, "jwt", "alice")
    env_email, env_body = register_via(client, "envelope", "bob")
    links = {e: last_confirmation(e) for e in (jwt_email, env_email)}
    api_token = env_body["results"]["api_token"]
    with app.app_context():  # both registrations are three days old
        db.session.execute(update(User).values(created_at=utcnow() - timedelta(days=3)))
        db.session.commit()
    r = runner.invoke(args=["users", "purge-unconfirmed", "--older-than", "2d"])
    assert r.exit_code == 0 and "deleted 2 unconfirmed account(s)" in r.output

    def assert_dead():
        assert me(client, jwt_body["access"]).get_json() == NOT_VALID_ME
        assert refresh(client, jwt_body["refresh"]).get_json() == NOT_VALID_REFRESH
        r = client.get(ME, headers={"Authorization": f"Token {api_token}"})
        assert (r.status_code, r.get_json()) == (401, {"detail": "Invalid token."})
        for email, (_, token, code) in links.items():
            assert outcome("drf", confirm_at(client, "drf", token, email)) == "invalid"
            r = client.post("/api/users/validation", json={"email": email, "token": code})
            assert r.status_code == 401

    assert_dead()
    # Both addresses register again (through other profiles); the old credentials stay dead.
    _, again = register_via(client, "envelope", "alice")
    assert again["results"]["id"] > jwt_body["user"]["id"]
    _, again_jwt = register_via(client, "jwt", "bob")
    assert again_jwt["user"]["id"] > env_body["results"]["id"]
    links = {e: (None, links[e][1], links[e][2]) for e in links}
    assert_dead()
    assert me(client, again_jwt["access"]).status_code == 200


def test_b13_the_owners_attempt_makes_the_attackers_password_die_at_confirmation(
        app, client, deliver, last_confirmation):
    """Issue 10 closed the B13 residual: once the owner has tried to sign up (the address
    is then contested), confirming clears the first password. The full scenario, in both
    endings, is tests/security/test_takeover.py."""
    email, _ = register_via(client, "jwt", "victim")  # the attacker's password
    r = client.post("/api/register/", json={"username": "owner", "email": email,
                                            "password": "Owners-own-secret-7"})
    assert r.status_code == 400  # the owner is told the address is taken...
    _, token, _ = last_confirmation()
    assert outcome("page", confirm_at(client, "page", token, email)) == "ok"  # the owner
    r = client.post(OBTAIN, json={"email": email, "password": PASSWORD})
    assert r.status_code == 401  # ... and the attacker's password is gone


def test_b13_remaining_case_is_limited_by_the_mail(app, client, deliver):
    """SECURITY.md B13, what remains: an owner who never tries to sign up and confirms a
    link they did not ask for confirms the first password. The confirmation mail says
    so and carries the "this wasn't me" link, which frees the address instead."""
    email, _ = register_via(client, "jwt", "victim")
    [msg] = [m for m in deliver() if m["To"].lower() == email.lower()]
    text = text_part(msg)
    assert "Did not sign up?" in text and "/cancel-registration/?token=" in text
