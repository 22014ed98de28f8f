"""The `envelope` profile (seed 001): ``{results, message, error, error_code, status}``.

Every answer under ``/api/v1/`` is this envelope, with ``status`` equal to the
HTTP status. ``error_code`` values:

====  =============================================================  ======
code  meaning                                                        status
====  =============================================================  ======
   0  success                                                        201
  -1  username already exists for a different account (document)    400
  -2  email address already used for an account (document)           400
  -3  password invalid: too weak, or too long (document)             400
  -4  missing attributes: absent, ``null`` or blank (document)       400
  -5  invalid attribute: not a string, not an email address, too
      long, characters a username may not contain                    400
  -6  malformed body: not JSON, or JSON that is not an object         400
-NNN  an HTTP-level failure: the negated status (-401 wrong
      credentials at login, -404 not found,
      -405 method, -413 too large, -415 media type, -429 too many
      requests, -500 server error, -503 unavailable, ...)            NNN
====  =============================================================  ======

With several problems the most basic one sets ``error_code`` (missing, then
invalid, then username, email, password) and ``message`` lists them all.
"""

from __future__ import annotations

from werkzeug.exceptions import Unauthorized

from ...core import login as core_login
from ...core.errors import FieldErrors
from ...core.errors import InvalidCredentials
from ...core.passwords import DjangoPolicy
from .. import limits
from ..payload import read_payload
from .base import Email
from .base import Profile
from .base import ProfileSchema
from .base import ProfileSpec
from .base import Reply
from .base import Text
from .base import blueprint
from .base import lookup
from .base import route
from .django_rules import PASSWORD_MESSAGES
from .django_rules import UserSchema
from .django_rules import password_message

REGISTERED = "New user successfully registered"
LOGGED_IN = "User successfully logged in"
MISSING_CODES = {"required", "null", "blank"}
# error_code -> the short "error" text
ERRORS = {
    -1: "Username already exists",
    -2: "Email address already used",
    -3: "Password invalid",
    -4: "Missing attributes",
    -5: "Invalid attributes",
    -6: "Malformed request body",
}
INVALID_MESSAGES = {
    "invalid": "The {wire} attribute must be a string.",
    "email.invalid": "The {wire} attribute is not a valid email address.",
    "email.undeliverable": "The {wire} attribute is not a valid email address.",
    "max_length": "The {wire} attribute must be at most {max_length} characters long.",
    "invalid_chars": "The {wire} attribute may contain only letters, digits and "
                     "@ . + - _ characters.",
    "null_characters": "The {wire} attribute must not contain null characters.",
}
# error_code -> what it means (the table above), for the OpenAPI document.
MEANINGS = {
    0: "success",
    -1: "username already exists for a different account",
    -2: "email address already used for an account",
    -3: "password invalid: too weak, or too long",
    -4: "missing attributes: absent, null or blank",
    -5: "invalid attribute: not a string, not an email address, too long, characters "
        "a username may not contain",
    -6: "malformed body: not JSON, or JSON that is not an object",
}
HTTP_MESSAGES = {
    400: "The request could not be understood.",
    401: "The username, email address or password is not correct.",
    404: "The requested URL was not found on the server.",
    405: "The {method} method is not allowed for this URL.",
    413: "The request body is too large.",
    415: "Unsupported media type: send application/json or form data.",
    429: "Too many requests: try again in {retry_after} seconds.",
    500: "The server could not process the request.",
    503: "The service is temporarily unavailable: try again in {retry_after} seconds.",
}
JSON_TYPES = {"list": "an array", "str": "a string", "bool": "a boolean", "int": "a number",
              "float": "a number", "NoneType": "null"}


class RegisterSchema(UserSchema):
    email = Email(required=True, data_key="email_address")


class LoginSchema(ProfileSchema):
    username = Text()
    email = Text(data_key="email_address", max_length=320)
    password = Text(required=True, strip=False, max_length=4096)
    device_token = Text(blank=True, load_default=None)


def aliased(payload: dict) -> dict:
    """The document's table says ``email_address`` but its example sends ``email``:
    accept either; when both are sent, ``email_address`` wins."""
    if "email_address" not in payload and "email" in payload:
        return {**payload, "email_address": payload["email"]}
    return payload


def error_code(codes) -> dict:
    """The ``error_code`` property: an enum of ``codes``, each with its meaning."""
    meanings = {code: MEANINGS.get(code, f"HTTP {-code}") for code in codes}
    return {"type": "integer", "enum": list(codes), "x-enum-descriptions": meanings,
            "description": "; ".join(f"{code}: {text}" for code, text in meanings.items())}


def envelope_schema(results: dict, error: dict, codes, status: int) -> dict:
    """JSON Schema of one envelope."""
    return {"type": "object", "required": ["results", "message", "error", "error_code",
                                           "status"],
            "properties": {"results": results, "message": {"type": "string"},
                           "error": error, "error_code": error_code(codes),
                           "status": {"const": status}}}


RESULTS = {"type": "object",
           "required": ["id", "username", "email", "email_address", "api_token",
                        "account_type"],
           "properties": {"id": {"type": "integer"}, "username": {"type": "string"},
                          "email": {"type": "string"}, "email_address": {"type": "string"},
                          "api_token": {"type": "string"}, "account_type": {"type": "string"}}}
NO_RESULTS = {"type": "null"}
LOGIN_RESULTS = {**RESULTS, "required": [*RESULTS["required"], "device_token"],
                 "properties": {**RESULTS["properties"], "device_token": {"type": "string"}}}


class EnvelopeProfile(Profile):
    name = "envelope"
    schema = RegisterSchema()
    wire_names = {"email": "email_address"}
    aliases = {"email_address": "email"}
    registered_reply = Reply("Registered; the api_token is shown once, a confirmation "
                             "email is queued",
                             envelope_schema(RESULTS, {"type": "null"}, [0], 201))
    policy = DjangoPolicy()
    issue_api_token = True
    http_texts = HTTP_MESSAGES
    http_default = "The request failed."

    def load(self, payload, schema=None):
        return super().load(aliased(payload), schema)

    def envelope(self, results, message, error, error_code, status, headers=None):
        body = {"results": results, "message": message, "error": error,
                "error_code": error_code, "status": status}
        return self.json(body, status, headers)

    def field_errors(self, exc: FieldErrors):
        ranked = sorted(((_error_code(e), i, e) for i, e in enumerate(exc.errors)),
                        key=lambda t: (_RANK[t[0]], t[1]))
        code = ranked[0][0]
        return self.envelope(None, self._message([e for _, _, e in ranked]),
                             ERRORS[code], code, 400)

    def _message(self, errors) -> str:
        missing = [self.wire(e.field) for e in errors if e.code in MISSING_CODES]
        sentences = []
        if missing:
            sentences.append("Missing attributes needed for registering: "
                             + ", ".join(dict.fromkeys(missing)) + ".")
        weak = []
        for err in errors:
            code = _error_code(err)
            if code == -5:
                sentences.append(lookup(INVALID_MESSAGES, err.field, err.code, err.params,
                                        INVALID_MESSAGES["invalid"], wire=self.wire(err.field)))
            elif code == -1:
                sentences.append("Username already exists for a different account.")
            elif code == -2:
                sentences.append("Email address already used to register an account.")
            elif code == -3:
                weak.append(_password_message(err))
        if weak:
            sentences.append("Password invalid: " + " ".join(weak))
        return " ".join(sentences)

    def error_schema(self, status):
        return envelope_schema(NO_RESULTS, {"type": "string"}, [-status], status)

    def field_error_schema(self):
        return envelope_schema(NO_RESULTS, {"enum": [ERRORS[c] for c in (-1, -2, -3, -4, -5)]},
                               [-1, -2, -3, -4, -5], 400)

    def malformed_schema(self):
        return envelope_schema(NO_RESULTS, {"const": ERRORS[-6]}, [-6], 400)

    def malformed(self, exc):
        if exc.code_name == "not_an_object":
            message = ("The request body must be a JSON object, not "
                       f"{JSON_TYPES.get(exc.got, exc.got)}.")
        else:
            message = f"The request body is not valid JSON ({exc.detail})."
        return self.envelope(None, message, ERRORS[-6], -6, 400)

    def render_http_error(self, exc, status, text, headers):
        return self.envelope(None, text, exc.name, -status, status, headers)

    def registered(self, result):
        return self.envelope(user_results(result.user, result.api_token), REGISTERED,
                             None, 0, 201)


def user_results(user, api_token) -> dict:
    """``results`` of the registration and login answers."""
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "email_address": user.email,
        "api_token": api_token,
        "account_type": user.account_type,
    }


_RANK = {-4: 0, -5: 1, -1: 2, -2: 3, -3: 4}


def _error_code(err) -> int:
    if err.code in MISSING_CODES:
        return -4
    if err.code == "unique":
        return -1 if err.field == "username" else -2
    if err.field == "password" and (err.code in PASSWORD_MESSAGES or err.code == "max_length"):
        return -3
    return -5


def _password_message(err) -> str:
    code = "password_too_long" if err.code == "max_length" else err.code
    return password_message(code, err.params)


profile = EnvelopeProfile()
# Registers a customer account and hands out its api_token once (seed 001).
bp = blueprint(profile, __name__, register="/user/register", url_prefix="/v1")
login_schema = LoginSchema()


@route(bp, "/user/login", limits.TOKEN, endpoint="login", body=login_schema,
       one_of=(("username",), ("email_address",)),
       field_errors=Reply("Missing or invalid attributes; a password too long",
                          envelope_schema(NO_RESULTS,
                                          {"enum": [ERRORS[c] for c in (-3, -4, -5)]},
                                          [-3, -4, -5], 400)),
       responses={
           200: Reply("Logged in: a fresh api_token (the previous one stops working) and "
                      "the device token", envelope_schema(LOGIN_RESULTS, {"type": "null"},
                                                          [0], 200)),
           401: Reply("Wrong credentials (also once the account's login is throttled and "
                      "no device token of it was sent)", profile.error_schema(401))})
def login():
    """Log in with ``username`` (or ``email_address``/``email``) and ``password``: the
    registration's envelope with a fresh ``api_token`` (the previous one stops
    working) and a ``device_token`` to send back on later logins."""
    payload = read_payload()
    try:
        data = profile.load(payload, login_schema)
    except FieldErrors as exc:
        missing = [profile.wire(e.field) for e in exc.errors if e.code in MISSING_CODES]
        if len(missing) < len(exc.errors):
            raise  # an invalid attribute: -5, worded as for registration
        data = {"username": payload.get("username"),
                "email": payload.get("email_address") or payload.get("email")}
    else:
        missing = []
    if not (data.get("username") or data.get("email")):
        missing.insert(0, "username or email_address")
    if missing:
        return profile.envelope(
            None, "Missing attributes needed for logging in: " + ", ".join(missing) + ".",
            ERRORS[-4], -4, 400)
    identifier = data.get("username") or data.get("email")
    try:
        user = core_login.authenticate(identifier, data["password"], data["device_token"])
        api_token = core_login.issue_api_token(user)
    except InvalidCredentials:
        return profile.http_error(Unauthorized())
    results = {**user_results(user, api_token), "device_token": core_login.device_token(user)}
    return profile.envelope(results, LOGGED_IN, None, 0, 200)


PROFILE = ProfileSpec(profile, bp, prefixes=("/api/v1/",))
