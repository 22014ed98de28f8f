"""The `jwt` profile (seed 004): simplejwt's token pair and DRF's error bodies.

Routes: ``POST /api/sign-up/`` (the document), and simplejwt's
``POST /api/token/`` (obtain a pair, plus a ``device_token``). ``POST
/api/token/refresh/`` is a shared route (common.py): it exists whatever
``REGAPP_PROFILES`` says.

"Missing required fields." answers a body that has none of ``username``,
``email`` and ``password``; a body with some of them gets DRF's per-field
"This field is required." instead. That is the only reading under which both
of the document's 400 examples happen.
"""

from __future__ import annotations

from marshmallow import ValidationError

from ...core import jwt_tokens
from ...core import login
from ...core import registration
from ...core.errors import FieldErrors
from ...core.errors import InvalidCredentials
from ...core.passwords import DjangoPolicy
from .. import limits
from ..payload import read_payload
from .base import Password
from .base import ProfileSchema
from .base import ProfileSpec
from .base import Reply
from .base import Text
from .base import _field_errors
from .base import account
from .base import blueprint
from .base import route
from .django_rules import DETAIL
from .django_rules import FIELD_ERRORS
from .django_rules import PASSWORD_MESSAGES
from .django_rules import DetailProfile
from .django_rules import UserSchema
from .django_rules import password_message

REQUIRED = ("username", "email", "password")
# DRF lists errors in serializer field order.
FIELD_ORDER = ("username", "email", "password", "first_name", "last_name", "phone", "refresh")
MISSING_FIELDS = {"error": "Missing required fields."}
USERNAME_TAKEN = "A user with that username already exists."  # Django's AbstractUser
NO_ACCOUNT = {"detail": "No active account found with the given credentials"}
TOKEN_NOT_VALID = {"detail": "Token is invalid or expired", "code": "token_not_valid"}
# simplejwt's token views send this with their 401s.
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="api"'}


# simplejwt's bodies, for the OpenAPI document.
PAIR = {"type": "object", "required": ["refresh", "access"],
        "properties": {"refresh": {"type": "string"}, "access": {"type": "string"}}}
LOGGED_IN = {"type": "object", "required": ["refresh", "access", "device_token"],
             "properties": {**PAIR["properties"], "device_token": {"type": "string"}}}
SIGNED_UP = {"type": "object", "required": ["refresh", "access", "user"], "properties": {
    **PAIR["properties"],
    "user": {"type": "object",
             "required": ["id", "username", "email", "first_name", "last_name",
                          "number_phone", "avatar"],
             "properties": {"id": {"type": "integer"}, "username": {"type": "string"},
                            "email": {"type": "string"}, "first_name": {"type": "string"},
                            "last_name": {"type": "string"},
                            "number_phone": {"type": ["string", "null"]},
                            "avatar": {"type": "null"}}}}}
TOKEN_REFUSED = {"type": "object", "required": ["detail", "code"],
                 "properties": {"detail": {"type": "string"}, "code": {"const": "token_not_valid"}}}


class SignUpSchema(UserSchema):
    first_name = Text(blank=True, max_length=150, load_default="")
    last_name = Text(blank=True, max_length=150, load_default="")
    phone = Text(data_key="number_phone", blank=True, max_length=10, allow_none=True,
                 load_default=None)


class ObtainSchema(ProfileSchema):
    username = Text(required=True)
    password = Password(required=True)
    device_token = Text(blank=True, load_default=None)


class MissingFields(FieldErrors):
    """None of the required fields was sent (the seed's KeyError answer)."""


class JwtProfile(DetailProfile):
    name = "jwt"
    schema = SignUpSchema()
    wire_names = {"phone": "number_phone"}
    # Seed 004's model: "user with this email already exists.", and the
    # similarity message names the field the same way.
    verbose_names = {"username": "username", "email": "email"}
    policy = DjangoPolicy(verbose_names=verbose_names)
    registered_reply = Reply("Registered, with a token pair; a confirmation email is queued",
                             SIGNED_UP)

    def field_error_schema(self):
        return {"anyOf": [FIELD_ERRORS, {
            "type": "object", "required": ["error"], "additionalProperties": False,
            "properties": {"error": {"const": MISSING_FIELDS["error"]}}}]}

    def load(self, payload, schema=None):
        """Shape-check; for sign-up also report duplicates with shape errors, as DRF does."""
        schema = schema or self.schema
        if schema is self.schema and not any(name in payload for name in REQUIRED):
            raise MissingFields([])
        try:
            return schema.load(self.coerce(payload, schema))
        except ValidationError as exc:
            errors = _field_errors(schema, exc.messages)
            if schema is self.schema:
                errors += registration.taken(exc.valid_data)
            raise FieldErrors(errors) from None

    def field_errors(self, exc: FieldErrors):
        if isinstance(exc, MissingFields):
            return self.json(MISSING_FIELDS, 400)
        return self.json(self.field_body(sorted(exc.errors, key=lambda e: _position(e.field))),
                         400)

    def message(self, err) -> str:
        if err.code in PASSWORD_MESSAGES:
            return password_message(err.code, err.params)
        if err.field == "username" and err.code == "unique":
            return USERNAME_TAKEN
        return super().message(err)

    def registering(self, user):
        # The pair's refresh family is written in the sign-up's own transaction.
        return jwt_tokens.start_pair(user)

    def registered(self, result):
        user = result.user
        refresh, access = result.extra
        body = {
            "refresh": refresh,
            "access": access,
            "user": {**account(user), "number_phone": user.phone, "avatar": None},
        }
        return self.json(body, 201)


def _position(field: str) -> int:
    return FIELD_ORDER.index(field) if field in FIELD_ORDER else len(FIELD_ORDER)


def identifier_aliased(payload: dict) -> dict:
    """simplejwt's obtain view takes ``username``; accept ``email`` too (username wins)."""
    if "username" not in payload and "email" in payload:
        return {**payload, "username": payload["email"]}
    return payload


profile = JwtProfile()
# Sign-up returns a refresh/access pair with the user (seed 004).
bp = blueprint(profile, __name__, register="/sign-up/", endpoint="sign_up")
obtain_schema = ObtainSchema()


@route(bp, "/token/", limits.TOKEN, endpoint="token_obtain_pair", body=obtain_schema,
       aliases={"username": "email"}, responses={
           200: Reply("A new token pair and the device token", LOGGED_IN),
           401: Reply("No active account with these credentials", DETAIL,
                      headers=("WWW-Authenticate",))})
def token_obtain_pair():
    """simplejwt's TokenObtainPairView: username (or email) and password; the answer
    adds a ``device_token`` (send it back on later logins, see core/throttle.py)."""
    data = profile.load(identifier_aliased(read_payload()), obtain_schema)
    try:
        user = login.authenticate(data["username"], data["password"], data["device_token"])
    except InvalidCredentials:
        return profile.json(NO_ACCOUNT, 401, CHALLENGE)
    refresh, access = jwt_tokens.issue_pair(user)
    return profile.json({"refresh": refresh, "access": access,
                         "device_token": login.device_token(user)}, 200)


PROFILE = ProfileSpec(profile, bp, prefixes=("/api/sign-up", "/api/token"))
