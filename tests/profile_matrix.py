"""The five profiles as data, for tests that make one claim about all of them.

A ``Case`` is one small description per profile: where it registers, how to
build a valid body, its statuses and exact bodies, and its ``Format`` -- the
family of answers it shares with others (drf and jwt speak alike) as a few
functions: which fields a validation error names and with what texts, and the
checks of its validation, malformed-body and HTTP-error bodies. The helpers
below read only these descriptions, never a profile's name. The confirmation
endpoints are described the same way (``Endpoint``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

PASSWORD = "Str0ng-passphrase"
ENCODINGS = ("json", "form", "multipart")
JSON = "application/json"
JSONAPI_TYPE = "application/vnd.api+json; charset=utf-8"
LARAVEL_INVALID = "The given data was invalid."
_usernames = itertools.count(1)


# -- answer formats: how a family of profiles words its errors ----------------------------

@dataclass(frozen=True)
class Format:
    """The shape of a family's error bodies, as functions of the parsed JSON body."""

    fields_named: Callable[[Case, dict], set[str]]  # wire names a validation error names
    messages: Callable[[dict, str], list[str]]      # its texts for one wire name
    check_invalid: Callable[[dict], None]           # asserts on a validation error body
    check_malformed: Callable[[dict], None]         # asserts on a not-an-object body (400)
    check_http_error: Callable[[dict, int], None]   # asserts on a 404/405/413/415... body
    is_field_body: Callable[[dict], bool]           # a 400/422 that lists field errors


def _drf_fields(case: Case, body: dict) -> set[str]:
    if body == {"error": "Missing required fields."}:
        return set(case.required)
    return {"password" if key == "error" else key for key in body}


def _drf_invalid(body: dict) -> None:
    assert body and all(isinstance(v, (list, str)) for v in body.values()), body
    assert "detail" not in body and "non_field_errors" not in body


def _drf_malformed(body: dict) -> None:
    assert (set(body) == {"detail"} and body["detail"].startswith("JSON parse error")
            or set(body) == {"non_field_errors"}), body


def _drf_http_error(body: dict, status: int) -> None:
    assert set(body) == {"detail"} and body["detail"], body


DRF = Format(
    fields_named=_drf_fields,
    messages=lambda body, name: body.get(name, []),
    check_invalid=_drf_invalid,
    check_malformed=_drf_malformed,
    check_http_error=_drf_http_error,
    is_field_body=lambda body: "detail" not in body and "non_field_errors" not in body,
)


def _envelope_fields(case: Case, body: dict) -> set[str]:
    named = {-1: {"username"}, -2: {"email_address"}, -3: {"password"}}.get(
        body["error_code"], set())
    return named | {name for name in case.fields
                    if re.search(rf"(?<!\w){name}(?!\w)", body["message"])}


def _envelope_invalid(body: dict) -> None:
    assert body["results"] is None and body["status"] == 400
    assert -5 <= body["error_code"] <= -1, body


def _envelope_malformed(body: dict) -> None:
    assert body["error_code"] == -6 and body["results"] is None, body


def _envelope_http_error(body: dict, status: int) -> None:
    assert body["error_code"] == -status and body["status"] == status, body
    assert body["results"] is None and body["message"], body


def _envelope_user(body: dict) -> dict:
    assert body["error_code"] == 0
    return body["results"]


ENVELOPE = Format(
    fields_named=_envelope_fields,
    messages=lambda body, name: [body["message"]],
    check_invalid=_envelope_invalid,
    check_malformed=_envelope_malformed,
    check_http_error=_envelope_http_error,
    is_field_body=lambda body: -5 <= body.get("error_code", 0) <= -1,
)


def _laravel_invalid(body: dict) -> None:
    assert body["message"] == LARAVEL_INVALID and isinstance(body["errors"], dict)


def _laravel_malformed(body: dict) -> None:
    assert body == {"message": "The request body is not a valid JSON object."}


def _laravel_http_error(body: dict, status: int) -> None:
    assert set(body) == {"message"} and body["message"], body


LARAVEL = Format(
    fields_named=lambda case, body: set(body["errors"]),
    messages=lambda body, name: body["errors"].get(name, []),
    check_invalid=_laravel_invalid,
    check_malformed=_laravel_malformed,
    check_http_error=_laravel_http_error,
    is_field_body=lambda body: True,  # 422 is only ever a validation error
)


def _jsonapi_invalid(body: dict) -> None:
    assert body["jsonapi"] == {"version": "1.0"} and body["errors"]


def _jsonapi_malformed(body: dict) -> None:
    assert [e["status"] for e in body["errors"]] == ["400"], body


def _jsonapi_http_error(body: dict, status: int) -> None:
    assert [e["status"] for e in body["errors"]] == [str(status)], body
    assert body["jsonapi"] == {"version": "1.0"}


JSONAPI = Format(
    fields_named=lambda case, body: {err["title"].removeprefix("Invalid ")
                                     for err in body["errors"]},
    messages=lambda body, name: [e["detail"] for e in body["errors"]
                                 if e["title"] == f"Invalid {name}"],
    check_invalid=_jsonapi_invalid,
    check_malformed=_jsonapi_malformed,
    check_http_error=_jsonapi_http_error,
    is_field_body=lambda body: True,  # 422 is only ever a validation error
)


@dataclass(frozen=True)
class Case:
    """One profile's registration route and wire format."""

    name: str
    register: str                 # POST path
    prefix: str                   # unknown paths below it answer in this format
    email: str                    # wire name of the address
    username: str | None          # wire name of the username, if the profile has one
    fields: tuple[str, ...]       # every string field it reads (wire names)
    required: tuple[str, ...]
    limits: dict[str, int]        # wire name -> maximum length
    invalid_status: int           # status of a validation error
    content_type: str             # exact Content-Type of every JSON answer
    duplicate_email: dict         # the whole body for "this email is taken"
    duplicate_username: dict | None
    invalid_email: str            # the message for a malformed address
    account_type: str
    confirm: tuple[str, ...]      # its own confirmation endpoints (CONFIRM keys)
    format: Format                # how its error bodies are shaped
    extra: dict = field(default_factory=dict)  # other fields of a valid body
    repeat_password: str | None = None  # wire name of the password, typed again
    user_of: Callable[[dict], dict] = lambda body: body  # a 201 body -> the user part
    numbers_are_strings: bool = False  # DRF's CharField: a JSON number is read as its str()

    def payload(self, email: str, *, password: str = PASSWORD, username: str | None = None,
                **fields) -> dict:
        """A body that registers ``email`` (fresh username), overridden by ``fields``."""
        body = {**self.extra, self.email: email, "password": password}
        if self.username:
            body[self.username] = username or f"user{next(_usernames)}"
        if self.repeat_password:
            body[self.repeat_password] = password
        body.update(fields)
        return body

    def __str__(self) -> str:
        return self.name


CASES = {
    "drf": Case(
        name="drf", register="/api/register/", prefix="/api/register/",
        email="email", username="username", fields=("username", "email", "password"),
        required=("username", "email", "password"),
        limits={"username": 150, "email": 254, "password": 1024},
        invalid_status=400, content_type=JSON,
        duplicate_email={"email": ["user with this email already exists."]},
        duplicate_username={"username": ["user with this login already exists."]},
        invalid_email="Enter a valid email address.", account_type="customer",
        confirm=("drf",), format=DRF, numbers_are_strings=True,
    ),
    "envelope": Case(
        name="envelope", register="/api/v1/user/register", prefix="/api/v1/",
        email="email_address", username="username",
        fields=("username", "email_address", "password"),
        required=("username", "email_address", "password"),
        limits={"username": 150, "email_address": 254, "password": 1024},
        invalid_status=400, content_type=JSON,
        duplicate_email={"results": None,
                         "message": "Email address already used to register an account.",
                         "error": "Email address already used", "error_code": -2,
                         "status": 400},
        duplicate_username={"results": None,
                            "message": "Username already exists for a different account.",
                            "error": "Username already exists", "error_code": -1,
                            "status": 400},
        invalid_email="The email_address attribute is not a valid email address.",
        account_type="customer", confirm=(), format=ENVELOPE,
        user_of=_envelope_user,
    ),
    "laravel": Case(
        name="laravel", register="/api/users/register", prefix="/api/users/register/",
        email="email", username=None,
        fields=("first_name", "insertion", "last_name", "email", "postal_code", "password"),
        required=("first_name", "last_name", "email", "postal_code", "password"),
        limits={name: 191 for name in ("first_name", "insertion", "last_name", "email",
                                       "postal_code", "password")},
        invalid_status=422, content_type=JSON,
        duplicate_email={"message": LARAVEL_INVALID,
                         "errors": {"email": ["The email has already been taken."]}},
        duplicate_username=None,
        invalid_email="The email must be a valid email address.", account_type="guest",
        confirm=("laravel",), format=LARAVEL,
        extra={"first_name": "Harrie", "insertion": "van", "last_name": "Tiggelen",
               "postal_code": "5673RE"},
    ),
    "jsonapi": Case(
        name="jsonapi", register="/api/users/registration",
        prefix="/api/users/registration/", email="email", username=None,
        fields=("email", "password", "password_confirmation"),
        required=("email", "password"),
        limits={"email": 254, "password": 1024},
        invalid_status=422, content_type=JSONAPI_TYPE,
        duplicate_email={"errors": [{"title": "Invalid email",
                                     "detail": "Email has already been taken", "source": {}}],
                         "jsonapi": {"version": "1.0"}},
        duplicate_username=None,
        invalid_email="Email is invalid", account_type="customer", confirm=("jsonapi",),
        format=JSONAPI, repeat_password="password_confirmation",
        user_of=lambda body: {"id": body["data"]["id"], **body["data"]["attributes"]},
    ),
    "jwt": Case(
        name="jwt", register="/api/sign-up/", prefix="/api/sign-up/",
        email="email", username="username",
        fields=("username", "email", "password", "first_name", "last_name", "number_phone"),
        required=("username", "email", "password"),
        limits={"username": 150, "email": 254, "password": 1024, "first_name": 150,
                "last_name": 150, "number_phone": 10},
        invalid_status=400, content_type=JSON,
        duplicate_email={"email": ["user with this email already exists."]},
        duplicate_username={"username": ["A user with that username already exists."]},
        invalid_email="Enter a valid email address.", account_type="customer", confirm=(),
        format=DRF, user_of=lambda body: body["user"], numbers_are_strings=True,
        extra={"first_name": "John", "last_name": "Doe", "number_phone": "5551234567"},
    ),
}
# Each profile's body for an unexpected server error (a generic 500, nothing leaked).
SERVER_ERROR = {
    "drf": {"detail": "A server error occurred."},
    "envelope": {"results": None, "message": "The server could not process the request.",
                 "error": "Internal Server Error", "error_code": -500, "status": 500},
    "laravel": {"message": "Server Error"},
    "jsonapi": {"errors": [{"status": "500", "title": "Internal server error",
                            "detail": "Internal server error", "source": {}}],
                "jsonapi": {"version": "1.0"}},
    "jwt": {"detail": "A server error occurred."},
}
PROFILES = list(CASES.values())
USERNAME_PROFILES = [case for case in PROFILES if case.username]


# -- sending ---------------------------------------------------------------------------

def post(client, url: str, data, encoding: str = "json", **kwargs):
    """POST ``data`` as JSON, urlencoded or multipart form data."""
    if encoding == "json":
        return client.post(url, json=data, **kwargs)
    if encoding == "form":
        return client.post(url, data=data, **kwargs)
    return client.post(url, data=data, content_type="multipart/form-data", **kwargs)


def raw(client, url: str, data: bytes, content_type: str | None = "application/json", **kw):
    return client.post(url, data=data, content_type=content_type, **kw)


# -- recognising answers ------------------------------------------------------------------

def body_of(case: Case, response) -> dict:
    """The JSON body, after checking it is this profile's JSON, never HTML."""
    assert response.status_code < 500, response.data[:300]
    assert response.headers["Content-Type"] == case.content_type, response.headers
    assert not response.data.lstrip().startswith(b"<")
    body = response.get_json(force=True)
    assert isinstance(body, dict), body
    return body


def fields_named(case: Case, body: dict) -> set[str]:
    """The wire names a validation error body complains about."""
    return case.format.fields_named(case, body)


def messages(case: Case, body: dict, name: str) -> list[str]:
    """The texts a validation error body gives for the wire field ``name``."""
    return case.format.messages(body, name)


def assert_invalid(case: Case, response, *fields: str) -> dict:
    """A validation error in the profile's format, naming at least ``fields``."""
    assert response.status_code == case.invalid_status, (response.status_code, response.data)
    body = body_of(case, response)
    case.format.check_invalid(body)
    missing = set(fields) - fields_named(case, body)
    assert not missing, (missing, body)
    return body


def assert_malformed(case: Case, response) -> dict:
    """The profile's answer to a body that is not a JSON object (400)."""
    assert response.status_code == 400, (response.status_code, response.data)
    body = body_of(case, response)
    case.format.check_malformed(body)
    return body


def assert_http_error(case: Case, response, status: int, allow: str = "POST") -> dict:
    """An HTTP-level error (404, 405, 413, 415...) in the profile's format."""
    assert response.status_code == status, (response.status_code, response.data)
    body = body_of(case, response)
    case.format.check_http_error(body, status)
    if status == 405:
        assert allow in response.headers["Allow"].split(", "), response.headers
    return body


def assert_rejected(case: Case, response) -> int:
    """Any 4xx in the profile's own format: validation, malformed body or HTTP error."""
    status = response.status_code
    assert 400 <= status < 500, (status, response.data)
    if status == case.invalid_status and _is_field_body(case, response):
        assert_invalid(case, response)
    elif status == 400:
        assert_malformed(case, response)
    else:
        assert_http_error(case, response, status)
    return status


def _is_field_body(case: Case, response) -> bool:
    """Whether a 400/422 lists field errors (not a malformed-body or HTTP error)."""
    body = response.get_json(force=True, silent=True) or {}
    return case.format.is_field_body(body)


def created(case: Case, response) -> dict:
    """The user part of a 201 answer (``email`` and friends)."""
    assert response.status_code == 201, (response.status_code, response.data)
    body = body_of(case, response)
    return case.user_of(body)


VOLATILE = {"id", "api_token", "access", "refresh"}


def scrub(value, *known: str):
    """``value`` with server-chosen ids and tokens, and the ``known`` strings, masked."""
    if isinstance(value, dict):
        return {k: "*" if k in VOLATILE else scrub(v, *known) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, *known) for v in value]
    return "<known>" if isinstance(value, str) and value in known else value


# -- confirmation endpoints ---------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    """One confirmation endpoint: how a credential is presented, and its two answers."""

    name: str
    send: Callable          # (client, email, credential) -> response
    confirmed: Callable     # (response, email) -> None: asserts its success answer
    refused: Callable       # (response, body) -> None: asserts its refusal (a 4xx)

    def __str__(self) -> str:
        return self.name


VALIDATION = "/api/users/validation"


def _drf_confirmed(response, email: str) -> None:
    assert response.status_code == 200, response.data
    body = response.get_json()
    assert body["email"] == email and body["is_email_confirmed"] is True


def _drf_refused(response, body) -> None:
    assert response.status_code == 400 and list(body) == ["token_id"], body


def _jsonapi_confirmed(response, email: str) -> None:
    assert response.status_code == 200, response.data
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.data == b""


def _jsonapi_refused(response, body) -> None:
    assert response.status_code == 422, body
    assert response.headers["Content-Type"] == JSONAPI_TYPE
    assert body["jsonapi"] == {"version": "1.0"} and len(body["errors"]) == 1


def _laravel_confirmed(response, email: str) -> None:
    assert (response.status_code, response.get_json()) == (201, {"message": "Validated"})


def _laravel_refused(response, body) -> None:
    if response.status_code == 422:
        assert body["message"] == LARAVEL_INVALID, body
        assert set(body["errors"]) <= {"email", "token"} and body["errors"], body
    else:
        assert (response.status_code, body) == (401, {"message": "Token is incorrect"})


ENDPOINTS = {
    "drf": Endpoint(
        "drf",
        send=lambda client, email, credential: client.get(
            "/api/confirm-email/", query_string={"token_id": credential}),
        confirmed=_drf_confirmed, refused=_drf_refused),
    "jsonapi": Endpoint(
        "jsonapi",
        send=lambda client, email, credential: client.get(
            "/api/users/verification", query_string={"email_token": credential}),
        confirmed=_jsonapi_confirmed, refused=_jsonapi_refused),
    "laravel": Endpoint(
        "laravel",
        send=lambda client, email, credential: client.post(
            VALIDATION, json={"email": email, "token": credential}),
        confirmed=_laravel_confirmed, refused=_laravel_refused),
}
CONFIRM = tuple(ENDPOINTS)


def confirm(client, endpoint: str, email: str, credential):
    """Present ``credential`` (token or code) at one confirmation endpoint."""
    return ENDPOINTS[endpoint].send(client, email, credential)


def assert_confirmed_answer(endpoint: str, response, email: str) -> None:
    """The endpoint's own success answer."""
    ENDPOINTS[endpoint].confirmed(response, email)


def assert_refused_answer(endpoint: str, response) -> None:
    """A refusal in the endpoint's own format; nothing confirmed."""
    assert 400 <= response.status_code < 500, (response.status_code, response.data)
    ENDPOINTS[endpoint].refused(response, response.get_json(force=True))


# -- values ----------------------------------------------------------------------------------

def long_email(length: int) -> str:
    """A syntactically valid address of exactly ``length`` characters (7..254)."""
    local = "a" * min(64, length - len("@b.com"))
    labels, left = [], length - len(local) - len("@") - len(".com")
    while left > 0:
        size = min(63, left)
        if left - size == 1:  # never leave a lone character for a "." + label
            size -= 1
        labels.append("b" * size)
        left -= size + (1 if left - size else 0)
    address = f"{local}@{'.'.join(labels)}.com"
    assert len(address) == length, (len(address), length)
    return address


def value_of_length(case: Case, name: str, length: int) -> str | None:
    """A valid value of ``name`` with exactly ``length`` characters (None: no such value)."""
    if name == case.email:
        return long_email(length)
    if name == "postal_code":
        return None
    if name == "number_phone":
        return "5" * length
    if name == "password":
        return "Str0ng-" + "x" * (length - 7)
    return "u" * length
