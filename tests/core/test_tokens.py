"""The signed confirmation token and the 6-digit code."""

from __future__ import annotations

import base64
import hmac
import json
import re
import time
from types import SimpleNamespace

import jwt
import pytest
from flask import current_app
from itsdangerous import TimestampSigner
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import update

from regapp import create_app
from regapp.core import confirmation
from regapp.core import tokens
from regapp.core.errors import TokenExpired
from regapp.core.errors import TokenInvalid
from regapp.extensions import db
from regapp.models import User

OLD_KEY = "old-secret-key-0123456789abcdef-0123456789abcdef"
NEW_KEY = "new-secret-key-fedcba9876543210-fedcba9876543210"
ALICE = SimpleNamespace(id=7, email_key="alice@example.org")
BOB = SimpleNamespace(id=8, email_key="bob@example.org")


@pytest.fixture(scope="module")
def token_app():
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})


@pytest.fixture
def ctx(token_app):
    with token_app.app_context():
        yield token_app


def signed(payload, *, age=0, keys=None, salt=tokens.CONFIRM_SALT):
    """A token as regapp would sign it, but stamped ``age`` seconds ago."""

    class Clock(TimestampSigner):
        def get_timestamp(self):
            return int(time.time()) - age

    keys = keys or [current_app.config["SECRET_KEY"]]
    return URLSafeTimedSerializer(keys, salt=salt, signer=Clock).dumps(payload)


def payload(user):
    return {"u": user.id, "e": tokens.email_fingerprint(user.email_key)}


def test_round_trip(ctx):
    token = tokens.make_confirm_token(ALICE)
    assert re.fullmatch(r"[A-Za-z0-9_.\-]+", token)  # safe in a URL unescaped
    fingerprint = tokens.email_fingerprint("alice@example.org")
    assert tokens.load_confirm_token(token) == (7, fingerprint)
    # The payload is readable by anyone: it carries the id and a fingerprint, no address.
    raw = base64.urlsafe_b64decode(token.split(".")[0] + "==")
    assert json.loads(raw) == {"u": 7, "e": fingerprint}


def test_email_fingerprint_is_not_the_address():
    fingerprint = tokens.email_fingerprint("alice@example.org")
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    assert fingerprint != tokens.email_fingerprint("alice@example.com")


def tampered(token, other):
    payload_part, timestamp, signature = token.split(".")
    flip = {"A": "B", "B": "A"}
    first = flip.get(payload_part[1], "A")
    last = flip.get(signature[-2], "A")
    return {
        "payload char": f"{payload_part[0]}{first}{payload_part[2:]}.{timestamp}.{signature}",
        "signature char": f"{payload_part}.{timestamp}.{signature[:-2]}{last}{signature[-1]}",
        "same-length munge": token[:-5] + "0000" + token[-1],
        "truncated": token[:-1],
        "truncated half": token[: len(token) // 2],
        "appended": token + "A",
        "swapcase": token.swapcase(),
        "padding": token + "==",
        "percent-encoded": token.replace(".", "%2E"),
        "payload of A, signature of B": ".".join(token.split(".")[:2] + other.split(".")[2:]),
        "no signature": f"{payload_part}.{timestamp}",
        "payload only": payload_part,
        "with whitespace": f" {token}",
        "with newline": f"{token}\n",
    }


@pytest.mark.parametrize("kind", list(tampered("aaa.bbb.cccc", "ddd.eee.ffff")))
def test_tampered_tokens_are_invalid(ctx, kind):
    token = tokens.make_confirm_token(ALICE)
    other = tokens.make_confirm_token(BOB)
    with pytest.raises(TokenInvalid):
        tokens.load_confirm_token(tampered(token, other)[kind])


@pytest.mark.parametrize("value", [
    None, "", " ", "null", "0", "123456", 123456, 7, 1.5, True, [], ["x"], {"u": 7},
    b"bytes", "a" * 513, "\x00", "\ud800",
])
def test_blank_and_wrong_types_are_invalid(ctx, value):
    with pytest.raises(TokenInvalid):
        tokens.load_confirm_token(value)


@pytest.mark.parametrize("data", [
    {"u": "7", "e": "0123456789abcdef"},
    {"u": True, "e": "0123456789abcdef"},
    {"u": 7.0, "e": "0123456789abcdef"},
    {"u": 7},
    {"e": "0123456789abcdef"},
    {"u": 7, "e": None},
    [7, "0123456789abcdef"],
    "7",
    7,
    None,
])
def test_right_signature_wrong_shape_is_invalid(ctx, data):
    with pytest.raises(TokenInvalid):
        tokens.load_confirm_token(signed(data))


def test_expiry_boundaries(ctx):
    max_age = current_app.config["CONFIRM_TOKEN_MAX_AGE"]
    assert tokens.load_confirm_token(signed(payload(ALICE), age=max_age - 2))[0] == 7
    with pytest.raises(TokenExpired):
        tokens.load_confirm_token(signed(payload(ALICE), age=max_age + 1))
    with pytest.raises(TokenExpired):
        tokens.load_confirm_token(signed(payload(ALICE), age=10 * max_age))


def test_expiry_follows_the_configured_lifetime(ctx):
    current_app.config["CONFIRM_TOKEN_MAX_AGE"] = 5
    try:
        assert tokens.load_confirm_token(signed(payload(ALICE), age=3))[0] == 7
        with pytest.raises(TokenExpired):
            tokens.load_confirm_token(signed(payload(ALICE), age=6))
    finally:
        current_app.config["CONFIRM_TOKEN_MAX_AGE"] = 86400


def test_future_dated_token_is_rejected(ctx):
    # A clock moved back, or a forged timestamp: itsdangerous refuses a negative age.
    with pytest.raises((TokenExpired, TokenInvalid)):
        tokens.load_confirm_token(signed(payload(ALICE), age=-120))


def test_other_purpose_or_key_is_invalid(ctx, token_app):
    key = current_app.config["SECRET_KEY"]
    forged = [
        signed(payload(ALICE), salt="itsdangerous"),         # the library's default salt
        signed(payload(ALICE), salt="cookie-session"),       # Flask's session cookie salt
        signed(payload(ALICE), salt="regapp.reset-password"),
        signed(payload(ALICE), keys=["another-secret-key-entirely-0123456789"]),
        token_app.session_interface.get_signing_serializer(token_app).dumps(payload(ALICE)),
        URLSafeTimedSerializer(key).dumps(payload(ALICE)),    # no salt at all
        jwt.encode({"user_id": 7, "exp": int(time.time()) + 60}, key, algorithm="HS256"),
    ]
    for token in forged:
        with pytest.raises(TokenInvalid):
            tokens.load_confirm_token(token)


def test_secret_key_rotation_keeps_old_tokens_and_codes_alive(ctx):
    cfg = current_app.config
    saved = cfg["SECRET_KEY"]
    try:
        cfg.update(SECRET_KEY=OLD_KEY, SECRET_KEY_FALLBACKS=[])
        token = tokens.make_confirm_token(ALICE)
        code_hash = tokens.hash_code(ALICE.id, "042424")
        cfg.update(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[OLD_KEY])
        assert tokens.load_confirm_token(token)[0] == 7
        assert tokens.code_matches(code_hash, ALICE.id, "042424") is True
        # New tokens are signed with the new key only.
        fresh = tokens.make_confirm_token(ALICE)
        cfg.update(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[])
        assert tokens.load_confirm_token(fresh)[0] == 7
        # Once the old key is retired, what it signed is dead.
        with pytest.raises(TokenInvalid):
            tokens.load_confirm_token(token)
        assert tokens.code_matches(code_hash, ALICE.id, "042424") is False
    finally:
        cfg.update(SECRET_KEY=saved, SECRET_KEY_FALLBACKS=[])


def test_token_dies_when_the_address_changes(app, make_core_user):
    with app.app_context():
        user = make_core_user()
        token = tokens.make_confirm_token(user)
        assert confirmation.user_for_token(token).id == user.id
        db.session.execute(update(User).where(User.id == user.id).values(
            email="mallory@example.org", email_key="mallory@example.org"))
        db.session.commit()
        with pytest.raises(TokenInvalid):
            confirmation.confirm(token)
        assert db.session.get(User, user.id).is_email_confirmed is False


def test_token_for_unknown_user_is_invalid(app):
    with app.app_context():
        token = tokens.make_confirm_token(SimpleNamespace(id=999_999, email_key="x@y.org"))
        with pytest.raises(TokenInvalid):
            confirmation.confirm(token)


# -- codes ---------------------------------------------------------------------

@pytest.mark.parametrize("value", ["000000", "123456", "999999", "042424"])
def test_is_code_accepts_six_ascii_digits(value):
    assert tokens.is_code(value) is True


@pytest.mark.parametrize("value", [
    "\uff11\uff12\uff13\uff14\uff15\uff16",  # fullwidth digits
    "\u0661\u0662\u0663\u0664\u0665\u0666",  # Arabic-Indic digits
    "\u0967\u0968\u0969\u096a\u096b\u096c",  # Devanagari digits
    "123456\n", " 123456", "123456 ", "12345", "1234567", "12_345", "12 3456",
    "+12345", "-12345", "1e5000", "12345a", "", "\x00123456",
    123456, 12345, True, False, None, 123456.0, ["123456"], b"123456",
])
def test_is_code_rejects_everything_else(value):
    assert tokens.is_code(value) is False


def test_new_code_is_six_ascii_digits_uniformly(ctx):
    codes = [tokens.new_code() for _ in range(3000)]
    assert all(tokens.is_code(c) for c in codes)
    assert any(c.startswith("0") for c in codes)  # leading zeros are kept (~10 % of codes)
    assert len(set(codes)) > 2900                 # ~4.5 collisions expected in 3000 draws


def test_code_hash_is_keyed_and_bound_to_the_user(ctx):
    stored = tokens.hash_code(7, "123456")
    assert re.fullmatch(r"[0-9a-f]{64}", stored) and "123456" not in stored
    assert tokens.code_matches(stored, 7, "123456") is True
    assert tokens.code_matches(stored, 8, "123456") is False  # another account's code
    assert tokens.code_matches(stored, 7, "123457") is False
    assert stored != tokens.hash_code(7, "123456", secret_key=NEW_KEY)


def test_code_matches_compares_in_constant_time(ctx, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    stored = tokens.hash_code(7, "123456")
    assert tokens.code_matches(stored, 7, "654321") is False
    assert calls and all(a == stored for a, _ in calls)
