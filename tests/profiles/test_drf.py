"""The `drf` profile against seed 000: every example body, byte for byte."""

import io

import pytest

from regapp.core.passwords import verify_password
from tests.dbstate import counts
from tests.dbstate import user_row
from tests.profile_matrix import post as post_as

URL = "/api/register/"
PASSWORD = "Str0ng-passphrase"
SEED_USER = {"username": "userName", "email": "user@gmail.com", "password": "userPassword"}
REQUIRED = "This field is required."
BLANK = "This field may not be blank."
NOT_NULL = "This field may not be null."
NOT_STRING = "Not a valid string."
BAD_EMAIL = "Enter a valid email address."
DUP_LOGIN = "user with this login already exists."
DUP_EMAIL = "user with this email already exists."
TOO_SHORT = "This password is too short. It must contain at least 8 characters."
TOO_COMMON = "This password is too common."
NUMERIC = "This password is entirely numeric."
ENCODINGS = ["json", "form", "multipart"]


def post(client, data, encoding="json", **kwargs):
    """POST ``data`` to the drf register route as JSON, urlencoded or multipart."""
    return post_as(client, URL, data, encoding, **kwargs)


def assert_drf_400(response, body):
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert response.get_json() == body
    assert list(response.get_json()) == list(body)


# -- 201 ----------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ENCODINGS)
def test_seed_success_body(app, client, encoding):
    r = post(client, SEED_USER, encoding)
    assert r.status_code == 201
    assert r.mimetype == "application/json"
    body = r.get_json()
    assert body == {"id": 1, "username": "userName", "email": "user@gmail.com",
                    "is_email_confirmed": False}
    assert list(body) == ["id", "username", "email", "is_email_confirmed"]
    assert b"userPassword" not in r.data and "password" not in body
    user = user_row(app, "user@gmail.com")
    assert (user.id, user.username, user.email) == (1, "userName", "user@gmail.com")
    assert user.is_email_confirmed is False and user.confirmed_at is None
    assert user.account_type == "customer"
    assert counts(app) == (1, 1)


def test_password_stored_as_argon2id_hash(app, client):
    post(client, {"username": "alice", "email": "alice@x.io", "password": PASSWORD})
    post(client, {"username": "bob", "email": "bob@x.io", "password": PASSWORD})
    alice, bob = user_row(app, "alice@x.io"), user_row(app, "bob@x.io")
    for user in (alice, bob):
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
    assert alice.password_hash != bob.password_hash  # salted
    with app.app_context():
        assert verify_password(alice.password_hash, PASSWORD)[0]
        assert not verify_password(alice.password_hash, PASSWORD.lower())[0]


def test_password_is_never_trimmed_username_and_email_are(app, client):
    padded = f"  {PASSWORD}  "
    r = post(client, {"username": "  userName ", "email": " User@GMAIL.Com ",
                      "password": padded})
    assert r.status_code == 201
    assert r.get_json()["username"] == "userName"
    user = user_row(app, "user@gmail.com")
    assert user.email == "User@gmail.com"  # stored as given, domain normalised
    with app.app_context():
        assert verify_password(user.password_hash, padded)[0]
        assert not verify_password(user.password_hash, PASSWORD)[0]


def test_idn_domain_is_stored_as_punycode(app, client):
    r = post(client, {"username": "u", "email": "user@exämple.org", "password": PASSWORD})
    assert r.status_code == 201
    assert r.get_json()["email"] == "user@xn--exmple-cua.org"


def test_unknown_and_mass_assignment_fields_are_ignored(app, client):
    r = post(client, {**SEED_USER, "password": PASSWORD, "id": 999,
                      "is_email_confirmed": True, "account_type": "driver",
                      "role": "admin", "is_staff": True, "api_token": "x" * 32,
                      "confirmed_at": "2020-01-01T00:00:00Z", "nickname": "n"})
    assert r.status_code == 201
    assert r.get_json() == {"id": 1, "username": "userName", "email": "user@gmail.com",
                            "is_email_confirmed": False}
    user = user_row(app, "user@gmail.com")
    assert user.id == 1 and user.account_type == "customer"
    assert user.is_email_confirmed is False and user.confirmed_at is None
    assert user.api_token_hash is None


@pytest.mark.parametrize("encoding", ["form", "multipart"])
def test_mass_assignment_ignored_in_form_data(app, client, encoding):
    r = post(client, {**SEED_USER, "is_email_confirmed": "true",
                      "account_type": "admin"}, encoding)
    assert r.status_code == 201
    user = user_row(app, "user@gmail.com")
    assert user.is_email_confirmed is False and user.account_type == "customer"


# -- 400: the seed's five bodies --------------------------------------------------

@pytest.mark.parametrize("encoding", ENCODINGS)
def test_seed_password_policy_body(app, client, encoding):
    r = post(client, {"username": "userName", "email": "user@gmail.com", "password": "1234"},
             encoding)
    assert_drf_400(r, {"error": [TOO_SHORT, TOO_COMMON, NUMERIC]})
    assert counts(app) == (0, 0)


@pytest.mark.parametrize(("password", "messages"), [
    ("xK9#q", [TOO_SHORT]),
    ("password", [TOO_COMMON]),
    ("qwertyuiop", [TOO_COMMON]),
    ("12345678", [TOO_COMMON, NUMERIC]),
    ("83749261", [NUMERIC]),
    ("johnsmith1984x", ["The password is too similar to the login."]),
    ("wonderland.rabbit", ["The password is too similar to the email."]),
])
def test_password_policy_messages_in_django_order(client, password, messages):
    r = post(client, {"username": "johnsmith1984", "email": "wonderland.rabbit@x.io",
                      "password": password})
    assert_drf_400(r, {"error": messages})


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_seed_blank_password_body(client, encoding):
    r = post(client, {"username": "userName", "email": "user@gmail.com", "password": ""},
             encoding)
    assert_drf_400(r, {"password": [BLANK]})


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_blank_fields_each_reported(client, encoding):
    r = post(client, {"username": "   ", "email": "", "password": ""}, encoding)
    assert_drf_400(r, {"username": [BLANK], "email": [BLANK], "password": [BLANK]})


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_seed_duplicate_username_and_email_body(app, client, encoding):
    assert post(client, SEED_USER).status_code == 201
    r = post(client, SEED_USER, encoding)
    assert_drf_400(r, {"username": [DUP_LOGIN], "email": [DUP_EMAIL]})
    assert counts(app) == (1, 1)


def test_duplicate_is_reported_before_the_password_policy(client):
    assert post(client, SEED_USER).status_code == 201
    r = post(client, {**SEED_USER, "password": "1234"})
    assert_drf_400(r, {"username": [DUP_LOGIN], "email": [DUP_EMAIL]})


def test_duplicates_are_reported_with_the_other_field_errors(client):
    assert post(client, SEED_USER).status_code == 201
    r = post(client, {"username": " USERNAME ", "email": "nope", "password": ""})
    assert_drf_400(r, {"username": [DUP_LOGIN], "email": [BAD_EMAIL], "password": [BLANK]})
    r = post(client, {"username": "", "email": "User@Gmail.com", "password": False})
    assert_drf_400(r, {"username": [BLANK], "email": [DUP_EMAIL], "password": [NOT_STRING]})


@pytest.mark.parametrize("variant", ["USER@GMAIL.COM", "User@Gmail.Com", "user@GMAIL.com"])
def test_duplicate_email_is_case_insensitive(app, client, variant):
    assert post(client, SEED_USER).status_code == 201
    r = post(client, {"username": "other", "email": variant, "password": PASSWORD})
    assert_drf_400(r, {"email": [DUP_EMAIL]})
    assert counts(app) == (1, 1)


@pytest.mark.parametrize(("first", "second"), [
    ("userName", "USERNAME"),
    ("straße", "STRASSE"),
    ("admin", "ＡＤＭＩＮ"),
    ("finn", "ﬁnn"),
    ("ivan", "Ⅰvan"),
    ("iamthe\u03a9", "iamthe\u2126"),
])
def test_duplicate_username_after_nfkc_casefold(app, client, first, second):
    assert post(client, {"username": first, "email": "a@x.io", "password": PASSWORD}
                ).status_code == 201
    r = post(client, {"username": second, "email": "b@x.io", "password": PASSWORD})
    assert_drf_400(r, {"username": [DUP_LOGIN]})
    assert counts(app) == (1, 1)


def test_case_mapping_collision_never_makes_a_second_account(app, client):
    assert post(client, {"username": "k1", "email": "kate@x.io", "password": PASSWORD}
                ).status_code == 201
    r = post(client, {"username": "k2", "email": "\u212aate@x.io", "password": PASSWORD})
    assert r.status_code == 400 and list(r.get_json()) == ["email"]
    assert counts(app) == (1, 1)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_seed_all_required_body(client, encoding):
    r = post(client, {}, encoding)
    assert_drf_400(r, {"username": [REQUIRED], "email": [REQUIRED], "password": [REQUIRED]})


def test_all_required_with_no_body_at_all(client):
    r = client.post(URL)
    assert_drf_400(r, {"username": [REQUIRED], "email": [REQUIRED], "password": [REQUIRED]})


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_seed_invalid_email_body(client, encoding):
    r = post(client, {"username": "userName", "email": "user", "password": PASSWORD}, encoding)
    assert_drf_400(r, {"email": [BAD_EMAIL]})


@pytest.mark.parametrize("email", [
    "a@b@c.com", "user@", "@x.com", "user@x..com", "user @x.com", "user@x.com a",
    "victim@gmail.com@attacker.com", "user@x.com\r\nBcc: v@evil.io",
    '"a\r\nBcc: v@evil.io"@x.com', "jörg@x.de", "mıke@example.org", "user@x.com%00",
    "user@" + "a" * 64 + ".com",
])
def test_invalid_emails(app, client, email):
    r = post(client, {"username": "userName", "email": email, "password": PASSWORD})
    assert_drf_400(r, {"email": [BAD_EMAIL]})
    assert counts(app) == (0, 0)


def test_length_limits(client):
    r = post(client, {"username": "u" * 151, "email": "a" * 250 + "@x.io",
                      "password": "x" * 1025})
    assert_drf_400(r, {
        "username": ["Ensure this field has no more than 150 characters."],
        "email": ["Ensure this field has no more than 254 characters."],
        "password": ["Ensure this field has no more than 1024 characters."],
    })


def test_username_characters(client):
    r = post(client, {"username": "user name", "email": "u@x.io", "password": PASSWORD})
    assert_drf_400(r, {"username": ["Enter a valid username. This value may contain only "
                                    "letters, numbers, and @/./+/-/_ characters."]})


# -- wrong types: 400 in drf format, never 500 -------------------------------------

# JSON numbers are not wrong: DRF's CharField reads them as str() (test_django_parity.py).
WRONG_TYPES = [["user@gmail.com"], {"$ne": None}, True, False, []]


@pytest.mark.parametrize("value", WRONG_TYPES, ids=repr)
@pytest.mark.parametrize("field", ["username", "email", "password"])
def test_wrong_types_are_rejected(app, client, field, value):
    data = {"username": "userName", "email": "user@gmail.com", "password": PASSWORD}
    r = post(client, {**data, field: value})
    message = BAD_EMAIL if field == "email" else NOT_STRING
    assert_drf_400(r, {field: [message]})
    assert counts(app) == (0, 0)


@pytest.mark.parametrize("field", ["username", "email", "password"])
def test_null_is_rejected(client, field):
    data = {"username": "userName", "email": "user@gmail.com", "password": PASSWORD}
    r = post(client, {**data, field: None})
    assert_drf_400(r, {field: [NOT_NULL]})


def test_all_wrong_types_at_once(client):
    r = post(client, {"username": True, "email": [1], "password": {"a": 1}})
    assert_drf_400(r, {"username": [NOT_STRING], "email": [BAD_EMAIL],
                       "password": [NOT_STRING]})


def test_file_part_where_a_field_is_expected(client):
    r = client.post(URL, data={"username": "u", "email": "u@x.io",
                               "password": (io.BytesIO(PASSWORD.encode()), "pw.txt")},
                    content_type="multipart/form-data")
    assert_drf_400(r, {"password": [NOT_STRING]})


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_same_errors_whatever_the_encoding(client, encoding):
    r = post(client, {"username": "", "email": "nope", "password": "x"}, encoding)
    assert_drf_400(r, {"username": [BLANK], "email": [BAD_EMAIL]})


# -- GET /api/confirm-email/ in drf format ------------------------------------------

def test_confirm_email_answers_with_the_user(app, client, last_confirmation):
    post(client, SEED_USER | {"password": PASSWORD})
    _, token, _ = last_confirmation()
    r = client.get(f"/api/confirm-email/?token_id={token}")
    assert r.status_code == 200
    assert r.get_json() == {"id": 1, "username": "userName", "email": "user@gmail.com",
                            "is_email_confirmed": True}
    assert list(r.get_json()) == ["id", "username", "email", "is_email_confirmed"]
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    again = client.get(f"/api/confirm-email/?token_id={token}")
    assert_drf_400(again, {"token_id": ["Email is already confirmed."]})


@pytest.mark.parametrize(("query", "body"), [
    ("", {"token_id": [REQUIRED]}),
    ("?token_id=", {"token_id": [REQUIRED]}),
    ("?token_id=%20", {"token_id": [REQUIRED]}),
    ("?token_id=nonsense", {"token_id": ["Invalid or expired token."]}),
    ("?token_id=123456", {"token_id": ["Invalid or expired token."]}),
    ("?token_id=%00", {"token_id": ["Invalid or expired token."]}),
    ("?token_id=%ED%A0%80", {"token_id": ["Invalid or expired token."]}),
    ("?token_id=a&token_id=b", {"token_id": [NOT_STRING]}),
])
def test_confirm_email_bad_requests(client, query, body):
    r = client.get(f"/api/confirm-email/{query}")
    assert_drf_400(r, body)
    assert r.headers["Cache-Control"] == "no-store"


def test_confirm_email_repeated_good_token_is_refused(app, client, last_confirmation):
    post(client, SEED_USER | {"password": PASSWORD})
    _, token, _ = last_confirmation()
    r = client.get(f"/api/confirm-email/?token_id={token}&token_id={token}")
    assert_drf_400(r, {"token_id": [NOT_STRING]})
    assert user_row(app, "user@gmail.com").is_email_confirmed is False
