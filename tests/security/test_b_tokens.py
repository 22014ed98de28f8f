"""SECURITY.md B1-B8, B11, B12: the link token and the 6-digit code at every confirm route.

Already proven elsewhere (item -> test), not repeated here. T = tests/test_confirmation.py,
K = tests/core/test_tokens.py, P = tests/test_pages.py.
- B1 link token at drf/jsonapi/laravel, reuse everywhere, confirmed_at kept:
  T::test_link_token_confirms_at_every_endpoint
- B2 nine tamperings at the API routes: T::test_tampered_tokens_are_refused_everywhere;
  A's payload + B's signature, %2E: K::test_tampered_tokens_are_invalid
- B3 blank/missing: T::test_blank_or_missing_token;
  page (incl. %00): P::test_bad_link_says_so_and_offers_the_resend_form
- B4 +-10 s around 86400, +1 h future: T::test_token_lifetime; K::test_expiry_boundaries
- B5 "cookie-session" salt at the API routes: T::test_token_for_another_purpose_is_refused;
  confirmation token at /api/token/refresh/:
  tests/profiles/test_jwt.py::test_refresh_rejects_everything_but_a_good_refresh_token
- B7 uniform, leading zeros: K::test_new_code_is_six_ascii_digits_uniformly; keyed hash:
  K::test_code_hash_is_keyed_and_bound_to_the_user; constant time:
  K::test_code_matches_compares_in_constant_time; A's code with B's email:
  T::test_another_users_token_or_code_is_incorrect; bare code with no email:
  T::test_bare_code_is_refused_where_no_email_is_given
- B8 K wrong then right -> laravel 401 like an unknown address (issue 11), the link still works:
  T::test_five_wrong_codes_lock_the_code_but_not_the_link;
  case variants: T::test_wrong_codes_count_across_case_variants
- B11 page headers: P::assert_safe_page; access log: tests/test_server.py
- B12 T::test_head_never_confirms; P::test_get_shows_a_button_and_does_not_confirm
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from datetime import timedelta

import jwt as pyjwt
import pytest
from itsdangerous import TimestampSigner
from itsdangerous import URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode
from itsdangerous.encoding import bytes_to_int
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update

from config import Config
from regapp.core import tokens
from regapp.extensions import db
from regapp.models import EmailConfirmation
from regapp.models import OutboxMessage
from regapp.models import User
from regapp.models import utcnow
from tests.smtp import confirmation
from tests.test_confirmation import ALREADY_VALIDATED
from tests.test_confirmation import DRF_ALREADY
from tests.test_confirmation import DRF_INVALID
from tests.test_confirmation import JSONAPI_ALREADY
from tests.test_confirmation import JSONAPI_INVALID
from tests.test_confirmation import TAMPERINGS
from tests.test_confirmation import TOKEN_INCORRECT
from tests.test_confirmation import other_code

PASSWORD = "Str0ng-passphrase"
ROUTES = ("drf", "jsonapi", "laravel", "page")
NO_LEAK = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def registration(profile, name, email):
    """One profile's registration request for ``email``: ``(url, json body)``."""
    return {
        "drf": ("/api/register/", {"username": name, "email": email, "password": PASSWORD}),
        "envelope": ("/api/v1/user/register",
                     {"username": name, "email_address": email, "password": PASSWORD}),
        "laravel": ("/api/users/register", {"first_name": "A", "last_name": "B", "email": email,
                                            "postal_code": "5673RE", "password": PASSWORD}),
        "jsonapi": ("/api/users/registration",
                    {"email": email, "password": PASSWORD, "password_confirmation": PASSWORD}),
        "jwt": ("/api/sign-up/", {"username": name, "email": email, "password": PASSWORD}),
    }[profile]


def register_via(client, profile, name):
    """Register ``name@x.io`` through one profile; return ``(email, response body)``."""
    email = f"{name}@x.io"
    url, body = registration(profile, name, email)
    r = client.post(url, json=body)
    assert r.status_code == 201, r.get_data(as_text=True)
    return email, r.get_json()


def confirm_at(client, route, token, email):
    """Present ``token`` where ``route`` takes it (the page: the form's POST)."""
    if route == "drf":
        return client.get("/api/confirm-email/", query_string={"token_id": token})
    if route == "jsonapi":
        return client.get("/api/users/verification", query_string={"email_token": token})
    if route == "laravel":
        return client.post("/api/users/validation", json={"email": email, "token": token})
    return client.post("/confirm-email/", data={"token_id": token})


def outcome(route, r) -> str:
    """``ok``/``already``/``invalid``/``expired``: what a client of ``route`` is told."""
    if route == "page":
        html = r.get_data(as_text=True)
        for state, status, marker in (("ok", 200, "Email confirmed"),
                                      ("already", 200, "Already confirmed"),
                                      ("invalid", 400, "This link is not valid"),
                                      ("expired", 400, "This link has expired")):
            if r.status_code == status and marker in html:
                return state
        return f"? {r.status_code}"
    seen = (r.status_code, r.get_json(silent=True) if r.data else r.data)
    known = {
        "drf": [((400, DRF_INVALID), "invalid"), ((400, DRF_ALREADY), "already")],
        "jsonapi": [((422, JSONAPI_INVALID), "invalid"), ((422, JSONAPI_ALREADY), "already"),
                    ((200, b""), "ok")],
        "laravel": [((401, TOKEN_INCORRECT), "invalid"), ((409, ALREADY_VALIDATED), "already"),
                    ((201, {"message": "Validated"}), "ok")],
    }[route]
    for expected, state in known:
        if seen == expected:
            return state
    if route == "drf" and r.status_code == 200 and r.get_json().get("is_email_confirmed"):
        return "ok"
    return f"? {seen}"


def user(app, email) -> User:
    with app.app_context():
        row = db.session.scalar(select(User).where(User.email_key == email.lower()))
        if row is not None:
            db.session.expunge(row)
        return row


# -- B1: single use across endpoints ----------------------------------------------------

@pytest.mark.parametrize(("first", "profile"), [
    ("page", "jsonapi"), ("code", "jwt"), ("drf", "envelope"), ("jsonapi", "laravel"),
    ("laravel", "drf")])
def test_b1_first_use_confirms_every_later_use_is_already(app, client, last_confirmation,
                                                         first, profile):
    email, _ = register_via(client, profile, "alice")
    _, token, code = last_confirmation()
    r = (client.post("/api/users/validation", json={"email": email, "token": code})
         if first == "code" else confirm_at(client, first, token, email))
    assert outcome("laravel" if first == "code" else first, r) == "ok"
    confirmed_at = user(app, email).confirmed_at
    assert confirmed_at is not None
    for _ in range(2):
        for route in ROUTES:
            assert outcome(route, confirm_at(client, route, token, email)) == "already", route
        r = client.post("/api/users/validation", json={"email": email, "token": code})
        assert (r.status_code, r.get_json()) == (409, ALREADY_VALIDATED)
    r = client.get("/confirm-email/", query_string={"token_id": token})
    assert r.status_code == 200 and "Already confirmed" in r.get_data(as_text=True)
    assert user(app, email).confirmed_at == confirmed_at


# -- B2: tampering, and the same message as an expired token ------------------------------

def test_b2_tampered_tokens_answer_like_expired_ones(app, client, last_confirmation,
                                                     monkeypatch):
    alice, _ = register_via(client, "drf", "alice")
    _, token, _ = last_confirmation(alice)
    bob, _ = register_via(client, "drf", "bob")
    _, bob_token, _ = last_confirmation(bob)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 90000)
    expired = tokens_for(app, alice)
    monkeypatch.undo()
    payload, stamp, signature = token.split(".")
    bad = {name: tamper(token) for name, tamper in TAMPERINGS.items()}
    bad.update({
        "A's payload, B's signature": f"{payload}.{stamp}.{bob_token.split('.')[2]}",
        "B's payload and stamp, A's signature": ".".join(bob_token.split(".")[:2] + [signature]),
        "padded payload": f"{payload}=.{stamp}.{signature}",
        "upper-cased": token.upper(),
    })
    for route in ("drf", "jsonapi", "laravel"):
        reference = confirm_at(client, route, expired, alice)
        assert outcome(route, reference) == "invalid", route  # expired reads as invalid
        for name, value in bad.items():
            r = confirm_at(client, route, value, alice)
            assert (r.status_code, r.data) == (reference.status_code, reference.data), (
                route, name)
    for name, value in bad.items():
        assert outcome("page", confirm_at(client, "page", value, alice)) == "invalid", name
    # Double URL-encoding: the server decodes once, so "%252E" stays "%2E": not a token.
    double = token.replace(".", "%252E")
    assert client.get(f"/api/confirm-email/?token_id={double}").get_json() == DRF_INVALID
    assert client.get(f"/api/users/verification?email_token={double}"
                      ).get_json() == JSONAPI_INVALID
    assert outcome("page", client.get(f"/confirm-email/?token_id={double}")) == "invalid"
    assert user(app, alice).is_email_confirmed is False
    # Single encoding is just the token, spelled differently: it still works.
    single = token.replace(".", "%2E")
    assert client.get(f"/api/confirm-email/?token_id={single}").status_code == 200


def tokens_for(app, email) -> str:
    with app.app_context():
        return tokens.make_confirm_token(
            db.session.scalar(select(User).where(User.email_key == email)))


# -- B3: blank, missing, null, NUL -----------------------------------------------------

def test_b3_blank_missing_null_and_nul_never_match(app, client, runner, last_confirmation):
    email, _ = register_via(client, "envelope", "alice")
    assert runner.invoke(args=["users", "create", "ops@x.io", "--confirmed", "--password",
                               PASSWORD]).exit_code == 0
    drf_required = {"token_id": ["This field is required."]}
    for query, body in (("", drf_required), ("?token_id=", drf_required),
                        ("?token_id=%20", drf_required), ("?token_id=null", DRF_INVALID),
                        ("?token_id=None", DRF_INVALID), ("?token_id=%00", DRF_INVALID),
                        ("?token_id=0", DRF_INVALID)):
        r = client.get("/api/confirm-email/" + query)
        assert (r.status_code, r.get_json()) == (400, body), query
    for query in ("?email_token=null", "?email_token=%00", "?email_token=%20", "?email_token"):
        r = client.get("/api/users/verification" + query)
        assert (r.status_code, r.get_json()) == (422, JSONAPI_INVALID), query
    for target in (email, "ops@x.io"):
        for token in ("null", "None", "000000", "0"):
            r = client.post("/api/users/validation", json={"email": target, "token": token})
            assert (r.status_code, r.get_json()) == (401, TOKEN_INCORRECT), (target, token)
        for body in ({"email": target}, {"email": target, "token": "\x00"},
                     {"email": target, "token": False}):
            r = client.post("/api/users/validation", json=body)
            assert r.status_code == 422 and list(r.get_json()["errors"]) == ["token"], body
    for token in ("null", "\x00", " "):
        assert client.post("/confirm-email/", data={"token_id": token}).status_code == 400
    # Nothing blank is stored that a blank input could ever match.
    with app.app_context():
        hashes = db.session.scalars(select(EmailConfirmation.code_hash)).all()
        api_hashes = db.session.scalars(select(User.api_token_hash)).all()
    assert hashes and all(len(h) == 64 for h in hashes)
    assert all(h is None or len(h) == 64 for h in api_hashes)
    assert user(app, email).is_email_confirmed is False


# -- B4: expiry boundaries ---------------------------------------------------------------

def _code_sent_ago(app, email, seconds):
    """Set the code's expiry as if it had been sent ``seconds`` ago."""
    with app.app_context():
        row = db.session.scalar(select(EmailConfirmation).join(User).where(
            User.email_key == email))
        lifetime = row.expires_at - row.created_at
        row.expires_at = utcnow() + lifetime - timedelta(seconds=seconds)
        db.session.commit()


def _token_signed_ago(monkeypatch, token, seconds):
    """Verify ``token`` as if exactly ``seconds`` had passed since it was signed."""
    signed_at = bytes_to_int(base64_decode(token.split(".")[1]))
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: signed_at + seconds)


@pytest.mark.config(CONFIRM_TOKEN_MAX_AGE=300)
def test_b4_token_and_code_live_exactly_max_age(app, client, last_confirmation, monkeypatch):
    sent = {}
    for name in (*ROUTES, "code", "late"):
        email, _ = register_via(client, "drf", name)
        sent[name] = (email, *last_confirmation(email)[1:])
    with app.app_context():  # the code's lifetime is the token's
        row = db.session.scalar(select(EmailConfirmation).join(User).where(
            User.email_key == "late@x.io"))
        assert abs((row.expires_at - row.created_at).total_seconds() - 300) < 2
    for route in ROUTES:  # max_age - 1: accepted everywhere
        email, token, _ = sent[route]
        _token_signed_ago(monkeypatch, token, 299)
        assert outcome(route, confirm_at(client, route, token, email)) == "ok", route
    _code_sent_ago(app, "code@x.io", 299)
    r = client.post("/api/users/validation", json={"email": "code@x.io", "token": sent["code"][2]})
    assert r.status_code == 201
    email, token, code = sent["late"]  # max_age + 1: refused everywhere, the code too
    _token_signed_ago(monkeypatch, token, 301)
    for route in ("drf", "jsonapi", "laravel"):
        assert outcome(route, confirm_at(client, route, token, email)) == "invalid", route
    assert outcome("page", confirm_at(client, "page", token, email)) == "expired"
    _code_sent_ago(app, email, 301)
    r = client.post("/api/users/validation", json={"email": email, "token": code})
    assert (r.status_code, r.get_json()) == (401, TOKEN_INCORRECT)
    assert user(app, email).is_email_confirmed is False
    # Signed 5 s "in the future" (a clock that moved back): refused as expired.
    monkeypatch.undo()
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) + 5)
    future, _ = register_via(client, "drf", "future")
    monkeypatch.undo()
    _, token, _ = last_confirmation(future)
    for route in ("drf", "jsonapi", "laravel"):
        assert outcome(route, confirm_at(client, route, token, future)) == "invalid", route
    assert outcome("page", confirm_at(client, "page", token, future)) == "expired"
    assert user(app, future).is_email_confirmed is False


# -- B5: purpose binding ------------------------------------------------------------------

def test_b5_other_secrets_of_the_service_never_confirm(app, client, last_confirmation):
    email, body = register_via(client, "jwt", "alice")
    _, envelope = register_via(client, "envelope", "bob")
    last_confirmation()
    uid = body["user"]["id"]
    key = app.config["SECRET_KEY"]
    good_payload = {"u": uid, "e": tokens.email_fingerprint("alice@x.io")}
    session = app.session_interface.get_signing_serializer(app)
    foreign = {
        "jwt access": body["access"],
        "jwt refresh": body["refresh"],
        "session cookie, confirmation payload": session.dumps(good_payload),
        "session cookie, login-ish payload": session.dumps({"_user_id": str(uid)}),
        "itsdangerous default salt": URLSafeTimedSerializer(key).dumps(good_payload),
        "envelope api_token": envelope["results"]["api_token"],
        "seed-style JWT, raw SECRET_KEY": pyjwt.encode(
            {"user_id": uid, "exp": int(time.time()) + 3600}, key, algorithm="HS256"),
    }
    for name, value in foreign.items():
        for route in ROUTES:
            assert outcome(route, confirm_at(client, route, value, email)) == "invalid", (
                name, route)
    assert user(app, email).is_email_confirmed is False


# -- B6: binding to the address and to the account ---------------------------------------

def test_b6_old_secrets_die_when_the_address_changes(app, client, last_confirmation):
    old, _ = register_via(client, "drf", "alice")
    _, token, code = last_confirmation(old)
    new = "mallory@x.io"
    with app.app_context():  # an operator (or any future path) edits the address
        db.session.execute(update(User).where(User.email_key == old).values(
            email=new, email_key=new))
        db.session.commit()
    for email in (old, new):
        for route in ROUTES:
            assert outcome(route, confirm_at(client, route, token, email)) == "invalid", route
        r = client.post("/api/users/validation", json={"email": email, "token": code})
        assert (r.status_code, r.get_json()) == (401, TOKEN_INCORRECT), email
    assert user(app, new).is_email_confirmed is False
    # The new address confirms with a message sent to it.
    client.post("/api/resend-confirmation/", json={"email": new})
    _, token, _ = last_confirmation(new)
    assert outcome("drf", confirm_at(client, "drf", token, new)) == "ok"


@pytest.mark.parametrize("how", ["delete", "purge"])
def test_b6_deleted_account_secrets_never_reach_the_next_one(app, client, runner,
                                                             last_confirmation, how):
    email, body = register_via(client, "drf", "alice")
    old_id = body["id"]
    _, token, code = last_confirmation(email)
    if how == "delete":
        args = ["users", "delete", str(old_id), "--yes"]
    else:
        args = ["users", "purge-unconfirmed", "--older-than", "0s", "--force"]
        time.sleep(0.01)
    assert runner.invoke(args=args).exit_code == 0
    _, body = register_via(client, "jsonapi", "alice")
    assert int(body["data"]["id"]) > old_id  # never reused
    _, new_token, new_code = last_confirmation(email)
    for route in ROUTES:
        assert outcome(route, confirm_at(client, route, token, email)) == "invalid", route
    if code != new_code:  # one chance in a million
        r = client.post("/api/users/validation", json={"email": email, "token": code})
        assert (r.status_code, r.get_json()) == (401, TOKEN_INCORRECT)
    assert user(app, email).is_email_confirmed is False
    assert outcome("jsonapi", confirm_at(client, "jsonapi", new_token, email)) == "ok"


# -- B7: code quality -----------------------------------------------------------------------

def test_b7_code_comes_from_secrets_and_keeps_leading_zeros(app, client, deliver, monkeypatch):
    drawn = []
    real = secrets.randbelow

    def spy(n):
        drawn.append((n, real(n) % 100))  # force a code with four leading zeros
        return drawn[-1][1]

    monkeypatch.setattr(secrets, "randbelow", spy)
    email, _ = register_via(client, "laravel", "alice")
    monkeypatch.undo()
    [msg] = deliver()
    _, _, code = confirmation(msg)
    assert drawn[-1][0] == 1_000_000 and code == f"{drawn[-1][1]:06d}"
    assert code.startswith("0000")
    r = client.post("/api/users/validation", json={"email": email, "token": int(code)})
    assert (r.status_code, r.get_json()) == (201, {"message": "Validated"})


def test_b7_same_second_registrations_get_different_codes(client, last_confirmation):
    start = time.monotonic()
    codes = []
    for i in range(8):
        email, _ = register_via(client, "drf", f"user{i}")
        codes.append(last_confirmation(email)[2])
    assert time.monotonic() - start < 5
    assert len(set(codes)) == len(codes)  # ~3e-5 chance of a false alarm


def test_b7_no_secret_is_stored_in_clear(app, client, deliver, last_confirmation):
    email, body = register_via(client, "envelope", "alice")
    api_token = body["results"]["api_token"]
    _, token, code = last_confirmation(email)
    with app.app_context():
        uid = db.session.scalar(select(User.id).where(User.email_key == email))
        stored = db.session.scalar(select(EmailConfirmation.code_hash))
        dump = " ".join(
            repr(tuple(row)) for table in ("users", "email_confirmations", "outbox_messages")
            for row in db.session.execute(text(f"SELECT * FROM {table}")))
    for secret in (code, token, api_token, PASSWORD):
        assert secret not in dump
    # A keyed hash: not the code's (or id:code's) plain SHA-256.
    assert stored not in (hashlib.sha256(code.encode()).hexdigest(),
                          hashlib.sha256(f"{uid}:{code}".encode()).hexdigest())
    assert hashlib.sha256(api_token.encode()).hexdigest() in dump  # only its hash


# -- B8: one wrong-guess counter, a lifetime cap that resends don't reset ------------------

def test_b8_encodings_and_case_share_one_counter(app, client, last_confirmation):
    email, _ = register_via(client, "drf", "alice")
    _, token, code = last_confirmation()
    guesses = [
        lambda g: client.post("/api/users/validation", json={"email": email, "token": g}),
        lambda g: client.post("/api/users/validation",
                              json={"email": email.upper(), "token": int(g)}),
        lambda g: client.post("/api/users/validation", data={"email": " Alice@X.io ",
                                                              "token": g}),
        lambda g: client.post("/api/users/validation", data={"email": email, "token": g},
                              content_type="multipart/form-data"),
        lambda g: client.post("/api/users/validation", json={"email": "ALICE@x.io",
                                                              "token": g}),
    ]
    assert len(guesses) == app.config["CONFIRM_CODE_MAX_ATTEMPTS"]
    for step, guess in enumerate(guesses, 1):
        r = guess(other_code(code, step))
        assert (r.status_code, r.get_json()) == (401, TOKEN_INCORRECT), step
    r = client.post("/api/users/validation", json={"email": email, "token": code})
    assert (r.status_code, r.get_json()) == (401, TOKEN_INCORRECT)  # not 429: issue 11


def test_b8_default_lifetime_cap_survives_resends_and_spares_the_link(app, client,
                                                                     last_confirmation):
    # The shipped defaults (TestingConfig keeps them): at most 20 guesses per account.
    assert Config.CONFIRM_CODE_LIFETIME_CAP <= 20 and Config.CONFIRM_CODE_MAX_ATTEMPTS <= 10
    cap = app.config["CONFIRM_CODE_LIFETIME_CAP"]
    per_code = app.config["CONFIRM_CODE_MAX_ATTEMPTS"]
    assert (cap, per_code) == (Config.CONFIRM_CODE_LIFETIME_CAP,
                               Config.CONFIRM_CODE_MAX_ATTEMPTS)
    email, _ = register_via(client, "drf", "alice")
    _, first_token, _ = last_confirmation()
    wrong = 0
    while wrong < cap:
        _, _, code = last_confirmation()
        for step in range(1, per_code + 1):
            r = client.post("/api/users/validation",
                            json={"email": email, "token": other_code(code, step)})
            assert r.status_code == 401
            wrong += 1
        assert client.post("/api/resend-confirmation/", json={"email": email}
                           ).status_code == 202
        # Registering the address again sends nothing and resets nothing.
        assert client.post("/api/register/", json={"username": "again", "email": email,
                                                   "password": PASSWORD}).status_code == 400
    _, newest_token, code = last_confirmation()
    r = client.post("/api/users/validation", json={"email": email, "token": code})
    assert (r.status_code, r.get_json()) == (401, TOKEN_INCORRECT)  # not 429: issue 11
    # Guessing never locks the owner out: the first link of all still confirms.
    assert outcome("page", confirm_at(client, "page", first_token, email)) == "ok"
    assert outcome("drf", confirm_at(client, "drf", newest_token, email)) == "already"


# -- B11: no leaks through headers or logs ----------------------------------------------

@pytest.mark.config(RATELIMIT_ENABLED=True, RATELIMIT_CONFIRMATION="20/minute")
def test_b11_every_confirm_response_is_no_store_no_referrer(app, client, last_confirmation):
    email, _ = register_via(client, "drf", "alice")
    _, token, _ = last_confirmation()
    responses = [
        client.head("/api/confirm-email/", query_string={"token_id": token}),
        client.head("/api/users/verification", query_string={"email_token": token}),
        client.get("/api/confirm-email/"),
        client.post("/api/users/validation", json={}),
        client.post("/api/users/validation", data="{", content_type="application/json"),
    ]
    for route in ("drf", "jsonapi", "laravel"):
        responses.append(confirm_at(client, route, "garbage", email))
    responses.append(confirm_at(client, "laravel", token, email))
    for route in ("drf", "jsonapi", "laravel", "page"):
        responses.append(confirm_at(client, route, token, email))  # already
    for _ in range(20):  # then throttled, on each route
        if confirm_at(client, "drf", token, email).status_code == 429:
            break
    for route in ("drf", "jsonapi", "laravel", "page"):
        responses.append(confirm_at(client, route, token, email))
        assert responses[-1].status_code == 429, route
    assert {r.status_code for r in responses} >= {200, 201, 400, 401, 409, 422, 429}
    for r in responses:
        for name, value in NO_LEAK.items():
            assert r.headers.get(name) == value, (r.request.path, r.status_code, name)


@pytest.mark.config(MAIL_RETRY_BASE=60)
def test_b11_no_secret_reaches_the_logs(app, client, smtp, deliver, last_confirmation, caplog):
    caplog.set_level(logging.DEBUG)
    seen = [PASSWORD]
    email, body = register_via(client, "envelope", "alice")
    _, jwt_body = register_via(client, "jwt", "bob")
    seen += [body["results"]["api_token"], jwt_body["access"], jwt_body["refresh"]]
    smtp.recorder.reply = "451 4.3.0 try again later"  # the failure path logs too
    deliver()
    smtp.recorder.reply = None
    with app.app_context():  # retry now rather than in a minute
        db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
        db.session.commit()
    _, token, code = last_confirmation(email)
    _, bob_token, bob_code = last_confirmation("bob@x.io")
    seen += [token, code, bob_token, bob_code]
    client.post("/api/users/validation", json={"email": email, "token": other_code(code)})
    client.get("/api/confirm-email/", query_string={"token_id": token[:-3] + "xyz"})
    client.get("/confirm-email/", query_string={"token_id": token})
    assert client.post("/confirm-email/", data={"token_id": token}).status_code == 200
    assert client.post("/api/users/validation", json={"email": "bob@x.io", "token": bob_code}
                       ).status_code == 201
    client.get("/api/users/verification", query_string={"email_token": bob_token})
    client.post("/api/token/refresh/", json={"refresh": jwt_body["refresh"]})
    client.get("/api/users/me", headers={"Authorization": f"Token {seen[1]}"})
    assert any(r.levelno >= logging.WARNING for r in caplog.records)  # the capture works
    # Everything but the test SMTP server's own trace (aiosmtpd logs each DATA line).
    ours = [r for r in caplog.records if not r.name.startswith("mail.")]
    logged = " ".join(f"{caplog.handler.format(r)} {r.args!r}" for r in ours)
    for secret in seen:
        assert secret not in logged


def test_b11_api_token_has_128_bits_and_is_stored_hashed(app, client):
    seen = set()
    for i in range(3):
        _, body = register_via(client, "envelope", f"user{i}")
        token = body["results"]["api_token"]
        assert len(token) == 32 and int(token, 16) >= 0  # 32 hex digits = 128 bits
        seen.add(token)
        with app.app_context():
            row = db.session.get(User, body["results"]["id"])
            assert row.api_token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert len(seen) == 3


# -- B12: HEAD and OPTIONS never confirm -------------------------------------------------

def test_b12_head_options_and_page_get_change_nothing(app, client, last_confirmation):
    email, _ = register_via(client, "drf", "alice")
    _, token, _ = last_confirmation()
    for url in (f"/api/confirm-email/?token_id={token}",
                f"/api/users/verification?email_token={token}",
                f"/confirm-email/?token_id={token}"):
        for _ in range(3):  # a scanner may come back
            assert client.head(url).status_code == 200
            assert client.options(url).status_code == 200
    for _ in range(3):  # the page's GET only shows the button (the API GETs do confirm)
        assert client.get(f"/confirm-email/?token_id={token}").status_code == 200
    assert client.head("/api/users/validation").status_code == 405
    assert user(app, email).is_email_confirmed is False
    assert user(app, email).confirmed_at is None
    assert outcome("page", confirm_at(client, "page", token, email)) == "ok"
