"""The `laravel` profile (seed 002): 422 ``{message, errors}`` with Laravel 7 messages."""

from __future__ import annotations

import re

from marshmallow import ValidationError

from ...core import confirmation
from ...core.errors import AlreadyConfirmed
from ...core.errors import CodeMismatch
from ...core.errors import FieldErrors
from ...core.errors import TokenExpired
from ...core.errors import TokenInvalid
from ...core.errors import TooManyAttempts
from ...core.passwords import MinLengthPolicy
from .. import limits
from .base import CODE_PATTERN
from .base import NOT_BLANK
from .base import Email
from .base import Password
from .base import Profile
from .base import ProfileSchema
from .base import ProfileSpec
from .base import Reply
from .base import Text
from .base import blueprint
from .base import lookup
from .base import route

INVALID_DATA = "The given data was invalid."
# Laravel 7's resources/lang/en/validation.php, keyed by code (or field.code).
FIELD_MESSAGES = {
    "required": "The {attribute} field is required.",
    "blank": "The {attribute} field is required.",
    "null": "The {attribute} field is required.",
    "invalid": "The {attribute} must be a string.",
    "null_characters": "The {attribute} format is invalid.",
    "max_length": "The {attribute} may not be greater than {max_length} characters.",
    "min_length": "The {attribute} must be at least {min_length} characters.",
    "password_too_short": "The {attribute} must be at least {min_length} characters.",
    "password_too_long": "The {attribute} may not be greater than {max_length} characters.",
    # Laravel's Password::uncompromised(), for the common list and the breach check alike.
    "password_too_common": "The given {attribute} has appeared in a data leak. "
                           "Please choose a different {attribute}.",
    "password_breached": "The given {attribute} has appeared in a data leak. "
                         "Please choose a different {attribute}.",
    "unique": "The {attribute} has already been taken.",
    "email.invalid": "The {attribute} must be a valid email address.",
    "email.undeliverable": "The {attribute} must be a valid email address.",
    "postal_code.invalid": "The {attribute} format is invalid.",
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
MAX = 191  # the document's max:191 (Laravel's default string column length)
# NL "1234 AB"/"1234AB" (no leading zero), BE "1000", DE "10115"; ASCII digits only.
POSTAL_CODE_RE = re.compile(r"[1-9][0-9]{3} ?[A-Za-z]{2}|[1-9][0-9]{3}|[0-9]{5}", re.ASCII)
POSTAL_CODE_PATTERN = r"^\s*([1-9][0-9]{3} ?[A-Za-z]{2}|[1-9][0-9]{3}|[0-9]{5})\s*$"
# Laravel's bodies, for the OpenAPI document.
MESSAGE = {"type": "object", "required": ["message"],
           "properties": {"message": {"type": "string"}}}
INVALID = {"type": "object", "required": ["message", "errors"],
           "properties": {"message": {"const": INVALID_DATA},
                          "errors": {"type": "object", "minProperties": 1,
                                     "additionalProperties": {
                                         "type": "array", "minItems": 1,
                                         "items": {"type": "string"}}}}}
NULLABLE_STRING = {"type": ["string", "null"]}
REGISTERED = {"type": "object",
              "required": ["first_name", "insertion", "last_name", "email", "postal_code",
                           "role"],
              "properties": {"first_name": {"type": "string"}, "insertion": NULLABLE_STRING,
                             "last_name": {"type": "string"}, "email": {"type": "string"},
                             "postal_code": {"type": "string"}, "role": {"type": "string"}}}


def said(text: str) -> dict:
    """A ``{"message": text}`` body."""
    return {"type": "object", "required": ["message"], "properties": {"message": {
        "const": text}}}


# The document sets no minimum; 8 is the floor of NIST SP 800-63B and
# OWASP ASVS 5.0 6.2.1, so the laravel profile enforces it.
POLICY = MinLengthPolicy(8)


def message(field: str, code: str, params: dict) -> str:
    return lookup(FIELD_MESSAGES, field, code, params, "The {attribute} is invalid.",
                  attribute=field.replace("_", " "))


class Nullable(Text):
    """Laravel's ``nullable``: missing, null and "" (ConvertEmptyStringsToNull) are None."""

    def __init__(self, **kwargs):
        super().__init__(blank=True, allow_none=True, load_default=None, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs) or None


def min_length(length):
    """Laravel's ``min:N`` on a string, counted in characters."""
    def check(value):
        if len(value) < length:
            raise ValidationError(f"min_length:{length}")
    check.min_length = length  # for the OpenAPI document (Text.openapi)
    return check


def postal_code(value):
    """A Dutch, Belgian or German postal code."""
    if not POSTAL_CODE_RE.fullmatch(value):
        raise ValidationError("invalid")


class RegisterSchema(ProfileSchema):
    # The document's field order, which is also the order of the errors.
    first_name = Text(required=True, max_length=MAX)
    insertion = Nullable(max_length=MAX)
    last_name = Text(required=True, max_length=MAX)
    email = Email(required=True, max_length=MAX)
    postal_code = Text(required=True, max_length=MAX, validate=postal_code,
                       pattern=POSTAL_CODE_PATTERN)
    # The policy's minimum is checked here too, so it is reported with the other fields.
    password = Password(required=True, max_length=MAX,
                        validate=min_length(POLICY.min_length))


class LaravelProfile(Profile):
    name = "laravel"
    account_type = "guest"
    schema = RegisterSchema()
    policy = POLICY
    http_texts = HTTP_MESSAGES
    http_default = "Error"
    field_error_status = 422
    registered_reply = Reply("Registered as a guest; a confirmation email is queued",
                             REGISTERED)

    def error_schema(self, status):
        return MESSAGE

    def field_error_schema(self):
        return INVALID

    def field_errors(self, exc: FieldErrors):
        errors: dict[str, list[str]] = {}
        for err in exc.errors:
            wire = self.wire(err.field)
            errors.setdefault(wire, []).append(message(wire, err.code, err.params))
        return self.json({"message": INVALID_DATA, "errors": errors}, 422)

    def malformed(self, exc):
        return self.json({"message": "The request body is not a valid JSON object."}, 400)

    def password_text(self, err):
        return message(err.field, err.code, err.params)  # "The new password must be ..."

    def render_http_error(self, exc, status, text, headers):
        if status == 405 and "Allow" in headers:
            # Laravel lists the route's own methods; OPTIONS is Flask's addition.
            methods = [m for m in headers["Allow"].split(", ") if m != "OPTIONS"]
            text += f" Supported methods: {', '.join(methods)}."
        return self.json({"message": text}, status, headers)

    def registered(self, result):
        user = result.user
        return self.json({
            "first_name": user.first_name,
            "insertion": user.insertion,
            "last_name": user.last_name,
            "email": user.email,
            "postal_code": user.postal_code,
            "role": user.account_type,
        }, 201)


class Token(Text):
    """``token``: the 6-digit code (a string or, as the document says, an integer)
    or the signed link token. Booleans are never numbers here."""

    def __init__(self, **kwargs):
        # Never trimmed: " 123456" and "123456\n" are not codes (SECURITY A5).
        super().__init__(strip=False, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value <= 999_999:
                raise self.make_error("invalid")
            return f"{value:06d}"
        value = super()._deserialize(value, attr, data, **kwargs)
        if not value.strip():
            raise ValidationError("blank")
        return value

    def openapi(self):
        return {"type": None, "anyOf": [
            {"type": "string", "pattern": CODE_PATTERN,
             "description": "the 6-digit code from the email"},
            {"type": "integer", "minimum": 0, "maximum": 999_999,
             "description": "the code as a number (leading zeros dropped)"},
            {"type": "string", "pattern": NOT_BLANK, "maxLength": self.max_length,
             "description": "the signed token from the emailed link"}]}


class ValidationSchema(ProfileSchema):
    email = Email(required=True, max_length=MAX)
    token = Token(required=True, max_length=512)


profile = LaravelProfile()
# Registers a guest user (seed 002).
bp = blueprint(profile, __name__, register="/users/register")
validation_schema = ValidationSchema()


@route(bp, "/users/validation", limits.CONFIRMATION, endpoint="validation",
       body=validation_schema, responses={
           201: Reply("Confirmed", said("Validated")),
           401: Reply("Wrong code, or an invalid or expired token", said(TOKEN_INCORRECT)),
           409: Reply("The address is already confirmed", said(ALREADY_VALIDATED))})
def validation():
    """Confirm an address with ``{email, token}``; token = emailed code or link token."""
    data = profile.read(validation_schema)
    email, token = data["email"], data["token"]
    try:
        confirmation.confirm(token, email=email)
    except AlreadyConfirmed:
        return profile.json({"message": ALREADY_VALIDATED}, 409)
    except (CodeMismatch, TooManyAttempts, TokenInvalid, TokenExpired):
        # A used-up code answers exactly like a wrong code for an unknown address,
        # so it never tells that the address is registered (the link still works).
        return profile.json({"message": TOKEN_INCORRECT}, 401)
    return profile.json({"message": "Validated"}, 201)


PROFILE = ProfileSpec(profile, bp, prefixes=("/api/users/register", "/api/users/validation"))
