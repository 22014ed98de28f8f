"""SECURITY.md section A (bad input) on the five register routes and the three
confirmation endpoints, through HTTP only. Value lists run as subtests.

Already proven elsewhere (item -> test), not repeated here:
  A1 null required fields      -> test_cross_profile.py::test_a1_null_required_field_is_...
  A1 missing/blank GET token   -> test_confirmation.py::test_blank_or_missing_token
  A2 UTF-16, NUL bodies, broken multipart -> test_api_errors.py::test_never_html_never_500
  A2 chunked body past limit   -> test_api_errors.py::test_streamed_body_over_the_limit_is_...
  A3 identical answers         -> test_cross_profile.py::test_a3_encodings_give_identical_answers
  A4 every field, wrong types  -> test_cross_profile.py::test_a4_wrong_type_is_a_validation_error
  A4 fixed token values        -> profiles/test_laravel.py::test_validation_token_wrong_types
  A4/A5 signed token at /api/users/validation -> profiles/test_laravel.py::
                                  test_validated_with_link_token
  A6 repeated token on the page -> test_pages.py::test_repeated_or_missing_token_in_the_form_...
  A9 confusables stay distinct -> core/test_identity.py::test_distinct_usernames_are_separate_...
  A10 deliverability check     -> profiles/test_laravel.py::test_domain_without_mail_is_rejected_...
  A11 resend to stored address -> test_confirmation.py::test_resend_mails_the_stored_address
  A11 dotless-i IDN domain     -> core/test_identity.py::test_distinct_addresses_are_separate_...
  A12 similarity messages      -> profiles/test_drf.py::test_password_policy_messages_in_...,
                                  profiles/test_jwt.py::test_django_password_messages
  A12 Rails confirmation       -> profiles/test_jsonapi.py::test_rails_messages
  A12 salts, argon2id, truncation, NFKC -> core/test_passwords.py
  A13 token on /confirm-email/ -> test_pages.py::test_token_in_the_url_is_never_reflected_unescaped
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from werkzeug.datastructures import MultiDict

from regapp.core.passwords import verify_password
from regapp.extensions import db
from regapp.models import User
from tests.dbstate import counts
from tests.profile_matrix import CASES
from tests.profile_matrix import PROFILES
from tests.profile_matrix import USERNAME_PROFILES
from tests.profile_matrix import VALIDATION
from tests.profile_matrix import assert_confirmed_answer
from tests.profile_matrix import assert_http_error
from tests.profile_matrix import assert_invalid
from tests.profile_matrix import assert_malformed
from tests.profile_matrix import assert_refused_answer
from tests.profile_matrix import assert_rejected
from tests.profile_matrix import body_of
from tests.profile_matrix import confirm
from tests.profile_matrix import created
from tests.profile_matrix import messages
from tests.profile_matrix import post
from tests.profile_matrix import raw
from tests.profile_matrix import value_of_length
from tests.smtp import html_part
from tests.smtp import text_part

LARAVEL = CASES["laravel"]
# The validation endpoint answers transport errors in laravel's format.
TARGETS = [*PROFILES, dataclasses.replace(LARAVEL, name="laravel", register=VALIDATION)]
TARGET_IDS = [*map(str, PROFILES), "validation"]
EMAIL = "ann@example.org"
FAST = 1.0  # seconds: a rejection never waits for hashing or parsing
GET_ENDPOINTS = {"drf": ("/api/confirm-email/", "token_id"),
                 "jsonapi": ("/api/users/verification", "email_token")}
by_profile = pytest.mark.parametrize("case", PROFILES, ids=str)
by_username_profile = pytest.mark.parametrize("case", USERNAME_PROFILES, ids=str)


def row(app, email: str = EMAIL) -> User | None:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email_key == email.lower()))
        if user is not None:
            db.session.expunge(user)
        return user


def other(case, among=PROFILES):
    """The next profile: a first registration goes through a different adapter."""
    return among[(among.index(case) + 1) % len(among)]


def with_extra_key(payload: dict, key: str, value: str) -> bytes:
    """``payload`` as JSON with ``key`` appended again (raw JSON ``value``)."""
    return json.dumps(payload)[:-1].encode() + f", {json.dumps(key)}: {value}}}".encode()


@pytest.fixture
def registered(client, last_confirmation):
    """An unconfirmed laravel account and its emailed (token, code)."""
    created(LARAVEL, post(client, LARAVEL.register, LARAVEL.payload(EMAIL)))
    _, token, code = last_confirmation()
    return token, code


# -- A1 body shape -------------------------------------------------------------------------

EMPTY_BODIES = {"no-body": (b"", None), "empty-json": (b"", "application/json"),
                "{}": (b"{}", "application/json"),
                "empty-form": (b"", "application/x-www-form-urlencoded"),
                "empty-multipart": (b"", "multipart/form-data; boundary=x")}
NOT_OBJECTS = [b"null", b"[]", b'[{"email": "a@x.io"}]', b'"x"', b"123", b"true", b"1.5"]


@by_profile
def test_a1_body_shapes(app, client, subtests, case):
    for kind, (data, content_type) in EMPTY_BODIES.items():
        with subtests.test(body=kind):
            assert_invalid(case, raw(client, case.register, data, content_type), *case.required)
    for data in NOT_OBJECTS:
        with subtests.test(body=data):
            assert_malformed(case, raw(client, case.register, data))
    assert counts(app) == (0, 0)


def test_a1_validation_endpoint_body_shapes(app, client, subtests, registered):
    for kind, (data, content_type) in [*EMPTY_BODIES.items(),
                                       ("nulls", (b'{"email": null, "token": null}',
                                                  "application/json"))]:
        with subtests.test(body=kind):
            r = raw(client, VALIDATION, data, content_type)
            assert_invalid(LARAVEL, r, "email", "token")
    for data in NOT_OBJECTS:
        with subtests.test(body=data):
            assert_malformed(LARAVEL, raw(client, VALIDATION, data))
    assert row(app).is_email_confirmed is False


# -- A2 malformed or unsupported media -----------------------------------------------------

XXE = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
       b"<user><email>&e;</email></user>")
MEDIA = {  # kind -> (body, Content-Type, status)
    "truncated-json": (b'{"email":', "application/json", 400),
    "invalid-utf8": (b'{"email": "\xff"}', "application/json", 400),
    "bare-ff": (b"\xff", "application/json", 400),
    "utf8-bom": (b"\xef\xbb\xbf{}", "application/json", 400),
    "text-plain": (b'{"email": "a@x.io"}', "text/plain", 415),
    "json-type-form-body": (b"email=a%40x.io&password=x", "application/json", 400),
    "no-content-type": (b'{"email": "a@x.io"}', None, 415),
    "xml-xxe": (XXE, "application/xml", 415),
    "text-xml-xxe": (XXE, "text/xml", 415),
}


@pytest.mark.parametrize("case", TARGETS, ids=TARGET_IDS)
def test_a2_malformed_or_unsupported_media(app, client, subtests, case):
    for kind, (data, content_type, status) in MEDIA.items():
        with subtests.test(kind=kind):
            r = raw(client, case.register, data, content_type)
            assert assert_rejected(case, r) == status
            assert b"root:" not in r.data and b"passwd" not in r.data  # XML never parsed
    assert counts(app) == (0, 0)


def test_a2_jsonapi_errors_carry_a_charset(client):
    r = raw(client, CASES["jsonapi"].register, b"{", "application/json")
    assert r.headers["Content-Type"] == "application/vnd.api+json; charset=utf-8"


# -- A3 a file part where a field is expected ----------------------------------------------

@by_profile
def test_a3_file_part_named_email_is_rejected(app, client, case):
    data = case.payload(EMAIL) | {case.email: (io.BytesIO(EMAIL.encode()), "email.txt")}
    r = client.post(case.register, data=data, content_type="multipart/form-data")
    assert_invalid(case, r, case.email)
    assert counts(app) == (0, 0)


def test_a3_file_part_named_token_is_rejected(app, client, registered):
    _, code = registered
    r = client.post(VALIDATION, data={"email": EMAIL, "token": (io.BytesIO(code.encode()), "t")},
                    content_type="multipart/form-data")
    assert_invalid(LARAVEL, r, "token")
    assert row(app).is_email_confirmed is False


# -- A4 type confusion at the validation endpoint ------------------------------------------

def test_a4_typed_variants_of_the_real_code_never_match(app, client, subtests, registered):
    _, code = registered
    number = int(code)
    variants = {"true": True, "false": False, "list": [number], "object": {"$gt": ""},
                "float": float(number), "negative": -number or -1,
                "seven-digits": number + 1_000_000, "string-list": [code]}
    for shape, value in variants.items():
        with subtests.test(token=shape):
            r = client.post(VALIDATION, json={"email": EMAIL, "token": value})
            assert_invalid(LARAVEL, r, "token")
    for value in (["ann@example.org"], {"$ne": None}, 1, True):
        with subtests.test(email=value):
            r = client.post(VALIDATION, json={"email": value, "token": code})
            assert_invalid(LARAVEL, r, "email")
    assert row(app).is_email_confirmed is False


def test_a4_token_zero_is_just_a_wrong_code(app, client, registered):
    """The document types ``token`` as an integer: 0 is the code 000000, zero-padded."""
    if registered[1] == "000000":
        pytest.skip("the emailed code happens to be 000000")
    assert_refused_answer("laravel", client.post(VALIDATION, json={"email": EMAIL, "token": 0}))
    assert row(app).is_email_confirmed is False


# -- A5 code look-alikes: a code is exactly [0-9]{6} ---------------------------------------

LOOKALIKES = {
    "fullwidth": lambda c: "".join(chr(0xFF10 + int(d)) for d in c),
    "arabic-indic": lambda c: "".join(chr(0x0660 + int(d)) for d in c),
    "trailing-newline": lambda c: c + "\n", "leading-space": lambda c: " " + c,
    "trailing-space": lambda c: c + " ", "leading-tab": lambda c: "\t" + c,
    "crlf": lambda c: c + "\r\n", "underscore": lambda c: c[:2] + "_" + c[2:],
    "plus-sign": lambda c: "+" + c, "fullwidth-zero": lambda c: "\uff10",
}


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_a5_lookalikes_of_the_real_code_are_incorrect(app, client, subtests, registered,
                                                      encoding):
    _, code = registered
    for kind, make in LOOKALIKES.items():
        with subtests.test(kind=kind):
            r = post(client, VALIDATION, {"email": EMAIL, "token": make(code)}, encoding)
            assert_refused_answer("laravel", r)
            assert row(app).is_email_confirmed is False
    # None of them counted as a guess: the real code still works.
    r = post(client, VALIDATION, {"email": EMAIL, "token": code}, encoding)
    assert_confirmed_answer("laravel", r, EMAIL)


def test_a5_numeric_literals_are_rejected(app, client, subtests, registered):
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1e5", b"123456e0",
                    b"0x1E240"):
        with subtests.test(literal=literal):
            data = b'{"email": "ann@example.org", "token": ' + literal + b"}"
            assert assert_rejected(LARAVEL, raw(client, VALIDATION, data)) in (400, 422)
    assert row(app).is_email_confirmed is False


def test_a5_padded_link_tokens_are_refused(app, client, subtests, registered):
    token, _ = registered
    for endpoint in GET_ENDPOINTS:
        for kind in ("leading-space", "trailing-newline", "trailing-space", "leading-tab"):
            with subtests.test(endpoint=endpoint, kind=kind):
                r = confirm(client, endpoint, EMAIL, LOOKALIKES[kind](token))
                assert_refused_answer(endpoint, r)
    assert row(app).is_email_confirmed is False
    assert_confirmed_answer("drf", confirm(client, "drf", EMAIL, token), EMAIL)


# -- A6 parameter pollution ----------------------------------------------------------------

@by_profile
def test_a6_a_repeated_field_is_a_type_error(app, client, subtests, case):
    """payload.py's rule: a field given twice becomes a list and fails its type check."""
    with subtests.test(encoding="json-duplicate-key"):
        data = with_extra_key(case.payload(EMAIL), case.email, '"bob@example.org"')
        assert_invalid(case, raw(client, case.register, data), case.email)
    for encoding in ("form", "multipart"):
        with subtests.test(encoding=encoding):
            data = MultiDict([*case.payload(EMAIL).items(), (case.email, "bob@example.org")])
            assert_invalid(case, post(client, case.register, data, encoding), case.email)
    assert counts(app) == (0, 0)


def test_a6_repeated_token_parameter_never_confirms(app, client, subtests, registered):
    token, _ = registered
    for endpoint, (path, name) in GET_ENDPOINTS.items():
        for values in ([token, "garbage"], ["garbage", token], [token, token]):
            with subtests.test(endpoint=endpoint, values=len(values[0])):
                r = client.get(path, query_string=MultiDict([(name, v) for v in values]))
                assert_refused_answer(endpoint, r)
    assert row(app).is_email_confirmed is False


@by_profile
def test_a6_a_post_never_reads_the_query_string(app, client, case):
    r = client.post(case.register, query_string=case.payload(EMAIL), json={})
    assert_invalid(case, r, *case.required)
    r = client.post(case.register, query_string={case.email: "query@example.org"},
                    json=case.payload(EMAIL))
    assert created(case, r)["email"] == EMAIL
    assert counts(app) == (1, 1) and row(app, "query@example.org") is None


def test_a6_confirmation_reads_only_its_own_source(app, client, subtests, registered):
    token, code = registered
    with subtests.test(endpoint="laravel-query"):
        r = client.post(VALIDATION, query_string={"email": EMAIL, "token": code}, json={})
        assert_invalid(LARAVEL, r, "email", "token")
    for endpoint, (path, _) in GET_ENDPOINTS.items():
        with subtests.test(endpoint=f"{endpoint}-body"):
            r = client.get(path, json={"token_id": token, "email_token": token})
            assert_refused_answer(endpoint, r)
    assert row(app).is_email_confirmed is False


# -- A7 mass assignment --------------------------------------------------------------------

GIVEN_API_TOKEN = "de305d5475b4431badb2eb6b9e546014"
PRIVILEGED = {
    "account_type": "driver", "role": "admin", "is_email_confirmed": True,
    "email_confirmed_at": "2020-01-01T00:00:00Z", "confirmed_at": "2020-01-01T00:00:00Z",
    "is_staff": True, "is_superuser": True, "is_admin": True, "id": 999, "user_id": 998,
    "api_token": GIVEN_API_TOKEN, "api_token_hash": "0" * 64, "avatar": "http://evil.example/a",
    "password_hash": "plain", "email_key": "victim@example.org", "code_failures": -100,
}


@by_profile
def test_a7_privileged_fields_are_ignored(app, client, subtests, case):
    for encoding in ("json", "form", "multipart"):
        with subtests.test(encoding=encoding):
            extra = PRIVILEGED if encoding == "json" else {k: str(v) for k, v in
                                                           PRIVILEGED.items()}
            email = f"{encoding}@example.org"
            r = post(client, case.register, case.payload(email) | extra, encoding)
            body = created(case, r)
            user = row(app, email)
            assert user.account_type == case.account_type
            assert user.is_email_confirmed is False and user.confirmed_at is None
            assert user.id < 10 and str(body.get("id", user.id)) == str(user.id)
            assert user.avatar is None and user.code_failures == 0
            assert user.email_key == email and user.password_hash.startswith("$argon2id$")
            given = hashlib.sha256(GIVEN_API_TOKEN.encode()).hexdigest()
            assert user.api_token_hash not in (given, "0" * 64)
            assert (user.api_token_hash is None) is (case.name != "envelope")
            answer = r.get_data(as_text=True)
            assert GIVEN_API_TOKEN not in answer and "driver" not in answer
            assert "admin" not in answer and "evil.example" not in answer


# -- A8 size limits ------------------------------------------------------------------------

def test_a8_ten_megabytes_is_413_fast(app, client, subtests):
    data = b'{"pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    for case, name in zip(TARGETS, TARGET_IDS, strict=True):
        with subtests.test(route=name):
            start = time.perf_counter()
            r = raw(client, case.register, data)
            assert time.perf_counter() - start < FAST
            assert_http_error(case, r, 413)
    assert counts(app) == (0, 0)


def limited(case, length_of, name, limit):
    """A body for ``case`` whose ``name`` is ``length_of(limit)`` characters long."""
    value = value_of_length(case, name, length_of(limit))
    if value is None:
        return None
    data = case.payload(f"{name}@example.org") | {name: value}
    if name == "password" and case.name == "jsonapi":
        data["password_confirmation"] = value
    return data


@by_profile
def test_a8_every_field_limit_exactly(app, client, subtests, case):
    for name, limit in case.limits.items():
        with subtests.test(field=name, length=limit):
            data = limited(case, lambda n: n, name, limit)
            if data is not None:  # no postal code is 191 characters long
                body = created(case, post(client, case.register, data))
                assert name != case.email or body["email"] == data[case.email]
        with subtests.test(field=name, length=limit + 1):
            before = counts(app)
            data = limited(case, lambda n: n + 1, name, limit) or (
                case.payload("past@example.org") | {name: "1" * (limit + 1)})
            assert_invalid(case, post(client, case.register, data), name)
            assert counts(app) == before


def test_a8_confirmation_inputs_past_their_limit(app, client, subtests, registered):
    for name, size in (("email", 192), ("token", 513)):
        with subtests.test(field=name):
            data = {"email": EMAIL, "token": registered[1], name: "1" * size}
            assert_invalid(LARAVEL, client.post(VALIDATION, json=data), name)
    for endpoint in GET_ENDPOINTS:
        with subtests.test(endpoint=endpoint):
            start = time.perf_counter()
            r = confirm(client, endpoint, EMAIL, "A" * 100_000)
            assert time.perf_counter() - start < FAST
            assert_refused_answer(endpoint, r)
    assert row(app).is_email_confirmed is False


def test_a8_megabyte_password_is_413_under_the_default_limit(app, client, subtests):
    for case in PROFILES:
        with subtests.test(profile=case.name):
            data = case.payload(EMAIL, password="p" * 1024 * 1024)
            start = time.perf_counter()
            assert_http_error(case, post(client, case.register, data), 413)
            assert time.perf_counter() - start < FAST


@pytest.mark.config(MAX_CONTENT_LENGTH=4 * 1024 * 1024)
def test_a8_megabyte_password_is_refused_before_hashing(app, client, subtests):
    for case in PROFILES:
        with subtests.test(profile=case.name):
            data = case.payload(EMAIL, password="p" * 1024 * 1024)
            start = time.perf_counter()
            assert_invalid(case, post(client, case.register, data), "password")
            assert time.perf_counter() - start < FAST
    assert counts(app) == (0, 0)


# 64 code points with spaces, emoji and CJK: no composition rule applies (also A12).
PASSPHRASE = "correct horse 🔥 battery staple バッテリー 東京タワー 🐎🐴 ok go now!!!!!!!!!"


def test_a8_sixty_four_character_passphrase_is_accepted_everywhere(app, client, subtests):
    assert len(PASSPHRASE) == 64
    for case in PROFILES:
        with subtests.test(profile=case.name):
            email = f"{case}@example.org"
            created(case, post(client, case.register, case.payload(email, password=PASSPHRASE)))
            with app.app_context():
                assert verify_password(row(app, email).password_hash, PASSPHRASE)[0]
                assert not verify_password(row(app, email).password_hash, PASSPHRASE[:-1])[0]


# -- A9 Unicode usernames ------------------------------------------------------------------

USERNAME_COLLISIONS = {  # registered first -> tried second (NFKC + casefold collide)
    "ohm-sign": ("iamthe\u03a9", "iamthe\u2126"),
    "fullwidth": ("admin", "\uff21\uff24\uff2d\uff29\uff2e"),
    "ligature": ("finn", "\ufb01nn"),
    "sharp-s": ("stra\u00dfe", "STRASSE"),
    "roman-numeral": ("ivan", "\u2160van"),
    "kelvin": ("kate", "\u212aate"),
    "upper-case": ("mike", "MIKE"),
}
USERNAME_REJECTS = {
    "nfkc-expands-18x": "\ufdfa" * 150, "zero-width-space": "a\u200bb",
    "soft-hyphen": "a\u00adb", "rtl-override": "a\u202eb", "isolate": "a\u2066b",
    "c0-control": "a\x01b", "escape": "a\x1b[31mb", "tab": "a\tb", "newline": "a\nb",
    "cr": "a\rb", "del": "a\x7fb", "nul": "a\x00b", "space": "a b", "markup": "<b>",
}


@by_username_profile
def test_a9_username_collisions_are_duplicates(app, client, subtests, case):
    before = other(case, USERNAME_PROFILES)
    for kind, (first, second) in USERNAME_COLLISIONS.items():
        with subtests.test(kind=kind):
            data = before.payload(f"first-{kind}@example.org", username=first)
            created(before, post(client, before.register, data))
            data = case.payload(f"second-{kind}@example.org", username=second)
            r = post(client, case.register, data)
            assert r.status_code == case.invalid_status
            assert body_of(case, r) == case.duplicate_username
    assert counts(app) == (len(USERNAME_COLLISIONS),) * 2


@by_username_profile
def test_a9_unsafe_usernames_are_rejected(app, client, subtests, case):
    for kind, username in USERNAME_REJECTS.items():
        with subtests.test(kind=kind):
            r = post(client, case.register, case.payload(EMAIL, username=username))
            assert_invalid(case, r, "username")
    with subtests.test(kind="lone-surrogate"):
        payload = {k: v for k, v in case.payload(EMAIL).items() if k != "username"}
        data = with_extra_key(payload, "username", '"a\\ud800b"')
        assert_invalid(case, raw(client, case.register, data), "username")
    assert counts(app) == (0, 0)


# -- A10 email syntax ----------------------------------------------------------------------

BAD_EMAILS = [
    "a@b@c.com", "victim@gmail.com@attacker.com", "user@", "@x.com", "user@x..com",
    "user @x.com", "user@x.com a", "user@x.com%00", "user@x.com\r\nBcc: v@evil.io",
    '"a\r\nBcc: v@evil.io"@x.com', "user@x.com\nBcc: v@evil.io", "user@x.com,v@evil.io",
    "user@x.com;v@evil.io", "User <user@x.com>", "<user@x.com>", "user@" + "a" * 64 + ".com",
    "m\u0131ke@example.org", "j\u00f6rg@x.de", "user@-x.com", "user@x_y.com", "user",
]


@by_profile
def test_a10_malformed_addresses_are_rejected(app, client, subtests, case):
    for email in BAD_EMAILS:
        with subtests.test(email=email):
            r = post(client, case.register, case.payload(email))
            body = assert_invalid(case, r, case.email)
            assert messages(case, body, case.email) == [case.invalid_email]
    # Their own messages (null characters, too long), but rejected fast all the same.
    for kind, email in (("nul", "us\x00er@x.com"), ("30000-labels", "a@" + "a." * 30_000 + "c")):
        with subtests.test(email=kind):
            start = time.perf_counter()
            assert_invalid(case, post(client, case.register, case.payload(email)), case.email)
            assert time.perf_counter() - start < FAST
    assert counts(app) == (0, 0)


ACCEPTED_EMAILS = {  # sent -> stored and mailed
    "a@ex\u00e4mple.org": "a@xn--exmple-cua.org",
    "  b@example.org ": "b@example.org",
    "c@example.org\n": "c@example.org",
    "\tD@EXAMPLE.org": "D@example.org",
}


@by_profile
def test_a10_idn_stored_as_punycode_and_whitespace_trimmed(app, client, deliver, subtests,
                                                           case):
    for sent, stored_as in ACCEPTED_EMAILS.items():
        with subtests.test(email=sent):
            r = post(client, case.register, case.payload(sent))
            assert created(case, r)["email"] == stored_as
            assert row(app, stored_as).email == stored_as
    assert sorted(m["To"] for m in deliver()) == sorted(ACCEPTED_EMAILS.values())


# -- A11 one account per mailbox, whatever the spelling ------------------------------------

EMAIL_COLLISIONS = {  # kind -> (registered first, tried second, outcome)
    "upper": ("mike@example.org", "MIKE@EXAMPLE.ORG", "duplicate"),
    "title": ("mike@example.org", "Mike@Example.Org", "duplicate"),
    "kelvin-domain": ("kate@kate.org", "kate@\u212aate.org", "duplicate"),
    "fullwidth-domain": ("x@example.org", "x@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.org",
                         "duplicate"),
    "dotless-i": ("mike@example.org", "m\u0131ke@example.org", "invalid"),
    "kelvin-local": ("kate@example.org", "\u212aate@example.org", "invalid"),
    "long-s": ("sam@example.org", "\u017fam@example.org", "invalid"),
    "sharp-s": ("strasse@example.org", "stra\u00dfe@example.org", "invalid"),
}


@by_profile
def test_a11_case_mapping_never_makes_a_second_account(app, client, subtests, case):
    firsts = sorted({first for first, _, _ in EMAIL_COLLISIONS.values()})
    for email in firsts:
        created(other(case), post(client, other(case).register, other(case).payload(email)))
    for kind, (_, second, outcome) in EMAIL_COLLISIONS.items():
        with subtests.test(kind=kind):
            r = post(client, case.register, case.payload(second))
            if outcome == "duplicate":
                assert r.status_code == case.invalid_status
                assert body_of(case, r) == case.duplicate_email
            else:
                body = assert_invalid(case, r, case.email)
                assert messages(case, body, case.email) == [case.invalid_email]
    assert counts(app) == (len(firsts), len(firsts))


def test_a11_accents_and_gmail_dots_are_distinct_accounts(app, client):
    emails = ["julian@cure53.de", "julian@c\u00fcre53.de", "a.b@gmail.com", "ab@gmail.com",
              "ab+x@gmail.com"]
    for case, email in zip(PROFILES, emails, strict=True):
        created(case, post(client, case.register, case.payload(email)))
    assert counts(app) == (5, 5)


@by_profile
def test_a11_mail_goes_to_the_stored_address(app, client, deliver, smtp, case):
    created(case, post(client, case.register, case.payload("Mike@Example.Org")))
    post(client, other(case).register, other(case).payload("MIKE@EXAMPLE.ORG"))
    # The confirmation, then the owner's "someone tried to sign up" mail: both to
    # the stored address, never to the spelling the second sign-up used.
    confirm_msg, duplicate_msg = deliver()
    for msg in (confirm_msg, duplicate_msg):
        assert msg["To"] == row(app, "mike@example.org").email == "Mike@example.org"
    assert [env[1] for env in smtp.recorder.envelopes] == [["Mike@example.org"]] * 2


# -- A12 password policy per profile -------------------------------------------------------

DJANGO_SHORT = "This password is too short. It must contain at least 8 characters."
LARAVEL_SHORT = {"password": ["The password must be at least 8 characters."]}
COMMON = "This password is too common."
NUMERIC = "This password is entirely numeric."
LARAVEL_LEAKED = {"password": ["The given password has appeared in a data leak. "
                               "Please choose a different password."]}
JSONAPI_COMMON = "Password is too common"
SHORT_FOR_MIN_8 = {"drf": {"error": [DJANGO_SHORT]}, "envelope": -3, "laravel": LARAVEL_SHORT,
                   "jsonapi": None, "jwt": {"password": [DJANGO_SHORT]}}
# password -> {profile: expected (drf/jwt body, envelope error_code, laravel errors,
# jsonapi details), or None for accepted}
POLICY = {
    "Sh0r!": SHORT_FOR_MIN_8 | {"jsonapi": ["Password is too short (minimum is 6 characters)"]},
    "Sh0rt!": SHORT_FOR_MIN_8,
    "\U0001f525" * 7: SHORT_FOR_MIN_8,                 # counted in code points, not bytes
    "\U0001f525" * 8: dict.fromkeys(CASES),
    # Every profile refuses the common list, each in its own words (CONTRACT.md).
    "password": {"drf": {"error": [COMMON]}, "envelope": -3, "laravel": LARAVEL_LEAKED,
                 "jsonapi": [JSONAPI_COMMON], "jwt": {"password": [COMMON]}},
    "12345678": {"drf": {"error": [COMMON, NUMERIC]}, "envelope": -3, "laravel": LARAVEL_LEAKED,
                 "jsonapi": [JSONAPI_COMMON], "jwt": {"password": [COMMON, NUMERIC]}},
    "123456": {"drf": {"error": [DJANGO_SHORT, COMMON, NUMERIC]}, "envelope": -3,
               "laravel": LARAVEL_SHORT, "jsonapi": [JSONAPI_COMMON],
               "jwt": {"password": [DJANGO_SHORT, COMMON, NUMERIC]}},
    "qwerty123": {"drf": {"error": [COMMON]}, "envelope": -3, "laravel": LARAVEL_LEAKED,
                  "jsonapi": [JSONAPI_COMMON], "jwt": {"password": [COMMON]}},
}


@by_profile
def test_a12_each_profile_keeps_its_own_policy(app, client, subtests, case):
    for n, (password, outcomes) in enumerate(POLICY.items()):
        with subtests.test(password=password):
            before, expected = counts(app), outcomes[case.name]
            r = post(client, case.register, case.payload(f"p{n}@example.org", password=password))
            if expected is None:
                created(case, r)
                continue
            body = assert_invalid(case, r, "password")
            got = {"envelope": lambda b: b["error_code"],
                   "laravel": lambda b: b["errors"],
                   "jsonapi": lambda b: messages(case, b, "password")}.get(case.name,
                                                                           lambda b: b)(body)
            assert got == expected
            assert counts(app) == before


@by_profile
def test_a12_password_is_never_trimmed_nor_shown(app, client, deliver, smtp, case):
    password = "  Padded pass-phrase 42  "
    r = post(client, case.register, case.payload(EMAIL, password=password))
    created(case, r)
    user = row(app)
    with app.app_context():
        assert verify_password(user.password_hash, password)[0]
        assert not verify_password(user.password_hash, password.strip())[0]
        assert not verify_password(user.password_hash, password.upper())[0]
        stored = db.session.execute(text("SELECT * FROM outbox_messages")).all()
        stored += db.session.execute(text("SELECT * FROM users")).all()
    deliver()
    secret = password.strip()
    assert secret not in r.get_data(as_text=True)
    assert all(secret not in str(value) for line in stored for value in line)
    assert smtp.messages and all(secret not in m.as_string() for m in smtp.messages)


# -- A13 injection and output encoding -----------------------------------------------------

SQL = ["' OR 1=1--", '"; DROP TABLE users;--']
COLUMNS = {"number_phone": "phone"}


@by_profile
def test_a13_sql_payloads_are_data(app, client, subtests, case):
    n = 0
    for name in case.fields:
        for value in SQL:
            n += 1
            with subtests.test(field=name, value=value):
                email = f"sql{n}@example.org"
                data = case.payload(email) | {name: value}
                if name in ("password", "password_confirmation"):
                    data |= {"password": value, "password_confirmation": value}
                    data = {k: v for k, v in data.items() if k in case.fields}
                r = post(client, case.register, data)
                if r.status_code != 201:
                    assert_invalid(case, r, name)
                    continue
                user = row(app, email)
                with app.app_context():
                    if name.startswith("password"):
                        assert verify_password(user.password_hash, value)[0]
                    else:
                        assert getattr(user, COLUMNS.get(name, name)) == value
    with app.app_context():  # the table is still there, and whole
        assert db.session.scalar(select(func.count(User.id))) >= 1


MARKUP = "<img src=x onerror=alert(1)>"
TEMPLATES = "{{7*7}} ${7*7} {% raw %} #{7*7}"


@pytest.mark.parametrize("case", [CASES["laravel"], CASES["jwt"]], ids=str)
def test_a13_markup_templates_crlf_in_names_stay_data(app, client, deliver, caplog, case):
    data = case.payload(EMAIL, first_name=f"{MARKUP} {TEMPLATES}",
                        last_name="Eve\r\nBcc: v@evil.io \x1b[31mred\x1b[0m")
    created(case, post(client, case.register, data))
    [msg] = deliver()
    html, plain = html_part(msg), text_part(msg)
    # No free text from the request reaches the mail at all (SECURITY.md): not the
    # markup, not the template syntax, not a greeting by name.
    assert "<img" not in html and "onerror" not in html and "onerror" not in plain
    assert "{{" not in html + plain and "7*7" not in html + plain and "Eve" not in html + plain
    # Names never reach a header; the only recipient is the stored address.
    assert msg["To"] == EMAIL and msg["Bcc"] is None and msg["Cc"] is None
    assert all("evil" not in str(value) and "\x1b" not in str(value) for value in msg.values())
    assert all("\x1b" not in rec.getMessage() and "evil.io" not in rec.getMessage()
               for rec in caplog.records)
    # The confirmation page shows no user data at all.
    token = plain.split("token_id=")[1].split()[0]
    page = client.get("/confirm-email/", query_string={"token_id": token})
    assert page.status_code == 200 and "onerror" not in page.get_data(as_text=True)


@by_username_profile
def test_a13_crlf_and_ansi_usernames_never_reach_mail(app, client, deliver, subtests, case):
    for value in ("Eve\r\nBcc: v@evil.io", "\x1b[31mEve\x1b[0m", "Eve\nSubject: hi"):
        with subtests.test(username=value):
            r = post(client, case.register, case.payload(EMAIL, username=value))
            assert_invalid(case, r, "username")
    assert deliver() == []
