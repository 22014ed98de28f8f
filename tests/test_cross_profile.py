"""Rules that hold for every profile, asserted once and run against all five.

Value lists run as subtests inside one test per profile: each value is still
reported on its own, without paying for a fresh app and database per value.

Already proven elsewhere, not repeated here:
  token reuse answers "already confirmed" in each format -> test_confirmation.py::
      test_link_token_confirms_at_every_endpoint
  429 in each profile's format                          -> test_rate_limits.py
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from regapp.extensions import db
from regapp.models import User
from tests.dbstate import counts
from tests.profile_matrix import CASES
from tests.profile_matrix import CONFIRM
from tests.profile_matrix import ENCODINGS
from tests.profile_matrix import PROFILES
from tests.profile_matrix import VALIDATION
from tests.profile_matrix import assert_confirmed_answer
from tests.profile_matrix import assert_http_error
from tests.profile_matrix import assert_invalid
from tests.profile_matrix import body_of
from tests.profile_matrix import confirm
from tests.profile_matrix import created
from tests.profile_matrix import post
from tests.profile_matrix import raw
from tests.profile_matrix import scrub

# SECURITY A4: number, float, boolean, array, object where a string goes.
WRONG_TYPES = [12345678, 1.5, True, ["user@example.org"], {"$ne": None}]
by_profile = pytest.mark.parametrize("case", PROFILES, ids=str)


def stored(app, email: str) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email_key == email.lower()))
        db.session.expunge(user)
        return user


# -- one user table ---------------------------------------------------------------------

@by_profile
def test_email_taken_in_any_profile_is_taken_in_all(app, client, subtests, case):
    for first in PROFILES:
        with subtests.test(first=first.name):
            r = post(client, first.register, first.payload(f"Mike.{first}@Example.org"))
            assert created(first, r)["email"] == f"Mike.{first}@example.org"
            r = post(client, case.register, case.payload(f"mike.{first}@EXAMPLE.ORG"))
            assert r.status_code == case.invalid_status
            assert body_of(case, r) == case.duplicate_email
    assert counts(app) == (len(PROFILES), len(PROFILES))


@by_profile
def test_emailed_secret_confirms_at_every_endpoint(app, client, last_confirmation, subtests,
                                                   case):
    for endpoint in [*CONFIRM, "laravel-code"]:
        with subtests.test(endpoint=endpoint):
            email = f"Ann.{endpoint}@example.org"
            created(case, post(client, case.register, case.payload(email)))
            _, token, code = last_confirmation(to=email)
            name, secret = ("laravel", code) if endpoint == "laravel-code" else (endpoint, token)
            # The address is typed in another case than it was registered with.
            assert_confirmed_answer(name, confirm(client, name, email.upper(), secret), email)
            user = stored(app, email)
            assert user.is_email_confirmed is True and user.confirmed_at is not None


# -- encodings, unknown fields, wrong types ---------------------------------------------

@by_profile
def test_a3_encodings_give_identical_answers(app, client, case):
    """SECURITY A3: the same logical payload as JSON, urlencoded and multipart."""
    bad = {name: "" for name in case.required} | {case.email: "nope"}
    answers = {(r.status_code, r.data) for r in
               (post(client, case.register, bad, encoding) for encoding in ENCODINGS)}
    assert len(answers) == 1, answers
    assert_invalid(case, post(client, case.register, bad), case.email)
    good = {}
    for encoding in ENCODINGS:
        email, username = f"{encoding}@example.org", f"user_{encoding}"
        data = case.payload(email, username=username if case.username else None)
        r = post(client, case.register, data, encoding)
        good[encoding] = (r.status_code, scrub(r.get_json(force=True), email, username))
    assert good["json"] == good["form"] == good["multipart"]
    assert good["json"][0] == 201
    assert counts(app) == (3, 3)


@by_profile
def test_unknown_fields_are_ignored(app, client, subtests, case):
    for encoding in ENCODINGS:
        with subtests.test(encoding=encoding):
            extra = {"nickname": "x", "Email": "other@example.org", "password2": "", "d": "y"}
            if encoding == "json":
                extra |= {"meta": {"a": [1, None]}, "flag": True, "nothing": None}
            email = f"{encoding}@example.org"
            r = post(client, case.register, case.payload(email) | extra, encoding)
            assert created(case, r)["email"] == email
    assert counts(app) == (3, 3)


@by_profile
def test_a4_wrong_type_is_a_validation_error(app, client, subtests, case):
    """SECURITY A4: every string field, every wrong JSON type."""
    for name in case.fields:
        for value in WRONG_TYPES:
            if case.numbers_are_strings and type(value) in (int, float):
                continue  # DRF's CharField reads it as str(): tests/test_django_parity.py
            with subtests.test(field=name, value=value):
                r = post(client, case.register, case.payload("ann@example.org") | {name: value})
                assert_invalid(case, r, name)
    assert counts(app) == (0, 0)


@by_profile
def test_a1_null_required_field_is_a_validation_error(app, client, subtests, case):
    """SECURITY A1: ``null`` for a required field is "missing", in the profile's words."""
    for name in case.required:
        with subtests.test(field=name):
            r = post(client, case.register, case.payload("ann@example.org") | {name: None})
            assert_invalid(case, r, name)
    assert counts(app) == (0, 0)


# -- routing and transport errors --------------------------------------------------------

@by_profile
def test_routing_and_transport_errors_are_in_the_profiles_format(app, client, subtests, case):
    for method in ("GET", "POST", "DELETE"):
        with subtests.test(status=404, method=method):
            assert_http_error(case, client.open(case.prefix + "nope", method=method), 404)
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        with subtests.test(status=405, method=method):
            assert_http_error(case, client.open(case.register, method=method), 405)
    with subtests.test(status=413):
        data = b'{"pad": "' + b"x" * app.config["MAX_CONTENT_LENGTH"] + b'"}'
        assert_http_error(case, raw(client, case.register, data), 413)
    with subtests.test(status=415):
        assert_http_error(case, raw(client, case.register, b"<u/>", "application/xml"), 415)
    assert counts(app) == (0, 0)


CONFIRMATION_ROUTES = [  # (profile, method, path, status, Allow)
    ("drf", "POST", "/api/confirm-email/", 405, "GET"),
    ("drf", "GET", "/api/confirm-email/nope", 404, None),
    ("jsonapi", "POST", "/api/users/verification", 405, "GET"),
    ("jsonapi", "GET", "/api/users/verification/nope", 404, None),
    ("laravel", "GET", VALIDATION, 405, "POST"),
    ("laravel", "POST", VALIDATION + "/nope", 404, None),
    ("laravel", "POST", VALIDATION, 415, None),
    ("laravel", "POST", VALIDATION, 413, None),
]


def test_confirmation_routes_answer_routing_errors_in_their_format(app, client, subtests):
    for name, method, path, status, allow in CONFIRMATION_ROUTES:
        with subtests.test(profile=name, method=method, path=path, status=status):
            kwargs = {}
            if status == 415:
                kwargs = {"data": b"<token/>", "content_type": "application/xml"}
            elif status == 413:
                size = app.config["MAX_CONTENT_LENGTH"]
                kwargs = {"data": b'{"token": "' + b"1" * size + b'"}',
                          "content_type": "application/json"}
            r = client.open(path, method=method, **kwargs)
            assert_http_error(CASES[name], r, status, allow=allow)


# -- REGAPP_PROFILES ------------------------------------------------------------------------

@pytest.fixture
def enabled(request, monkeypatch):
    """Set REGAPP_PROFILES before the app is built (requested before ``app``)."""
    monkeypatch.setenv("REGAPP_PROFILES", request.param)
    return request.param.split(",")


@pytest.mark.parametrize("enabled", ["drf,jwt", "laravel,jsonapi"], indirect=True)
def test_regapp_profiles_switches_the_others_off(enabled, app, client, last_confirmation):
    assert app.config["REGAPP_PROFILES"] == enabled
    for case in PROFILES:
        r = post(client, case.register, case.payload(f"{case}@example.org"))
        if case.name in enabled:
            created(case, r)
        else:
            assert (r.status_code, r.get_json()) == (404, {"detail": "Not found."}), case
    # The disabled profiles' confirmation endpoints are gone; an enabled one works.
    _, token, _ = last_confirmation()
    email = f"{enabled[-1]}@example.org"
    for endpoint in CONFIRM:
        if endpoint not in enabled:
            r = confirm(client, endpoint, email, token)
            assert (r.status_code, r.get_json()) == (404, {"detail": "Not found."}), endpoint
    endpoint = next(name for name in CONFIRM if name in enabled)
    assert_confirmed_answer(endpoint, confirm(client, endpoint, email, token), email)
    assert stored(app, email).is_email_confirmed is True
