"""Issue 11: closer to Django where the documents are Django, stricter where it protects.

- every profile refuses what Django's EmailValidator refuses, and what regapp
  refuses on purpose (SECURITY.md "Email addresses: refusals beyond Django");
- a password of only whitespace is blank in every profile, other passwords are
  never trimmed;
- jwt's similarity message names the field "email" (seed 004's model);
- drf, jwt and the shared routes read a JSON number sent for a text field as its
  ``str()`` (DRF's CharField), refuse booleans, lists and objects, and answer a
  JSON ``null`` body with ``{"non_field_errors": ["No data provided"]}``;
- every /api/ answer forbids rendering and framing (CSP) and sniffing.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from regapp.core.identity import django_accepts
from regapp.core.passwords import verify_password
from regapp.extensions import db
from regapp.models import User
from tests.dbstate import counts
from tests.profile_matrix import CASES
from tests.profile_matrix import PROFILES
from tests.profile_matrix import assert_invalid
from tests.profile_matrix import assert_malformed
from tests.profile_matrix import created
from tests.profile_matrix import messages
from tests.profile_matrix import post
from tests.profile_matrix import raw

by_profile = pytest.mark.parametrize("case", PROFILES, ids=str)
DRF_ROUTES = {  # DRF-format routes -> a valid body (numbers are put into it)
    "drf": ("/api/register/", CASES["drf"]),
    "jwt": ("/api/sign-up/", CASES["jwt"]),
}

# Django 5.2's EmailValidator refuses these; regapp used to accept (and rewrite) them.
DJANGO_REFUSES = ["u@example.c", "u@x.5ab", "u@example\u3002com", "u@example.c0m",
                  "u@example.com.", "u..v@example.com", "u@-example.com"]
# Django accepts these; regapp refuses them on purpose (SECURITY.md lists why).
REGAPP_REFUSES = ['"u"@example.com', '"u v"@example.com', "u@[127.0.0.1]",
                  "u@[IPv6:::1]", "u@localhost", "u@mail.localhost", "u@foo.test",
                  "u@foo.invalid", "u@foo.local", "u@foo.onion", "u@home.arpa",
                  "u@xn--abc.com", "u@ex--ample.com", "u@\u2603.com",
                  "u@exam\u00adple.com", "u@example.co\u200b",
                  "a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".com"]  # 261 > 254


@by_profile
def test_addresses_django_refuses_are_refused_by_every_profile(app, client, subtests, case):
    for email in DJANGO_REFUSES:
        with subtests.test(email=email):
            assert not django_accepts(email)
            body = assert_invalid(case, post(client, case.register, case.payload(email)),
                                  case.email)
            assert messages(case, body, case.email) == [case.invalid_email]
    assert counts(app) == (0, 0)


@by_profile
def test_addresses_regapp_refuses_beyond_django_are_refused_by_every_profile(
        app, client, subtests, case):
    for email in REGAPP_REFUSES:
        with subtests.test(email=email):
            r = post(client, case.register, case.payload(email))
            assert_invalid(case, r, case.email)
    assert counts(app) == (0, 0)


@by_profile
def test_idn_addresses_are_stored_as_punycode(app, client, case):
    assert created(case, post(client, case.register, case.payload("x@stra\u00dfe.de"))
                   )["email"] == "x@xn--strae-oqa.de"
    # ß is not ss: x@strasse.de is another domain, so another account.
    assert created(case, post(client, case.register, case.payload("x@strasse.de"))
                   )["email"] == "x@strasse.de"
    r = post(client, case.register, case.payload("x@xn--strae-oqa.de"))
    assert r.status_code == case.invalid_status
    assert counts(app)[0] == 2


# -- passwords ------------------------------------------------------------------------

WHITESPACE = [" ", "        ", "\t\n  \u3000", "\u00a0" * 10]
BLANK = {
    "drf": {"password": ["This field may not be blank."]},
    "jwt": {"password": ["This field may not be blank."]},
    "envelope": {"results": None, "error": "Missing attributes", "error_code": -4,
                 "status": 400,
                 "message": "Missing attributes needed for registering: password."},
    "laravel": {"message": "The given data was invalid.",
                "errors": {"password": ["The password field is required."]}},
}


@by_profile
def test_a_password_of_only_whitespace_is_blank(app, client, subtests, case):
    for password in WHITESPACE:
        with subtests.test(password=password):
            r = post(client, case.register, case.payload("ann@example.org", password=password))
            body = assert_invalid(case, r, "password")
            if case.name in BLANK:
                assert body == BLANK[case.name]
            else:
                assert {"title": "Invalid password", "detail": "Password can't be blank",
                        "source": {}} in body["errors"]
    assert counts(app) == (0, 0)


@by_profile
def test_other_passwords_are_never_trimmed(app, client, case):
    password = "  Str0ng-passphrase\t"
    email = "ann@example.org"
    created(case, post(client, case.register, case.payload(email, password=password)))
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email_key == email))
        assert verify_password(user.password_hash, password)[0] is True
        assert verify_password(user.password_hash, password.strip())[0] is False


def test_jwt_token_obtain_refuses_a_whitespace_password(client):
    r = client.post("/api/token/", json={"username": "ann", "password": "   "})
    assert (r.status_code, r.get_json()) == (400, {"password": ["This field may not be blank."]})


def test_jwt_similarity_names_the_email_as_seed_004(client):
    r = client.post("/api/sign-up/", json={"username": "zed", "email": "marguerite@x.io",
                                           "password": "marguerite@x"})
    assert r.status_code == 400
    assert "The password is too similar to the email." in r.get_json()["password"]
    # drf's seed names it the same way (its model's verbose name), envelope Django's default.
    r = client.post("/api/register/", json={"username": "zed", "email": "marguerite@x.io",
                                            "password": "marguerite@x"})
    assert "The password is too similar to the email." in r.get_json()["error"]


# -- DRF's CharField on drf, jwt and the shared routes --------------------------------

def test_jwt_reads_a_number_as_its_string(app, client):
    r = client.post("/api/sign-up/", json={**CASES["jwt"].payload("ann@example.org"),
                                           "number_phone": 5551234567})
    assert created(CASES["jwt"], r)["number_phone"] == "5551234567"
    with app.app_context():
        assert db.session.scalar(select(User.phone)) == "5551234567"


@pytest.mark.parametrize("profile", DRF_ROUTES)
def test_numbers_are_strings_and_run_the_usual_checks(app, client, subtests, profile):
    url, case = DRF_ROUTES[profile]
    # A numeric username is a valid username; a numeric password is checked like any.
    r = post(client, url, case.payload("ann@example.org", username=None) | {"username": 4242})
    assert created(case, r)["username"] == "4242"
    r = post(client, url, case.payload("bob@example.org") | {"username": 4242})
    assert r.get_json() == {"username": [case.duplicate_username["username"][0]]}
    r = post(client, url, case.payload("cy@example.org", password=12345678))
    assert r.status_code == 400
    errors = r.get_json()["error" if profile == "drf" else "password"]
    assert errors == ["This password is too common.", "This password is entirely numeric."]
    r = post(client, url, case.payload("dee@example.org") | {"username": 1.5})
    assert created(case, r)["username"] == "1.5"
    r = post(client, url, case.payload("eve@example.org") | {"email": 5551234567})
    assert r.get_json() == {"email": ["Enter a valid email address."]}
    for value in (True, False, [], ["ann"], {}, {"$ne": None}):
        with subtests.test(value=value):
            r = post(client, url, case.payload("fay@example.org") | {"username": value})
            assert (r.status_code, r.get_json()) == (400, {"username": ["Not a valid string."]})
    assert counts(app)[0] == 2


def test_shared_routes_read_numbers_as_strings(client):
    r = client.post("/api/resend-confirmation/", json={"email": 12345})
    assert (r.status_code, r.get_json()) == (400, {"email": ["Enter a valid email address."]})
    r = client.post("/api/resend-confirmation/", json={"email": True})  # DRF's EmailField
    assert (r.status_code, r.get_json()) == (400, {"email": ["Enter a valid email address."]})
    r = client.post("/api/token/refresh/", json={"refresh": 12345})
    assert r.status_code == 401 and r.get_json()["code"] == "token_not_valid"


def test_other_profiles_still_refuse_numbers(client):
    for name in ("envelope", "laravel", "jsonapi"):
        case = CASES[name]
        assert_invalid(case, post(client, case.register,
                                  case.payload("ann@example.org", password=12345678)),
                       "password")


@pytest.mark.parametrize("url", ["/api/register/", "/api/sign-up/", "/api/resend-confirmation/",
                                 "/api/token/", "/api/token/refresh/"])
def test_a_null_body_is_no_data_provided(client, url):
    r = raw(client, url, b"null")
    assert (r.status_code, r.get_json()) == (400, {"non_field_errors": ["No data provided"]})
    r = raw(client, url, b"[]")
    assert r.get_json() == {"non_field_errors": [
        "Invalid data. Expected a dictionary, but got list."]}


def test_a_null_body_elsewhere_stays_in_its_format(client):
    for name in ("envelope", "laravel", "jsonapi"):
        assert_malformed(CASES[name], raw(client, CASES[name].register, b"null"))


# -- headers ----------------------------------------------------------------------------

API_CSP = "default-src 'none'; frame-ancestors 'none'"


def test_confirmation_endpoints_forbid_rendering_and_framing(client, make_user,
                                                             last_confirmation):
    make_user()
    _, token, code = last_confirmation()
    answers = [
        client.post("/api/users/validation", json={"email": "alice@x.io", "token": "000000"}),
        client.get("/api/confirm-email/", query_string={"token_id": "nope"}),
        client.get("/api/users/verification", query_string={"email_token": "nope"}),
        client.get("/api/users/verification", query_string={"email_token": token}),
        client.get("/api/confirm-email/", query_string={"token_id": token}),
        client.post("/api/resend-confirmation/", json={"email": "alice@x.io"}),
        client.get("/api/nope"),
        client.post("/api/register/", data=b"{", content_type="application/json"),
    ]
    for r in answers:
        assert r.headers["Content-Security-Policy"] == API_CSP, (r.status_code, r.headers)
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert answers[3].status_code == 200  # the success answer (text/plain) too
    page = client.get("/confirm-email/", query_string={"token_id": token})
    assert "style-src 'unsafe-inline'" in page.headers["Content-Security-Policy"]
