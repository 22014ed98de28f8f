"""Normalised keys and email checks: one account per mailbox and per username."""

from __future__ import annotations

import pytest
from sqlalchemy import func
from sqlalchemy import select

from regapp.auth.profiles.base import Email
from regapp.core import confirmation
from regapp.core import identity
from regapp.core.errors import FieldErrors
from regapp.core.identity import NormalizedEmail
from regapp.core.identity import email_key
from regapp.core.identity import normalize_email
from regapp.core.identity import username_key
from regapp.extensions import db
from regapp.models import OutboxMessage
from regapp.models import User

PASSWORD = "Str0ng-passphrase"

# (registered first, then tried) pairs that must collide (SECURITY A9).
USERNAME_COLLISIONS = [
    ("Admin", "ADMIN"),
    ("Admin", "\uff21\uff44\uff4d\uff49\uff4e"),      # fullwidth Ａｄｍｉｎ
    ("admin", "\uff21\uff24\uff2d\uff29\uff2e"),      # fullwidth ＡＤＭＩＮ
    ("kate", "\u212aate"),                           # KELVIN SIGN
    ("sam", "\u017fam"),                             # LATIN SMALL LETTER LONG S
    ("stra\u00dfe", "STRASSE"),                      # ß casefolds to ss
    ("finn", "\ufb01nn"),                            # ﬁ ligature
    ("ivan", "\u2160van"),                           # ROMAN NUMERAL ONE
    ("iamthe\u03a9", "iamthe\u2126"),                # OHM SIGN vs GREEK OMEGA
]
# Different under NFKC + casefold (UTR #36), so different accounts.
USERNAME_DISTINCT = [
    ("mike", "m\u0131ke"),      # dotless ı: casefold keeps it (SECURITY §0.1 finding 7)
    ("alice", "\u0430lice"),    # Cyrillic а: a confusable, not caught by NFKC (A9)
    ("julian", "j\u00fclian"),  # accents are significant
]


def count(model):
    """Rows of ``model``; for the outbox, confirmation emails only (a refused
    duplicate sign-up also mails the address's owner, kind ``duplicate``)."""
    stmt = select(func.count()).select_from(model)
    if model is OutboxMessage:
        stmt = stmt.where(OutboxMessage.kind == "confirm")
    return db.session.scalar(stmt)


@pytest.mark.parametrize(("first", "second"), USERNAME_COLLISIONS)
def test_username_keys_collide(first, second):
    assert username_key(first) == username_key(second)


@pytest.mark.parametrize(("first", "second"), USERNAME_DISTINCT)
def test_username_keys_stay_distinct(first, second):
    assert username_key(first) != username_key(second)


def test_email_key_is_case_insensitive():
    assert email_key("Mike@Example.Org") == email_key("mike@example.org") == "mike@example.org"


@pytest.mark.parametrize("address", [
    "john@example.com", "macvon@keeling.info", "tim.smith12@aol.com", "user@gmail.com",
    "a.b+tag@sub.example.co.uk",
])
def test_normalize_email_accepts_seed_examples(address):
    assert normalize_email(address) == address


@pytest.mark.parametrize(("address", "stored"), [
    ("mike@EXAMPLE.ORG", "mike@example.org"),          # the domain is lowercased...
    ("Mike@Example.Org", "Mike@example.org"),          # ...the local part kept as typed
    ("user@ex\u00e4mple.org", "user@xn--exmple-cua.org"),  # IDN domains as punycode
    ("kate@\u212aate.org", "kate@kate.org"),           # IDNA maps the Kelvin sign
    ("x@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.org", "x@example.org"),
])
def test_normalize_email_canonical_forms(address, stored):
    assert normalize_email(address) == stored


@pytest.mark.parametrize("address", [
    "a@b@c.com", "victim@gmail.com@attacker.com", "user@", "@x.com", "user@x..com",
    "user @x.com", "user@x.com a", "user@x.com\n", "user@x.com%00", "us\u0000er@x.com",
    '"a\r\nBcc: v@evil.io"@x.com', "user@x.com\r\nBcc: v@evil.io", "plainaddress", "",
    "user@" + "a" * 64 + ".com",
    # Non-ASCII local parts: smtplib can't send them (SECURITY A10).
    "m\u0131ke@example.org", "j\u00f6rg@x.de", "\u212aate@example.org", "\u017fam@example.org",
    "stra\u00dfe@example.org", "\uff2dike@example.org",
])
def test_normalize_email_rejects_with_a_code(address):
    with pytest.raises(FieldErrors) as exc:
        normalize_email(address)
    assert exc.value.codes() == {"email": ["invalid"]}


def test_normalize_email_rejects_overlong_before_parsing():
    with pytest.raises(FieldErrors) as exc:
        normalize_email("a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".com")
    assert exc.value.codes() == {"email": ["max_length"]}
    assert exc.value.errors[0].params == {"max_length": 254}


@pytest.mark.parametrize(("first", "second"), USERNAME_COLLISIONS)
def test_second_username_that_maps_onto_the_first_is_refused(app, first, second, make_core_user):
    with app.app_context():
        make_core_user("first@example.org", first)
        with pytest.raises(FieldErrors) as exc:
            make_core_user("second@example.org", second)
        assert exc.value.codes() == {"username": ["unique"]}
        assert count(User) == 1


@pytest.mark.parametrize(("first", "second"), USERNAME_DISTINCT)
def test_distinct_usernames_are_separate_accounts(app, first, second, make_core_user):
    with app.app_context():
        make_core_user("first@example.org", first)
        make_core_user("second@example.org", second)
        assert count(User) == 2


@pytest.mark.parametrize(("first", "second", "code"), [
    ("mike@example.org", "MIKE@EXAMPLE.ORG", "unique"),
    ("mike@example.org", "Mike@Example.Org", "unique"),
    ("kate@kate.org", "kate@\u212aate.org", "unique"),          # Kelvin sign in the domain
    ("sam@sam.org", "sam@\u017fam.org", "unique"),              # long s in the domain
    ("x@example.org", "x@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.org", "unique"),
    ("mike@example.org", "m\u0131ke@example.org", "invalid"),   # dotless ı in the local part
    ("kate@example.org", "\u212aate@example.org", "invalid"),
    ("sam@example.org", "\u017fam@example.org", "invalid"),
    ("strasse@example.org", "stra\u00dfe@example.org", "invalid"),
])
def test_second_email_that_maps_onto_the_first_is_refused(app, first, second, code, make_core_user):
    with app.app_context():
        make_core_user(first)
        with pytest.raises(FieldErrors) as exc:
            make_core_user(second)
        assert exc.value.codes() == {"email": [code]}
        assert count(User) == 1
        assert count(OutboxMessage) == 1


@pytest.mark.parametrize(("first", "second"), [
    ("mike@ixample.org", "mike@\u0131xample.org"),   # a different IDN domain (Django's test)
    ("julian@cure53.de", "julian@c\u00fcre53.de"),   # accents are a different domain
    ("ab@gmail.com", "a.b@gmail.com"),               # no provider-specific folding
    ("ab@gmail.com", "ab+x@gmail.com"),
])
def test_distinct_addresses_are_separate_accounts(app, first, second, make_core_user):
    with app.app_context():
        make_core_user(first)
        user = make_core_user(second)
        assert count(User) == 2
        assert user.email == normalize_email(second)


def test_mail_goes_to_the_stored_address(app, deliver, smtp, make_core_user):
    with app.app_context():
        user = make_core_user("Mike@Example.Org", "mike")
        assert user.email == "Mike@example.org"
        # A resend asked for with another spelling still mails the stored address.
        assert confirmation.resend_confirmation("MIKE@EXAMPLE.ORG") is True
        other = make_core_user("mike@\u0131xample.org")
        assert other.email == "mike@xn--xample-o9a.org"
    messages = deliver()
    assert [m["To"] for m in messages] == ["Mike@example.org", "Mike@example.org",
                                           "mike@xn--xample-o9a.org"]
    assert [rcpts for _, rcpts in smtp.recorder.envelopes] == [
        ["Mike@example.org"], ["Mike@example.org"], ["mike@xn--xample-o9a.org"]]


def test_the_email_field_hands_over_the_normalised_address():
    value = Email().deserialize(" Mike@Example.Org ")
    assert value == "Mike@example.org" and isinstance(value, NormalizedEmail)


def test_the_core_normalises_once(app, monkeypatch, make_core_user):
    normalized = normalize_email("Mike@Example.Org")
    calls = []
    monkeypatch.setattr(identity, "validate_email", lambda *a, **kw: calls.append(a))
    with app.app_context():
        user = make_core_user(normalized, "mike")
        assert user.email == "Mike@example.org" and type(user.email) is str
    assert calls == []  # not parsed again


def test_the_core_normalises_raw_input(app, make_core_user):
    with app.app_context():
        assert make_core_user("Mike@Example.Org", "mike").email == "Mike@example.org"
        with pytest.raises(FieldErrors) as exc:
            make_core_user("not an address", "other")
        assert exc.value.codes() == {"email": ["invalid"]}
