"""The `drf` profile (seed 000): Django REST framework bodies and Django's messages."""

from __future__ import annotations


from flask import Blueprint
from flask import request
from marshmallow import ValidationError

from ...core import confirmation
from ...core import registration
from ...core.errors import AlreadyConfirmed
from ...core.errors import FieldErrors
from ...core.errors import TokenExpired
from ...core.errors import TokenInvalid
from ...core.identity import USERNAME_RE
from ...core.passwords import DjangoPolicy
from ..payload import MalformedBody
from .base import Email
from .base import Profile
from .base import ProfileSchema
from .base import Text
from .base import http_headers
from .base import register_errors

# Django's field messages, keyed by code.
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
TOKEN_MESSAGES = {
    "token_invalid": "Invalid or expired token.",
    "token_expired": "Invalid or expired token.",
    "already_confirmed": "Email is already confirmed.",
}


def username_chars(value):
    """Django's UnicodeUsernameValidator: letters, digits and @/./+/-/_ only."""
    if not USERNAME_RE.match(value):  # the core checks again, for every path
        raise ValidationError("invalid_chars")


def field_message(field: str, code: str, params: dict, verbose_names: dict) -> str:
    """Django's text for one field error."""
    template = FIELD_MESSAGES.get(f"{field}.{code}") or FIELD_MESSAGES.get(code)
    if template is None:
        template = FIELD_MESSAGES["invalid"]
    return template.format(verbose_name=verbose_names.get(field, field), **params)


class DetailProfile(Profile):
    """DRF's non-field errors: ``{"detail": "..."}``, used by drf, jwt and shared routes."""

    def http_error(self, exc):
        status = exc.code or 500
        if isinstance(exc, MalformedBody):
            if exc.code_name == "not_an_object":
                body = {"non_field_errors": [
                    f"Invalid data. Expected a dictionary, but got {exc.got}."]}
            else:
                body = {"detail": f"JSON parse error - {exc.detail}"}
            return self.json(body, 400)
        headers = http_headers(exc)
        template = DETAIL_MESSAGES.get(status, "Request failed.")
        detail = template.format(
            method=request.method, mimetype=request.mimetype,
            retry_after=headers.get("Retry-After", "a few"),
        )
        return self.json({"detail": detail}, status, headers)


class RegisterSchema(ProfileSchema):
    username = Text(required=True, max_length=150, validate=username_chars)
    email = Email(required=True)
    password = Text(required=True, strip=False, max_length=1024)


class DrfProfile(DetailProfile):
    name = "drf"
    schema = RegisterSchema()
    # The seed's model names its fields "login" and "email" ("user with this
    # login already exists."); Django's similarity message uses the same names.
    verbose_names = {"username": "login", "email": "email"}
    policy = DjangoPolicy(verbose_names=verbose_names)

    def load(self, payload, schema=None):
        """DRF runs the unique validators with the field checks, so a taken
        username is reported together with, say, a blank password."""
        try:
            return super().load(payload, schema)
        except FieldErrors as exc:
            if schema is not None:
                raise
            failed = {err.field for err in exc.errors}
            clean = {name: payload[name].strip() for name in ("username", "email")
                     if name not in failed and isinstance(payload.get(name), str)}
            errors = exc.errors + registration.taken(clean)
            order = list(self.schema.fields)
            errors.sort(key=lambda e: order.index(e.field) if e.field in order else len(order))
            raise FieldErrors(errors) from None

    def field_errors(self, exc: FieldErrors):
        body: dict[str, list[str]] = {}
        passwords = []
        for err in exc.errors:
            if err.code in PASSWORD_MESSAGES:
                passwords.append(PASSWORD_MESSAGES[err.code].format(**err.params))
            else:
                body.setdefault(self.wire(err.field), []).append(
                    field_message(err.field, err.code, err.params, self.verbose_names))
        if passwords:
            body["error"] = passwords
        return self.json(body, 400)

    def registered(self, result):
        return self.json(user_body(result.user), 201)


def user_body(user) -> dict:
    """The seed's user representation, in the seed's key order."""
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "is_email_confirmed": bool(user.is_email_confirmed),
    }


profile = DrfProfile()
bp = Blueprint("drf", __name__)
register_errors(bp, profile)


@bp.post("/register/", endpoint="register")
def register():
    """Register a user (seed 000)."""
    return profile.register_view()


# The token travels in the URL: keep it out of caches and Referer headers.
NO_LEAK_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@bp.get("/confirm-email/", endpoint="confirm_email")
def confirm_email():
    """Confirm an address with the emailed token (``token_id``)."""
    if request.method == "HEAD":  # a HEAD (link scanner) never changes state
        return profile.json({}, 200, NO_LEAK_HEADERS)
    # A repeated parameter is a list, refused like a repeated body field (payload.py).
    values = request.args.getlist("token_id")
    if len(values) > 1:
        return profile.json({"token_id": [FIELD_MESSAGES["invalid"]]}, 400, NO_LEAK_HEADERS)
    token = values[0] if values else ""
    if not token.strip():
        return profile.json({"token_id": [FIELD_MESSAGES["required"]]}, 400, NO_LEAK_HEADERS)
    try:
        user = confirmation.confirm(token)
    except (TokenInvalid, TokenExpired, AlreadyConfirmed) as exc:
        return profile.json({"token_id": [TOKEN_MESSAGES[exc.code]]}, 400, NO_LEAK_HEADERS)
    return profile.json(user_body(user), 200, NO_LEAK_HEADERS)
