"""GET /api/users/me: the caller's account for a Bearer access JWT or an envelope api_token."""

from __future__ import annotations

import time
import warnings

import jwt as pyjwt
import pytest

from regapp.core.jwt_tokens import signing_key

ME = "/api/users/me"
JOHN = {"username": "johndoe", "email": "john@example.com", "password": "SecurePass123!",
        "first_name": "John", "last_name": "Doe"}
TIM = {"username": "tim1990", "email": "tim.smith12@aol.com", "password": "il1kep1es"}
ME_KEYS = ["id", "username", "email", "first_name", "last_name", "account_type",
           "is_email_confirmed"]
CHALLENGE = 'Bearer realm="api", Token realm="api"'
NOT_PROVIDED = {"detail": "Authentication credentials were not provided."}
NOT_VALID = {"detail": "Given token not valid for any token type", "code": "token_not_valid"}


def get_me(client, authorization=None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return client.get(ME, headers=headers)


def assert_401(r, body):
    assert r.status_code == 401
    assert r.mimetype == "application/json"
    assert r.get_json() == body
    assert r.headers["WWW-Authenticate"] == CHALLENGE


def sign_up(client) -> dict:
    r = client.post("/api/sign-up/", json=JOHN)
    assert r.status_code == 201
    return r.get_json()


def claims(user_id, token_type="access") -> dict:
    now = int(time.time())
    return {"token_type": token_type, "exp": now + 300, "iat": now, "jti": "f" * 32,
            "user_id": user_id, "ver": 0}


def test_bearer_access_token(app, client):
    body = sign_up(client)
    r = get_me(client, f"Bearer {body['access']}")
    assert r.status_code == 200
    assert r.mimetype == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    me = r.get_json()
    assert list(me) == ME_KEYS
    assert me == {"id": body["user"]["id"], "username": "johndoe", "email": "john@example.com",
                  "first_name": "John", "last_name": "Doe", "account_type": "customer",
                  "is_email_confirmed": False}
    assert "SecurePass123!" not in r.get_data(as_text=True)
    # The scheme is case-insensitive (RFC 9110).
    assert get_me(client, f"bearer {body['access']}").status_code == 200


def test_api_token(client):
    token = client.post("/api/v1/user/register", json=TIM).get_json()["results"]["api_token"]
    r = get_me(client, f"Token {token}")
    assert r.status_code == 200
    assert r.get_json() == {"id": r.get_json()["id"], "username": "tim1990",
                            "email": "tim.smith12@aol.com", "first_name": "", "last_name": "",
                            "account_type": "customer", "is_email_confirmed": False}
    assert_401(get_me(client, f"Token {token.upper()}"), {"detail": "Invalid token."})
    assert_401(get_me(client, f"Token {token[:-1]}0" if token[-1] != "0"
                      else f"Token {token[:-1]}1"), {"detail": "Invalid token."})
    # An api_token is not a JWT, and a JWT is not an api_token.
    assert_401(get_me(client, f"Bearer {token}"), NOT_VALID)


def test_operator_accounts_show_their_type(client, runner):
    result = runner.invoke(args=["users", "create", "driver@example.com", "--username",
                                 "driver1", "--account-type", "driver", "--confirmed",
                                 "--password", "Str0ng-passphrase"])
    assert result.exit_code == 0, result.output
    r = client.post("/api/token/", json={"username": "driver1",
                                         "password": "Str0ng-passphrase"})
    me = get_me(client, f"Bearer {r.get_json()['access']}").get_json()
    assert (me["account_type"], me["is_email_confirmed"]) == ("driver", True)


@pytest.mark.parametrize("authorization", [None, "", "Basic am9objpwdw==", "Digest x",
                                           "JWT abc"])
def test_no_credentials(client, authorization):
    assert_401(get_me(client, authorization), NOT_PROVIDED)


@pytest.mark.parametrize("authorization, body", [
    ("Bearer", {"detail": "Authorization header must contain two space-delimited values",
                "code": "bad_authorization_header"}),
    ("Bearer a b", {"detail": "Authorization header must contain two space-delimited values",
                    "code": "bad_authorization_header"}),
    ("Token", {"detail": "Invalid token header. No credentials provided."}),
    ("Token a b", {"detail": "Invalid token header. Token string should not contain spaces."}),
    ("Token 0123456789abcdef0123456789abcdef", {"detail": "Invalid token."}),
    ("Token null", {"detail": "Invalid token."}),
    ("Bearer not-a-jwt", NOT_VALID),
    ("Bearer null", NOT_VALID),
])
def test_malformed_credentials(client, authorization, body):
    assert_401(get_me(client, authorization), body)


def test_refresh_token_is_not_an_access_token(client):
    body = sign_up(client)
    assert_401(get_me(client, f"Bearer {body['refresh']}"), NOT_VALID)


def test_other_purpose_and_tampered_tokens(app, client, last_confirmation):
    user_id = sign_up(client)["user"]["id"]
    _, confirmation_token, _ = last_confirmation()
    key = signing_key(app.config["SECRET_KEY"])
    good = pyjwt.encode(claims(user_id), key, algorithm="HS256")
    assert get_me(client, f"Bearer {good}").status_code == 200  # the helper is right
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns about a short HS512 key: that's the point
        hs512 = pyjwt.encode(claims(user_id), key, algorithm="HS512")
    bad = {
        "confirmation token": confirmation_token,
        "raw SECRET_KEY": pyjwt.encode(claims(user_id), app.config["SECRET_KEY"],
                                       algorithm="HS256"),
        "HS512": hs512,
        "alg none": pyjwt.encode(claims(user_id), None, algorithm="none"),
        "expired": pyjwt.encode({**claims(user_id), "exp": int(time.time()) - 5}, key,
                                algorithm="HS256"),
        "another user": pyjwt.encode(claims(user_id + 1), key, algorithm="HS256"),
        "bool user_id": pyjwt.encode({**claims(user_id), "user_id": True}, key,
                                     algorithm="HS256"),
        "no iat": pyjwt.encode({k: v for k, v in claims(user_id).items() if k != "iat"}, key,
                               algorithm="HS256"),
        "no token_type": pyjwt.encode({k: v for k, v in claims(user_id).items()
                                       if k != "token_type"}, key, algorithm="HS256"),
        "other app's key": pyjwt.encode(claims(user_id), signing_key("another-secret"),
                                        algorithm="HS256"),
    }
    for name, token in bad.items():
        r = get_me(client, f"Bearer {token}")
        assert r.status_code == 401, name
        assert r.get_json() == NOT_VALID, name


def test_wrong_method_is_json(client):
    r = client.post(ME, json={})
    assert r.status_code == 405
    assert r.get_json() == {"detail": 'Method "POST" not allowed.'}
