"""The `jsonapi` profile (seed 003): JSON:API documents, Rails messages."""

from __future__ import annotations

from flask import Response
from flask import request
from marshmallow import ValidationError
from marshmallow import validates_schema

from ...core import confirmation
from ...core.errors import AlreadyConfirmed
from ...core.errors import TokenExpired
from ...core.errors import TokenInvalid
from ...core.passwords import PASSWORD_MAX_LENGTH
from ...core.passwords import MinLengthPolicy
from .. import limits
from ..payload import single
from .base import CODES
from .base import NOT_BLANK
from .base import Email
from .base import Profile
from .base import ProfileSchema
from .base import ProfileSpec
from .base import Reply
from .base import Text
from .base import blueprint
from .base import http_headers
from .base import lookup
from .base import route

MEDIA_TYPE = "application/vnd.api+json; charset=utf-8"
JSONAPI = {"version": "1.0"}
INVALID_TOKEN = "Invalid or expired token. Please retry account confirmation"
ALREADY_VERIFIED = "This user account has already been verified"
HTTP_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    413: "Payload too large",
    415: "Unsupported media type",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}
# JSON:API documents, for the OpenAPI document.
SOURCE = {"type": "object", "description": "where the error is (JSON:API error source)",
          "properties": {"pointer": {"type": "string"}, "parameter": {"type": "string"}}}
HTTP_ERROR = {"type": "object", "required": ["status", "title", "detail", "source"],
              "properties": {"status": {"type": "string"}, "title": {"type": "string"},
                             "detail": {"type": "string"}, "source": SOURCE}}
FIELD_ERROR = {"type": "object", "required": ["title", "detail", "source"],
               "properties": {"title": {"type": "string"}, "detail": {"type": "string"},
                              "source": SOURCE}}
VERSION = {"type": "object", "required": ["version"],
           "properties": {"version": {"const": JSONAPI["version"]}}}


def errors_document(error: dict) -> dict:
    return {"type": "object", "required": ["errors", "jsonapi"],
            "properties": {"errors": {"type": "array", "minItems": 1, "items": error},
                           "jsonapi": VERSION}}


def keyed(name: str, text: str) -> dict:
    """The seed's verification error: ``{name: text}``, no ``source``."""
    return {"type": "object", "required": [name], "additionalProperties": False,
            "properties": {name: {"const": text}}}


USER = {"type": "object", "required": ["data", "jsonapi"], "properties": {
    "data": {"type": "object", "required": ["id", "type", "attributes"], "properties": {
        "id": {"type": "string"}, "type": {"const": "user"},
        "attributes": {"type": "object", "required": ["email"],
                       "properties": {"email": {"type": "string"}}}}},
    "jsonapi": VERSION}}
# A resource document: its attributes are read instead of the top level (attributes()).
RESOURCE = {"type": "object", "required": ["data"], "properties": {
    "data": {"type": "object", "required": ["attributes"],
             "properties": {"attributes": {"type": "object"}}}}}


# Rails' ActiveModel messages by code; the detail is "<Attribute> <message>".
MESSAGES = {
    "required": "can't be blank",
    "blank": "can't be blank",
    "null": "can't be blank",
    "invalid": "is invalid",
    "null_characters": "is invalid",
    "undeliverable": "is invalid",
    "unique": "has already been taken",
    "max_length": "is too long (maximum is {max_length} characters)",
    "password_too_long": "is too long (maximum is {max_length} characters)",
    "min_length": "is too short (minimum is {min_length} characters)",
    "password_too_short": "is too short (minimum is {min_length} characters)",
    "password_too_common": "is too common",
    "password_breached": "has appeared in a data breach",
    "confirmation": "doesn't match Password",
}
# The contract's choice (Rails' length: {minimum: 6}); below NIST's 8, an
# accepted risk recorded in SECURITY.md §1.4.
POLICY = MinLengthPolicy(6)


def detail(field: str, code: str, params: dict) -> str:
    """Rails' full message: the humanized attribute, then the message."""
    text = lookup(MESSAGES, field, code, params, MESSAGES["invalid"])
    return f"{field.replace('_', ' ').capitalize()} {text}"


def attributes(payload: dict) -> dict:
    """A JSON:API resource document's ``data.attributes``, or the flat payload itself."""
    data = payload.get("data")
    if isinstance(data, dict) and isinstance(data.get("attributes"), dict):
        return data["attributes"]
    return payload


class Password(Text):
    """Never trimmed; a missing or blank password is also too short, as in Rails."""

    def __init__(self, min_length, **kwargs):
        empty = ["blank", f"min_length:{min_length}"]
        kwargs.setdefault("error_messages", {**CODES, "required": empty, "null": empty})
        super().__init__(strip=False, blank=True, pattern=NOT_BLANK, **kwargs)
        self.min_length = min_length

    def openapi(self):
        return {**super().openapi(), "minLength": self.min_length}

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        codes = ["blank"] if not value.strip() else []
        if len(value) < self.min_length:
            codes.append(f"min_length:{self.min_length}")
        if codes:
            raise ValidationError(codes)
        return value


class RegisterSchema(ProfileSchema):
    email = Email(required=True)
    password = Password(POLICY.min_length, required=True, max_length=PASSWORD_MAX_LENGTH)
    # No length rule of its own: it is only ever compared with the password.
    password_confirmation = Text(strip=False, blank=True, allow_none=True, load_default=None)

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def confirmation_matches(self, data, original_data, **kwargs):
        """Required with a password, and equal to it (compared with the raw password)."""
        if "password_confirmation" not in data:
            return  # its own type error is already reported
        confirmation = data["password_confirmation"]
        password = original_data.get("password")
        if not confirmation:
            if isinstance(password, str) and password.strip():
                raise ValidationError("blank", "password_confirmation")
        elif confirmation != password:
            raise ValidationError("confirmation", "password_confirmation")


class JsonApiProfile(Profile):
    name = "jsonapi"
    schema = RegisterSchema()
    policy = POLICY
    http_texts = HTTP_TITLES
    http_default = "Error"
    media_type = MEDIA_TYPE.split(";")[0]
    field_error_status = 422
    registered_reply = Reply("Registered; a confirmation email is queued", USER)

    def error_schema(self, status):
        return errors_document(HTTP_ERROR)

    def field_error_schema(self):
        return errors_document(FIELD_ERROR)

    def body_schema(self, schema, form):
        """Flat attributes, or (JSON only) a resource document carrying them."""
        if form:
            return schema
        return {"anyOf": [{"allOf": [schema, {"not": RESOURCE}]},
                          {"type": "object", "required": ["data"], "properties": {
                              "data": {"type": "object", "required": ["attributes"],
                                       "properties": {"attributes": schema}}}}]}

    def json(self, body, status, headers=None):
        response = super().json(body, status, headers)
        response.headers["Content-Type"] = MEDIA_TYPE
        return response

    def document(self, errors, status, headers=None):
        return self.json({"errors": errors, "jsonapi": JSONAPI}, status, headers)

    def load(self, payload, schema=None):
        """Accept flat fields or a JSON:API ``{"data": {"attributes": ...}}`` document."""
        return super().load(attributes(payload), schema)

    def malformed(self, exc):
        text = ("Request body must be a JSON object"
                if exc.code_name == "not_an_object" else "Malformed JSON body")
        return self.error(exc.code, HTTP_TITLES[exc.code], text, http_headers(exc))

    def render_http_error(self, exc, status, title, headers):
        return self.error(status, title, exc.description if status < 500 else title, headers)

    def error(self, status, title, text, headers):
        error = {"status": str(status), "title": title, "detail": text, "source": {}}
        return self.document([error], status, headers)

    def password_text(self, err):
        return detail(err.field, err.code, err.params)  # "New password is too short ..."

    def field_errors(self, exc):
        errors = []
        for err in exc.errors:
            field = self.wire(err.field)
            errors.append({"title": f"Invalid {field}",
                           "detail": detail(field, err.code, err.params), "source": {}})
        return self.document(errors, 422)

    def registered(self, result):
        user = result.user
        resource = {"id": str(user.id), "type": "user", "attributes": {"email": user.email}}
        return self.json({"data": resource, "jsonapi": JSONAPI}, 201)


profile = JsonApiProfile()
# Sign-up with email, password and password_confirmation (seed 003).
bp = blueprint(profile, __name__, register="/users/registration", endpoint="registration")


class VerificationQuery(ProfileSchema):
    email_token = Text(required=True, strip=False)


@route(bp, "/users/verification", limits.CONFIRMATION, methods=("GET",),
       endpoint="verification", query=VerificationQuery(), responses={
           200: Reply("Confirmed (an empty body)", {"type": "string", "maxLength": 0},
                      media_type="text/plain"),
           422: Reply("Invalid, expired or used token; or the account is already verified",
                      errors_document({"anyOf": [keyed("email_token", INVALID_TOKEN),
                                                 keyed("user_account", ALREADY_VERIFIED)]}))})
def verification():
    """Confirm an address with ``email_token`` (seed 003)."""
    if request.method == "HEAD":  # a HEAD (link scanner) never changes state
        return Response("", 200, content_type="text/plain; charset=utf-8")
    try:  # a repeated parameter is refused like a repeated body field (payload.py)
        confirmation.confirm(single(request.args, "email_token") or "")
    except AlreadyConfirmed:
        return profile.document([{"user_account": ALREADY_VERIFIED}], 422)
    except (TokenInvalid, TokenExpired):
        return profile.document([{"email_token": INVALID_TOKEN}], 422)
    return Response("", 200, content_type="text/plain; charset=utf-8")


PROFILE = ProfileSpec(profile, bp, prefixes=("/api/users/registration",
                                             "/api/users/verification"))
