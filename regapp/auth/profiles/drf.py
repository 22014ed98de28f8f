"""The `drf` profile (seed 000): Django REST framework bodies and Django's messages."""

from __future__ import annotations

from flask import request

from ...core import confirmation
from ...core import registration
from ...core.errors import AlreadyConfirmed
from ...core.errors import FieldErrors
from ...core.errors import TokenExpired
from ...core.errors import TokenInvalid
from ...core.passwords import DjangoPolicy
from .. import limits
from ..payload import single
from .base import ProfileSchema
from .base import ProfileSpec
from .base import Reply
from .base import Text
from .base import blueprint
from .base import route
from .django_rules import FIELD_ERRORS
from .django_rules import FIELD_MESSAGES
from .django_rules import PASSWORD_MESSAGES
from .django_rules import DetailProfile
from .django_rules import UserSchema
from .django_rules import password_message

TOKEN_MESSAGES = {
    "token_invalid": "Invalid or expired token.",
    "token_expired": "Invalid or expired token.",
    "already_confirmed": "Email is already confirmed.",
}


# The seed's user representation (user_body), for the OpenAPI document.
USER = {"type": "object", "required": ["id", "username", "email", "is_email_confirmed"],
        "properties": {"id": {"type": "integer"}, "username": {"type": "string"},
                       "email": {"type": "string"}, "is_email_confirmed": {"type": "boolean"}}}


class DrfProfile(DetailProfile):
    name = "drf"
    schema = UserSchema()
    # The seed's model names its fields "login" and "email" ("user with this
    # login already exists."); Django's similarity message uses the same names.
    verbose_names = {"username": "login", "email": "email"}
    policy = DjangoPolicy(verbose_names=verbose_names)
    registered_reply = Reply("Registered; a confirmation email is queued", USER)

    def load(self, payload, schema=None):
        """DRF runs the unique validators with the field checks, so a taken
        username is reported together with, say, a blank password."""
        payload = self.coerce(payload, schema or self.schema)
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
        """Django's field messages; password-policy failures under ``"error"``."""
        passwords = [err for err in exc.errors if err.code in PASSWORD_MESSAGES]
        body = self.field_body([err for err in exc.errors if err not in passwords])
        if passwords:
            body["error"] = [password_message(err.code, err.params) for err in passwords]
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


class ConfirmQuery(ProfileSchema):
    token_id = Text(required=True)


profile = DrfProfile()
bp = blueprint(profile, __name__, register="/register/")


@route(bp, "/confirm-email/", limits.CONFIRMATION, methods=("GET",), endpoint="confirm_email",
       query=ConfirmQuery(), responses={
           200: Reply("Confirmed", USER),
           400: Reply("token_id missing, repeated, invalid, expired or already used",
                      FIELD_ERRORS)})
def confirm_email():
    """Confirm an address with the emailed token (``token_id``)."""
    if request.method == "HEAD":  # a HEAD (link scanner) never changes state
        return profile.json({}, 200)
    token = single(request.args, "token_id")
    if token is None:  # repeated: refused like a repeated body field (payload.py)
        return profile.json({"token_id": [FIELD_MESSAGES["invalid"]]}, 400)
    if not token.strip():
        return profile.json({"token_id": [FIELD_MESSAGES["required"]]}, 400)
    try:
        user = confirmation.confirm(token)
    except (TokenInvalid, TokenExpired, AlreadyConfirmed) as exc:
        return profile.json({"token_id": [TOKEN_MESSAGES[exc.code]]}, 400)
    return profile.json(user_body(user), 200)


PROFILE = ProfileSpec(profile, bp, prefixes=("/api/register", "/api/confirm-email"))
