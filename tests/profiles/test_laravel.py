"""The `laravel` profile against seed 002: every example body, Laravel 7's messages."""

from types import SimpleNamespace

import dns.resolver
import pytest

from regapp.core.passwords import verify_password
from tests.dbstate import counts
from tests.dbstate import user_row
from tests.profile_matrix import post as post_as

URL = "/api/users/register"
VALIDATION = "/api/users/validation"
# The document's working example (its email is mangled by the wiki export).
SEED_USER = {
    "first_name": "Harrie",
    "insertion": "van",
    "last_name": "Tiggelen",
    "email": "harrie@example.com",
    "postal_code": "5673RE",
    "password": "SweetKittens23#",
}
INVALID = "The given data was invalid."
TAKEN = "The email has already been taken."
BAD_EMAIL = "The email must be a valid email address."
ENCODINGS = ["json", "form", "multipart"]


def post(client, data, encoding="json", url=URL, **kwargs):
    """POST ``data`` as JSON, urlencoded or multipart."""
    return post_as(client, url, data, encoding, **kwargs)


def assert_422(response, errors):
    """Laravel's validation answer, with ``errors`` exactly (keys in order)."""
    assert response.status_code == 422
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == ["message", "errors"]
    assert body == {"message": INVALID, "errors": errors}
    assert list(body["errors"]) == list(errors)


def assert_message(response, status, message):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json() == {"message": message}


# -- 201 ----------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ENCODINGS)
def test_seed_example_creates_guest(app, client, encoding):
    r = post(client, SEED_USER, encoding)
    assert r.status_code == 201
    assert r.mimetype == "application/json"
    body = r.get_json()
    # The document's body, minus its echoed password (never sent back).
    assert body == {"first_name": "Harrie", "insertion": "van", "last_name": "Tiggelen",
                    "email": "harrie@example.com", "postal_code": "5673RE", "role": "guest"}
    assert list(body) == ["first_name", "insertion", "last_name", "email",
                          "postal_code", "role"]
    assert "password" not in r.get_data(as_text=True).lower()
    user = user_row(app, "harrie@example.com")
    assert (user.first_name, user.insertion, user.last_name, user.postal_code) == (
        "Harrie", "van", "Tiggelen", "5673RE")
    assert user.account_type == "guest"
    assert user.is_email_confirmed is False
    assert SEED_USER["password"] not in user.password_hash
    with app.app_context():
        assert verify_password(user.password_hash, SEED_USER["password"])[0]
    assert counts(app) == (1, 1)


@pytest.mark.parametrize("insertion", [None, "", "   ", "missing"])
def test_insertion_is_nullable(app, client, insertion):
    data = {**SEED_USER}
    if insertion == "missing":
        del data["insertion"]
    else:
        data["insertion"] = insertion
    r = post(client, data)
    assert r.status_code == 201
    assert r.get_json()["insertion"] is None
    assert list(r.get_json())[1] == "insertion"
    assert user_row(app, "harrie@example.com").insertion is None


@pytest.mark.parametrize("code", ["5673RE", "5673 RE", "5673re", "1000", "9999",
                                  "10115", "01067"])
def test_nl_be_de_postal_codes_accepted(client, code):
    r = post(client, {**SEED_USER, "postal_code": code})
    assert r.status_code == 201
    assert r.get_json()["postal_code"] == code


def test_fields_are_trimmed_but_password_is_not(app, client):
    password = "  spaced out  "
    r = post(client, {**SEED_USER, "first_name": "  Harrie ", "email": " harrie@example.com ",
                      "password": password})
    assert r.status_code == 201
    assert r.get_json()["first_name"] == "Harrie"
    user = user_row(app, "harrie@example.com")
    with app.app_context():
        assert verify_password(user.password_hash, password)[0]
        assert not verify_password(user.password_hash, password.strip())[0]


def test_maximum_lengths_accepted(client):
    long = "a" * 191
    email = "a" * 64 + "@" + "b" * 63 + "." + "c" * 58 + ".com"
    assert len(email) == 191
    r = post(client, {**SEED_USER, "first_name": long, "insertion": long, "last_name": long,
                      "email": email, "password": "p" * 191})
    assert r.status_code == 201


def test_unknown_and_privileged_fields_ignored(app, client):
    r = post(client, {**SEED_USER, "role": "admin", "account_type": "driver",
                      "is_email_confirmed": True, "id": 999, "nickname": "x"})
    assert r.status_code == 201
    assert r.get_json()["role"] == "guest"
    user = user_row(app, "harrie@example.com")
    assert user.account_type == "guest"
    assert user.is_email_confirmed is False
    assert user.confirmed_at is None
    assert user.id != 999


# -- 422 ----------------------------------------------------------------------

def test_seed_duplicate_email(app, client):
    assert post(client, SEED_USER).status_code == 201
    r = post(client, {**SEED_USER, "email": "HARRIE@Example.COM"})
    assert_422(r, {"email": [TAKEN]})
    assert counts(app) == (1, 1)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_email_from_drf_is_taken(app, client, encoding):
    r = client.post("/api/register/", json={"username": "harrie", "email": "Harrie@Example.com",
                                            "password": "Str0ng-passphrase"})
    assert r.status_code == 201
    r = post(client, {**SEED_USER, "email": "hARRIE@example.COM"}, encoding)
    assert_422(r, {"email": [TAKEN]})
    assert counts(app) == (1, 1)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_empty_body_lists_required_fields_in_document_order(app, client, encoding):
    r = post(client, {}, encoding)
    assert_422(r, {
        "first_name": ["The first name field is required."],
        "last_name": ["The last name field is required."],
        "email": ["The email field is required."],
        "postal_code": ["The postal code field is required."],
        "password": ["The password field is required."],
    })
    assert counts(app) == (0, 0)


def test_no_body_at_all(client):
    r = client.post(URL)
    assert r.status_code == 422
    assert list(r.get_json()["errors"]) == ["first_name", "last_name", "email",
                                            "postal_code", "password"]


@pytest.mark.parametrize("value", ["", "   ", None])
def test_blank_and_null_are_required(client, value):
    data = {name: value for name in SEED_USER}
    r = post(client, data)
    assert_422(r, {
        "first_name": ["The first name field is required."],
        "last_name": ["The last name field is required."],
        "email": ["The email field is required."],
        "postal_code": ["The postal code field is required."],
        "password": ["The password field is required."],
    })


STRING_RULES = {
    "first_name": "The first name must be a string.",
    "insertion": "The insertion must be a string.",
    "last_name": "The last name must be a string.",
    "email": BAD_EMAIL,
    "postal_code": "The postal code format is invalid.",
    "password": "The password must be a string.",
}


@pytest.mark.parametrize("field", list(STRING_RULES))
@pytest.mark.parametrize("value", [12345678, 1.5, True, False, ["x"], {"a": "b"}, []])
def test_wrong_types_are_validation_errors(app, client, field, value):
    r = post(client, {**SEED_USER, field: value})
    assert_422(r, {field: [STRING_RULES[field]]})
    assert counts(app) == (0, 0)


def test_all_wrong_types_at_once_in_document_order(client):
    r = post(client, {name: 5 for name in SEED_USER})
    assert_422(r, {name: [STRING_RULES[name]] for name in SEED_USER})


@pytest.mark.parametrize("field,value,message", [
    ("first_name", "a" * 192, "The first name may not be greater than 191 characters."),
    ("insertion", "a" * 192, "The insertion may not be greater than 191 characters."),
    ("last_name", "a" * 192, "The last name may not be greater than 191 characters."),
    ("email", "a" * 64 + "@" + "b" * 63 + "." + "c" * 59 + ".com",
     "The email may not be greater than 191 characters."),
    ("password", "p" * 192, "The password may not be greater than 191 characters."),
    ("password", "p" * 7, "The password must be at least 8 characters."),
    ("password", "🔥" * 7, "The password must be at least 8 characters."),
    ("password", "        ", "The password field is required."),
    ("email", "not-an-email", BAD_EMAIL),
    ("email", "a@b@example.com", BAD_EMAIL),
    ("email", "harrie@example.com\r\nBcc: x@evil.io", BAD_EMAIL),
    ("email", "jörg@example.de", BAD_EMAIL),
    ("first_name", "Har\x00rie", "The first name format is invalid."),
])
def test_rule_messages(app, client, field, value, message):
    r = post(client, {**SEED_USER, field: value})
    assert_422(r, {field: [message]})
    assert counts(app) == (0, 0)


@pytest.mark.parametrize("code", ["0673RE", "5673R", "567RE", "5673  RE", "5673-RE", "ABCDEF",
                                  "123", "123456", "1234567", "１２３４AB", "10115\n1",
                                  "5673RÉ"])
def test_bad_postal_codes(client, code):
    r = post(client, {**SEED_USER, "postal_code": code})
    assert_422(r, {"postal_code": ["The postal code format is invalid."]})


def test_several_errors_reported_together(client):
    r = post(client, {**SEED_USER, "first_name": "", "email": "nope", "postal_code": "x",
                      "password": "short"})
    assert_422(r, {
        "first_name": ["The first name field is required."],
        "email": [BAD_EMAIL],
        "postal_code": ["The postal code format is invalid."],
        "password": ["The password must be at least 8 characters."],
    })


def test_repeated_form_field_is_rejected(client):
    r = client.post(URL, data={**SEED_USER, "email": ["a@example.com", "b@example.com"]})
    assert_422(r, {"email": [BAD_EMAIL]})


# -- email deliverability ("email with existing domain") ----------------------

class FakeResolver:
    """A dnspython-style resolver answering from a dict; never touches the network."""

    def __init__(self, mx_domains):
        self.mx_domains = set(mx_domains)
        self.queries = []

    def resolve(self, qname, rdtype):
        self.queries.append((str(qname), rdtype))
        if str(qname) in self.mx_domains:
            if rdtype == "MX":
                return [SimpleNamespace(preference=10, exchange=f"mx.{qname}.")]
            raise dns.resolver.NoAnswer()
        raise dns.resolver.NXDOMAIN()


@pytest.fixture
def resolver(app):
    fake = FakeResolver({"example.com"})
    app.extensions["regapp.dns_resolver"] = fake
    return fake


@pytest.mark.config(EMAIL_CHECK_DELIVERABILITY=True)
def test_domain_without_mail_is_rejected_when_checking(app, client, resolver):
    r = post(client, {**SEED_USER, "email": "harrie@no-such-domain.example.org"})
    assert_422(r, {"email": [BAD_EMAIL]})
    assert ("no-such-domain.example.org", "MX") in resolver.queries
    assert counts(app) == (0, 0)


@pytest.mark.config(EMAIL_CHECK_DELIVERABILITY=True)
def test_domain_with_mx_is_accepted_when_checking(client, resolver):
    r = post(client, SEED_USER)
    assert r.status_code == 201
    assert resolver.queries == [("example.com", "MX")]


def test_domain_is_not_looked_up_by_default(client, resolver):
    r = post(client, {**SEED_USER, "email": "harrie@no-such-domain.example.org"})
    assert r.status_code == 201
    assert resolver.queries == []


# -- POST /api/users/validation --------------------------------------------------

@pytest.fixture
def registered(client, last_confirmation):
    """The seed user, registered; returns ``(token, code)`` from the email that arrived."""
    assert post(client, SEED_USER).status_code == 201
    link, token, code = last_confirmation(to=SEED_USER["email"])
    return token, code


def other_code(code):
    return f"{(int(code) + 1) % 1_000_000:06d}"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_seed_validated_with_emailed_code(app, client, registered, encoding):
    token, code = registered
    r = post(client, {"email": SEED_USER["email"], "token": code}, encoding, url=VALIDATION)
    assert_message(r, 201, "Validated")
    assert user_row(app, "harrie@example.com").is_email_confirmed is True


def test_code_as_json_integer(app, client, registered):
    token, code = registered
    r = client.post(VALIDATION, json={"email": SEED_USER["email"], "token": int(code)})
    assert_message(r, 201, "Validated")


def test_validated_with_link_token(app, client, registered):
    token, code = registered
    r = client.post(VALIDATION, json={"email": "HARRIE@example.com", "token": token})
    assert_message(r, 201, "Validated")
    assert user_row(app, "harrie@example.com").is_email_confirmed is True


def test_seed_token_incorrect(app, client, registered):
    token, code = registered
    r = client.post(VALIDATION, json={"email": SEED_USER["email"], "token": other_code(code)})
    assert_message(r, 401, "Token is incorrect")
    assert user_row(app, "harrie@example.com").is_email_confirmed is False


@pytest.mark.parametrize("email", ["nobody@example.com", "other@example.com"])
def test_token_for_another_address_is_incorrect(app, client, registered, email):
    token, code = registered
    for candidate in (code, token):
        r = client.post(VALIDATION, json={"email": email, "token": candidate})
        assert_message(r, 401, "Token is incorrect")
    assert user_row(app, "harrie@example.com").is_email_confirmed is False


def test_seed_already_validated(app, client, registered):
    token, code = registered
    assert client.post(VALIDATION, json={"email": SEED_USER["email"],
                                         "token": code}).status_code == 201
    confirmed_at = user_row(app, "harrie@example.com").confirmed_at
    for candidate in (code, token):
        r = client.post(VALIDATION, json={"email": SEED_USER["email"], "token": candidate})
        assert_message(r, 409, "The email is already validated")
    assert user_row(app, "harrie@example.com").confirmed_at == confirmed_at


def test_confirmed_address_with_a_wrong_code_is_incorrect(client, registered):
    """409 only for a secret that checks out: it must not tell who is confirmed."""
    token, code = registered
    assert client.post(VALIDATION, json={"email": SEED_USER["email"],
                                         "token": code}).status_code == 201
    for candidate in (other_code(code), "garbage"):
        r = client.post(VALIDATION, json={"email": SEED_USER["email"], "token": candidate})
        assert_message(r, 401, "Token is incorrect")


@pytest.mark.parametrize("lookalike", ["１２３４５６", "٣٤٥٦٧٨", "12_345", "12345", "1234567"])
def test_code_lookalikes_are_incorrect(app, client, registered, lookalike):
    r = client.post(VALIDATION, json={"email": SEED_USER["email"], "token": lookalike})
    assert_message(r, 401, "Token is incorrect")
    assert user_row(app, "harrie@example.com").is_email_confirmed is False


def test_wrong_guess_limit(app, client, registered):
    token, code = registered
    limit = app.config["CONFIRM_CODE_MAX_ATTEMPTS"]
    for _ in range(limit):
        r = client.post(VALIDATION, json={"email": SEED_USER["email"],
                                          "token": other_code(code)})
        assert_message(r, 401, "Token is incorrect")
    r = client.post(VALIDATION, json={"email": SEED_USER["email"], "token": code})
    # Used up: answered like a wrong code for an unknown address, never 429 (issue 11).
    assert_message(r, 401, "Token is incorrect")
    assert user_row(app, "harrie@example.com").is_email_confirmed is False


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_validation_missing_fields(client, encoding):
    r = post(client, {}, encoding, url=VALIDATION)
    assert_422(r, {"email": ["The email field is required."],
                   "token": ["The token field is required."]})


@pytest.mark.parametrize("token", [True, False, -1, -123456, 1_000_000, 1234567, 1.5,
                                   123456.0, [123456], {"$gt": ""}])
def test_validation_token_wrong_types(app, client, registered, token):
    r = client.post(VALIDATION, json={"email": SEED_USER["email"], "token": token})
    assert_422(r, {"token": ["The token must be an integer."]})
    assert user_row(app, "harrie@example.com").is_email_confirmed is False


def test_validation_null_fields_are_required(client):
    r = client.post(VALIDATION, json={"email": None, "token": None})
    assert_422(r, {"email": ["The email field is required."],
                   "token": ["The token field is required."]})


def test_validation_bad_email(client):
    r = client.post(VALIDATION, json={"email": "nope", "token": "123456"})
    assert_422(r, {"email": [BAD_EMAIL]})


# -- HTTP errors on laravel paths ------------------------------------------------

def test_unknown_path_is_json(client):
    r = client.post(URL + "/extra", json=SEED_USER)
    assert_message(r, 404, "Not Found")


@pytest.mark.parametrize("url", [URL, VALIDATION])
def test_wrong_method_is_json(client, url):
    r = client.get(url)
    assert_message(r, 405, "The GET method is not supported for this route. "
                           "Supported methods: POST.")
    assert "POST" in r.headers["Allow"]


def test_too_large_is_json(app, client):
    size = app.config["MAX_CONTENT_LENGTH"] + 1
    r = client.post(URL, data=b"{" + b" " * size + b"}", content_type="application/json")
    assert_message(r, 413, "Payload Too Large")


@pytest.mark.parametrize("url", [URL, VALIDATION])
def test_unsupported_media_type_is_json(client, url):
    r = client.post(url, data="<user/>", content_type="application/xml")
    assert_message(r, 415, "Unsupported Media Type")


@pytest.mark.parametrize("raw", [b'{"email":', b"[]", b'"x"', b"\xff"])
def test_malformed_json_is_json(app, client, raw):
    r = client.post(URL, data=raw, content_type="application/json")
    assert r.status_code == 400
    assert r.mimetype == "application/json"
    assert list(r.get_json()) == ["message"]
    assert counts(app) == (0, 0)
