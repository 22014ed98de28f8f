"""Issue 11: every lookup by address normalises it exactly as registration stores it.

``x@straße.de`` is stored as ``x@xn--strae-oqa.de`` (IDNA 2008 keeps ß); its
owner types it as registered. Casefolding alone turns it into ``x@strasse.de``,
a different account whose owner must never pay for the other's failures.
"""

from __future__ import annotations

import hashlib
import re

import pytest
import sqlalchemy as sa

from regapp import create_app
from regapp.core.identity import email_key
from regapp.extensions import db
from regapp.models import EmailConfirmation
from regapp.models import User
from tests.test_confirmation import other_code

ESZETT = "x@stra\u00dfe.de"           # as its owner types it
STORED = "x@xn--strae-oqa.de"         # as registration stores it
OTHER = "x@strasse.de"                # somebody else
TYPED = [ESZETT, "X@STRA\u00dfE.DE", " x@Stra\u00dfe.de ", STORED]
VALIDATION = "/api/users/validation"
RESEND = "/api/resend-confirmation/"
LARAVEL_BODY = {"first_name": "A", "last_name": "B", "postal_code": "5673RE",
                "password": "Str0ng-passphrase"}


@pytest.fixture
def two_owners(client, last_confirmation):
    """x@straße.de (laravel) and x@strasse.de (drf); each one's ``(link, token, code)``."""
    r = client.post("/api/users/register", json={**LARAVEL_BODY, "email": ESZETT})
    assert (r.status_code, r.get_json()["email"]) == (201, STORED)
    eszett = last_confirmation(to=STORED)
    r = client.post("/api/register/", json={"username": "other", "email": OTHER,
                                            "password": "Str0ng-passphrase"})
    assert r.status_code == 201
    return eszett, last_confirmation(to=OTHER)


def state(app, email) -> tuple:
    """``(confirmed, code_failures, attempts on the newest code)`` of ``email``'s account."""
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email_key == email))
        attempts = db.session.scalar(
            sa.select(EmailConfirmation.attempts).where(EmailConfirmation.user_id == user.id)
            .order_by(EmailConfirmation.id.desc()).limit(1))
        return bool(user.is_email_confirmed), user.code_failures, attempts


def test_code_confirmation_with_the_address_as_typed(app, client, two_owners):
    (_, _, code), _ = two_owners
    for i, typed in enumerate(TYPED, 1):
        r = client.post(VALIDATION, json={"email": typed, "token": other_code(code, i)})
        assert (r.status_code, r.get_json()) == (401, {"message": "Token is incorrect"})
    # The failures were charged to x@straße.de, none to x@strasse.de.
    assert state(app, STORED) == (False, 4, 4)
    assert state(app, OTHER) == (False, 0, 0)
    r = client.post(VALIDATION, json={"email": ESZETT, "token": code})
    assert (r.status_code, r.get_json()) == (201, {"message": "Validated"})
    assert state(app, STORED)[0] is True and state(app, OTHER)[0] is False


def test_a_code_never_confirms_the_lookalike_account(app, client, two_owners):
    (_, _, eszett_code), (_, _, other_code_) = two_owners
    r = client.post(VALIDATION, json={"email": OTHER, "token": eszett_code})
    assert r.status_code == 401
    r = client.post(VALIDATION, json={"email": ESZETT, "token": other_code_})
    assert r.status_code == 401
    assert state(app, STORED)[0] is False and state(app, OTHER)[0] is False
    r = client.post(VALIDATION, json={"email": OTHER, "token": other_code_})
    assert r.status_code == 201


def test_laravel_token_plus_email_with_the_address_as_typed(app, client, two_owners):
    (_, eszett_token, _), (_, other_token, _) = two_owners
    r = client.post(VALIDATION, json={"email": OTHER, "token": eszett_token})
    assert (r.status_code, r.get_json()) == (401, {"message": "Token is incorrect"})
    r = client.post(VALIDATION, json={"email": ESZETT, "token": other_token})
    assert r.status_code == 401
    r = client.post(VALIDATION, json={"email": "X@Stra\u00dfe.de", "token": eszett_token})
    assert (r.status_code, r.get_json()) == (201, {"message": "Validated"})
    r = client.post(VALIDATION, json={"email": ESZETT, "token": eszett_token})
    assert (r.status_code, r.get_json()) == (409, {"message": "The email is already validated"})
    assert state(app, OTHER)[0] is False


@pytest.mark.parametrize("route", ["api", "page"])
def test_resend_with_the_address_as_typed(client, deliver, smtp, two_owners, route):
    deliver()
    smtp.clear()
    for typed in TYPED:
        if route == "api":
            r = client.post(RESEND, json={"email": typed})
        else:
            r = client.post("/confirm-email/resend", data={"email": typed})
        assert r.status_code == 202
    assert [m["To"] for m in deliver()] == [STORED] * len(TYPED)


def test_resend_of_the_lookalike_mails_only_its_owner(client, deliver, smtp, two_owners):
    deliver()
    smtp.clear()
    assert client.post(RESEND, json={"email": OTHER}).status_code == 202
    assert [m["To"] for m in deliver()] == [OTHER]


# -- the per-email rate-limit bucket ---------------------------------------------------

def validation(client, email, token, ip):
    return client.post(VALIDATION, json={"email": email, "token": token},
                       environ_base={"REMOTE_ADDR": ip})


@pytest.mark.config(RATELIMIT_ENABLED=True, RATELIMIT_CONFIRMATION="100/minute",
                    RATELIMIT_CONFIRMATION_PER_EMAIL="3/minute")
def test_failures_fill_the_bucket_of_the_account_they_name(app, client, two_owners):
    (_, _, eszett_code), (_, _, strasse_code) = two_owners
    for i, typed in enumerate((ESZETT, "X@STRA\u00dfE.DE", STORED)):
        r = validation(client, typed, other_code(eszett_code, i + 1), f"192.0.2.{i}")
        assert r.status_code == 401
    # x@straße.de's bucket is full, whichever way the address is written ...
    for typed in TYPED:
        r = validation(client, typed, eszett_code, "192.0.2.50")
        assert r.status_code == 429 and r.headers["Retry-After"]
    # ... and x@strasse.de's owner was charged nothing.
    r = validation(client, OTHER, strasse_code, "192.0.2.50")
    assert (r.status_code, r.get_json()) == (201, {"message": "Validated"})


def _bucket_keys(app) -> list[str]:
    storage = app.extensions["regapp.limiter"].storage.storage
    return [key for key in storage if "confirmation:email" in key]


@pytest.mark.config(RATELIMIT_ENABLED=True)
def test_bucket_keys_are_hmacs_never_addresses_nor_bare_hashes(app, client, two_owners):
    validation(client, ESZETT, "000000", "192.0.2.1")
    [key] = _bucket_keys(app)
    validation(client, STORED, "000000", "192.0.2.2")
    validation(client, " X@STRA\u00dfE.de", "000000", "192.0.2.3")
    assert _bucket_keys(app) == [key]  # one bucket for every way of writing it
    validation(client, OTHER, "000000", "192.0.2.4")
    assert len(_bucket_keys(app)) == 2
    digest = re.search(r"/([0-9a-f]{32})/confirmation:email", key).group(1)
    for clear in (STORED, ESZETT, email_key(ESZETT), OTHER):
        assert clear not in key
        assert digest not in hashlib.sha256(clear.encode()).hexdigest()
    # Keyed under SECRET_KEY: another deployment's key for the same address differs.
    other = create_app({"TESTING": True, "RATELIMIT_ENABLED": True,
                        "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
                        "SECRET_KEY": "another-secret-key-with-enough-entropy-98765"})
    other.test_client().post(VALIDATION, json={"email": STORED, "token": "000000"})
    [other_key] = _bucket_keys(other)
    assert other_key != key
    with other.app_context():
        db.engine.dispose()
