"""Django's messages and validators, shared by the Django-shaped profiles (drf, jwt,
envelope) and the shared routes: one copy of what Django says and checks."""

from __future__ import annotations

from marshmallow import ValidationError

from ...core.identity import USERNAME_RE
from .base import Email
from .base import Password
from .base import Profile
from .base import ProfileSchema
from .base import Text
from .base import lookup

# Django's field messages, keyed by code (or field.code).
FIELD_MESSAGES = {
    "required": "This field is required.",
    "blank": "This field may not be blank.",
    "null": "This field may not be null.",
    "invalid": "Not a valid string.",
    "null_characters": "Null characters are not allowed.",
    "max_length": "Ensure this field has no more than {max_length} characters.",
    "email.invalid": "Enter a valid email address.",
    "email.undeliverable": "Enter a valid email address.",
    "username.invalid_chars": "Enter a valid username. This value may contain only "
                              "letters, numbers, and @/./+/-/_ characters.",
    "unique": "user with this {verbose_name} already exists.",
}
PASSWORD_MESSAGES = {
    "password_too_short": "This password is too short. It must contain at least "
                          "{min_length} characters.",
    "password_too_common": "This password is too common.",
    # Not a Django validator: the optional breached-password check (PASSWORD_BREACH_CHECK_URL).
    "password_breached": "This password has appeared in a data breach. "
                         "Please choose a different password.",
    "password_entirely_numeric": "This password is entirely numeric.",
    "password_too_similar": "The password is too similar to the {verbose_name}.",
    "password_too_long": "This password is too long. It must contain at most "
                         "{max_length} characters.",
}
DETAIL_MESSAGES = {
    400: "Bad request.",
    401: "Authentication credentials were not provided.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: 'Method "{method}" not allowed.',
    406: "Could not satisfy the request Accept header.",
    413: "Request body is too large.",
    415: 'Unsupported media type "{mimetype}" in request.',
    429: "Request was throttled. Expected available in {retry_after} seconds.",
    500: "A server error occurred.",
    503: "Service temporarily unavailable, try again later.",
}


def username_chars(value):
    """Django's UnicodeUsernameValidator: letters, digits and @/./+/-/_ only."""
    if not USERNAME_RE.match(value):  # the core checks again, for every path
        raise ValidationError("invalid_chars")


def field_message(field: str, code: str, params: dict, verbose_names: dict) -> str:
    """Django's text for one field error."""
    return lookup(FIELD_MESSAGES, field, code, params, FIELD_MESSAGES["invalid"],
                  verbose_name=verbose_names.get(field, field))


def password_message(code: str, params: dict) -> str:
    """Django's text for one password-policy failure."""
    return PASSWORD_MESSAGES[code].format(**params)


# JSON Schemas of DRF's bodies, for the OpenAPI document.
DETAIL = {"type": "object", "required": ["detail"],
          "properties": {"detail": {"type": "string"}}}
FIELD_ERRORS = {"type": "object", "minProperties": 1,
                "description": "DRF's {field: [message]} (non_field_errors for the body)",
                "additionalProperties": {"type": "array", "minItems": 1,
                                         "items": {"type": "string"}}}
# Django's UnicodeUsernameValidator (identity.USERNAME_RE), around the trimmed value.
USERNAME_PATTERN = r"^\s*[\w.@+-]+\s*$"


class UserSchema(ProfileSchema):
    """Django's user fields, as every Django-shaped registration reads them."""

    username = Text(required=True, max_length=150, validate=username_chars,
                    pattern=USERNAME_PATTERN)
    email = Email(required=True)
    password = Password(required=True, max_length=1024)


class DetailProfile(Profile):
    """DRF's non-field errors: ``{"detail": "..."}``, used by drf, jwt and shared routes."""

    http_texts = DETAIL_MESSAGES
    http_default = "Request failed."
    # DRF's CharField: a JSON number sent for a text field is read as its str().
    numbers_as_strings = True

    def malformed(self, exc):
        if exc.code_name == "not_an_object" and exc.got == "NoneType":
            body = {"non_field_errors": ["No data provided"]}  # a JSON null body
        elif exc.code_name == "not_an_object":
            body = {"non_field_errors": [
                f"Invalid data. Expected a dictionary, but got {exc.got}."]}
        else:
            body = {"detail": f"JSON parse error - {exc.detail}"}
        return self.json(body, 400)

    def render_http_error(self, exc, status, text, headers):
        return self.json({"detail": text}, status, headers)

    verbose_names: dict[str, str] = {}

    def field_errors(self, exc):
        return self.json(self.field_body(exc.errors), 400)

    def field_body(self, errors) -> dict[str, list[str]]:
        """DRF's ``{field: [message]}``."""
        body: dict[str, list[str]] = {}
        for err in errors:
            body.setdefault(self.wire(err.field), []).append(self.message(err))
        return body

    def message(self, err) -> str:
        return field_message(err.field, err.code, err.params, self.verbose_names)

    def error_schema(self, status):
        return DETAIL

    def field_error_schema(self):
        return FIELD_ERRORS

    def malformed_schema(self):
        return {"anyOf": [DETAIL, FIELD_ERRORS]}
