"""The `laravel` profile (seed 002): 422 ``{message, errors}`` with Laravel 7 messages."""

from __future__ import annotations

from flask import Blueprint
from flask import request

from ...core import accounts
from ...core import tokens
from ...core.errors import AlreadyConfirmed
from ...core.errors import CodeMismatch
from ...core.errors import FieldErrors
from ...core.errors import TokenExpired
from ...core.errors import TokenInvalid
from ...core.errors import TooManyAttempts
from ...core.identity import email_key
from ..payload import MalformedBody
from ..payload import read_payload
from .base import Email
from .base import Profile
from .base import ProfileSchema
from .base import Text
from .base import http_headers
from .base import register_errors

INVALID_DATA = "The given data was invalid."
FIELD_MESSAGES = {
    "required": "The {attribute} field is required.",
    "blank": "The {attribute} field is required.",
    "null": "The {attribute} field is required.",
    "invalid": "The {attribute} must be a string.",
    "null_characters": "The {attribute} format is invalid.",
    "max_length": "The {attribute} may not be greater than {max_length} characters.",
    "unique": "The {attribute} has already been taken.",
    "email.invalid": "The {attribute} must be a valid email address.",
    "email.undeliverable": "The {attribute} must be a valid email address.",
    "token.invalid": "The {attribute} must be an integer.",
}
HTTP_MESSAGES = {
    400: "Bad Request",
    401: "Unauthenticated.",
    404: "Not Found",
    405: "The {method} method is not supported for this route.",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Attempts.",
    500: "Server Error",
    503: "Service Unavailable",
}
TOKEN_INCORRECT = "Token is incorrect"
ALREADY_VALIDATED = "The email is already validated"
TOO_MANY_GUESSES = "Too many incorrect attempts. Request a new code."


def message(field: str, code: str, params: dict) -> str:
    template = (FIELD_MESSAGES.get(f"{field}.{code}") or FIELD_MESSAGES.get(code)
                or "The {attribute} is invalid.")
    return template.format(attribute=field.replace("_", " "), **params)


class LaravelProfile(Profile):
    name = "laravel"
    account_type = "guest"

    def field_errors(self, exc: FieldErrors):
        errors: dict[str, list[str]] = {}
        for err in exc.errors:
            wire = self.wire(err.field)
            errors.setdefault(wire, []).append(message(wire, err.code, err.params))
        return self.json({"message": INVALID_DATA, "errors": errors}, 422)

    def http_error(self, exc):
        status = exc.code or 500
        if isinstance(exc, MalformedBody):
            return self.json({"message": "The request body is not a valid JSON object."}, 400)
        text = HTTP_MESSAGES.get(status, "Error").format(method=request.method)
        return self.json({"message": text}, status, http_headers(exc))


class Token(Text):
    """``token``: the 6-digit code (a string or, as the document says, an integer)
    or the signed link token. Booleans are never numbers here."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value <= 999_999:
                raise self.make_error("invalid")
            return f"{value:06d}"
        return super()._deserialize(value, attr, data, **kwargs)


class ValidationSchema(ProfileSchema):
    email = Email(required=True, max_length=191)
    token = Token(required=True, max_length=512)


profile = LaravelProfile()
bp = Blueprint("laravel", __name__)
register_errors(bp, profile)
validation_schema = ValidationSchema()


@bp.post("/users/validation", endpoint="validation")
def validation():
    """Confirm an address with ``{email, token}``; token = emailed code or link token."""
    data = profile.load(read_payload(), validation_schema)
    email, token = data["email"], data["token"]
    try:
        if tokens.is_code(token):
            accounts.confirm_code(email, token)
        else:
            user = accounts.user_for_token(token)
            if user.email_key != email_key(email):
                raise TokenInvalid()
            accounts.confirm(token)
    except AlreadyConfirmed:
        return profile.json({"message": ALREADY_VALIDATED}, 409)
    except TooManyAttempts:
        return profile.json({"message": TOO_MANY_GUESSES}, 429)
    except (CodeMismatch, TokenInvalid, TokenExpired):
        return profile.json({"message": TOKEN_INCORRECT}, 401)
    return profile.json({"message": "Validated"}, 201)
