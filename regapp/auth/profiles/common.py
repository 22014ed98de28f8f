"""Routes shared by every profile, in DRF's ``{"detail"}`` format: resend, login,
refresh, logout, password reset, and the caller's account."""

from __future__ import annotations

from flask import current_app

from ...core import confirmation
from ...core import jwt_tokens
from ...core import login as core_login
from ...core import reset
from ...core import timing
from ...core.errors import CodeMismatch
from ...core.errors import FieldError
from ...core.errors import FieldErrors
from ...core.errors import InvalidCredentials
from ...core.errors import TokenExpired
from ...core.errors import TokenInvalid
from ...core.errors import TooManyAttempts
from ...core.passwords import DjangoPolicy
from ...extensions import db
from .. import limits
from ..credentials import CHALLENGE
from ..credentials import Unauthenticated
from ..credentials import current_user
from .base import CODE_PATTERN
from .base import Email
from .base import Password
from .base import ProfileSchema
from .base import ProfileSpec
from .base import Reply
from .base import Text
from .base import account
from .base import blueprint
from .base import route
from .django_rules import DETAIL
from .django_rules import FIELD_ERRORS
from .django_rules import PASSWORD_MESSAGES
from .django_rules import DetailProfile
from .django_rules import password_message

RESEND_ACCEPTED = ("If this address is registered and not yet confirmed, "
                   "a new confirmation email is on its way.")
RESET_ACCEPTED = "If this address has an account, a password reset email is on its way."
RESET_DONE = {"detail": "Password has been reset with the new password."}
# simplejwt's answers: obtain views, and refresh/blacklist views.
NO_ACCOUNT = {"detail": "No active account found with the given credentials"}
TOKEN_NOT_VALID = {"detail": "Token is invalid or expired", "code": "token_not_valid"}
JWT_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="api"'}
# djoser's reset-confirm wording for a bad link token; codes get the same for all failures.
INVALID_TOKEN = "Invalid token for given user."
INVALID_CODE = "Invalid or expired code."
NEED_IDENTIFIER = 'Must include "email" or "username".'
NEED_SECRET = 'Must include "token", or "email" and "code".'


# The account as /api/users/me shows it (me_body), and its 401 (credentials.py).
ME = {"type": "object",
      "required": ["id", "username", "email", "first_name", "last_name", "account_type",
                   "is_email_confirmed"],
      "properties": {"id": {"type": "integer"}, "username": {"type": ["string", "null"]},
                     "email": {"type": "string"}, "first_name": {"type": "string"},
                     "last_name": {"type": "string"}, "account_type": {"type": "string"},
                     "is_email_confirmed": {"type": "boolean"}}}
UNAUTHENTICATED = {"type": "object", "required": ["detail"],
                   "properties": {"detail": {"type": "string"}, "code": {"type": "string"}}}
# The other bodies of the shared routes, for the OpenAPI document.
LOGGED_IN = {"type": "object", "required": ["refresh", "access", "device_token"],
             "properties": {"refresh": {"type": "string"}, "access": {"type": "string"},
                            "device_token": {"type": "string"}}}
ROTATED = {"type": "object", "required": ["access", "refresh"],
           "properties": {"access": {"type": "string"}, "refresh": {"type": "string"}}}
LOGGED_OUT = {"type": "object", "maxProperties": 0}
TOKEN_REFUSED = {"type": "object", "required": ["detail", "code"],
                 "properties": {"detail": {"const": TOKEN_NOT_VALID["detail"]},
                                "code": {"const": TOKEN_NOT_VALID["code"]}}}
WRONG_CREDENTIALS = {"type": "object", "required": ["detail"],
                     "properties": {"detail": {"const": NO_ACCOUNT["detail"]}}}
RESET_OK = {"type": "object", "required": ["detail"],
            "properties": {"detail": {"const": RESET_DONE["detail"]}}}


class CommonProfile(DetailProfile):
    name = "common"

    def message(self, err) -> str:
        if err.code in PASSWORD_MESSAGES:
            return password_message(err.code, err.params)
        if err.code == "token_invalid":
            return INVALID_TOKEN
        if err.code == "code_invalid":
            return INVALID_CODE
        if err.code == "need_identifier":
            return NEED_IDENTIFIER
        if err.code == "need_secret":
            return NEED_SECRET
        return super().message(err)


class ResendSchema(ProfileSchema):
    email = Email(required=True)


class LoginSchema(ProfileSchema):
    username = Text()
    email = Text(max_length=320)
    password = Text(required=True, strip=False, max_length=4096)
    device_token = Text(blank=True, load_default=None)


class RefreshSchema(ProfileSchema):
    refresh = Text(required=True)


class ResetSchema(ProfileSchema):
    email = Email(required=True)


class ResetConfirmSchema(ProfileSchema):
    token = Text()
    email = Text(max_length=320)
    code = Text(pattern=CODE_PATTERN)
    new_password = Password(required=True, max_length=4096)


profile = CommonProfile()
bp = blueprint(profile, __name__)
resend_schema = ResendSchema()
login_schema = LoginSchema()
refresh_schema = RefreshSchema()
reset_schema = ResetSchema()
reset_confirm_schema = ResetConfirmSchema()


@route(bp, "/resend-confirmation/", limits.RESEND, endpoint="resend_confirmation",
       body=resend_schema, responses={202: Reply(
           "Accepted; the same answer whether or not the address exists", DETAIL)})
def resend_confirmation():
    """Queue a new confirmation email; the answer never says whether the address exists."""
    data = profile.read(resend_schema)
    confirmation.resend_confirmation(data["email"])
    return profile.json({"detail": RESEND_ACCEPTED}, 202)


def identifier_of(data: dict) -> str:
    """``username`` if sent, else ``email`` (its value decides how it is looked up:
    with ``@`` an email only, otherwise a username only)."""
    value = data.get("username") or data.get("email")
    if not value:
        raise FieldErrors([FieldError("non_field_errors", "need_identifier")])
    return value


@route(bp, "/login/", limits.TOKEN, endpoint="login", body=login_schema,
       one_of=(("username",), ("email",)), responses={
           200: Reply("A token pair and the device token", LOGGED_IN),
           401: Reply("No active account with these credentials (also once the account's "
                      "login is throttled and no device token of it was sent)",
                      WRONG_CREDENTIALS, headers=("WWW-Authenticate",))})
def login():
    """Log in with an email or username and the password: the jwt profile's pair and
    a device token (send it back as ``device_token`` on later logins)."""
    data = profile.read(login_schema)
    identifier = identifier_of(data)
    try:
        user = core_login.authenticate(identifier, data["password"], data["device_token"])
    except InvalidCredentials:
        return profile.json(NO_ACCOUNT, 401, JWT_CHALLENGE)
    refresh, access = jwt_tokens.issue_pair(user)
    return profile.json({"refresh": refresh, "access": access,
                         "device_token": core_login.device_token(user)}, 200)


@route(bp, "/token/refresh/", limits.TOKEN, endpoint="token_refresh", body=refresh_schema,
       responses={
           200: Reply("A new pair; the presented refresh token is refused from now on",
                      ROTATED),
           401: Reply("Invalid, expired, revoked or already rotated refresh token",
                      TOKEN_REFUSED, headers=("WWW-Authenticate",))})
def token_refresh():
    """simplejwt's TokenRefreshView with ROTATE_REFRESH_TOKENS: a new pair; the
    presented refresh token is refused from then on (reuse revokes its family)."""
    data = profile.read(refresh_schema)
    try:
        access, refresh = jwt_tokens.rotate(data["refresh"])
    except (TokenInvalid, TokenExpired):
        return profile.json(TOKEN_NOT_VALID, 401, JWT_CHALLENGE)
    return profile.json({"access": access, "refresh": refresh}, 200)


@route(bp, "/logout/", limits.TOKEN, endpoint="logout", body=refresh_schema, responses={
    200: Reply("This login's refresh tokens are revoked", LOGGED_OUT),
    401: Reply("Invalid, expired or revoked refresh token", TOKEN_REFUSED,
               headers=("WWW-Authenticate",))})
def logout():
    """simplejwt's TokenBlacklistView: the refresh token's family (this login) is
    revoked; the account's other logins live on."""
    data = profile.read(refresh_schema)
    try:
        jwt_tokens.revoke(data["refresh"])
    except (TokenInvalid, TokenExpired):
        return profile.json(TOKEN_NOT_VALID, 401, JWT_CHALLENGE)
    return profile.json({}, 200)


@route(bp, "/password-reset/", limits.RESET, endpoint="password_reset", body=reset_schema,
       responses={202: Reply(
           "Accepted; the same answer whether or not the address has an account", DETAIL)})
def password_reset():
    """Mail a reset link and code; the same answer, never sooner than the code
    check's floor, whether or not the address has an account."""
    data = profile.read(reset_schema)
    with timing.floor(current_app.config["CONFIRM_CODE_MIN_SECONDS"]):
        reset.request_reset(data["email"])
        db.session.rollback()  # nothing open while the floor waits
    return profile.json({"detail": RESET_ACCEPTED}, 202)


class AccountPolicy:
    """The password rules, and their words, of the profile an account signed up
    through (Django's for accounts without one: the CLI's, or older than the column).
    Called by the reset core with the account; ``words`` then renders its refusal."""

    def __init__(self):
        self.profile = None

    def __call__(self, user):
        specs = current_app.extensions.get("regapp.profiles") or ()
        self.profile = next((spec.profile for spec in specs if spec.name == user.profile
                             and spec.profile.policy is not None), None)
        return self.profile.policy if self.profile else DjangoPolicy()

    def words(self, exc: FieldErrors) -> dict:
        """DRF's ``{"new_password": [...]}``, each failure in the account's profile's words."""
        wording = self.profile or profile
        return {"new_password": [wording.password_text(err) for err in exc.errors]}


@route(bp, "/password-reset/confirm/", limits.RESET, endpoint="password_reset_confirm",
       body=reset_confirm_schema, one_of=(("token",), ("email", "code")), responses={
           200: Reply("The password is set, the address confirmed", RESET_OK),
           400: Reply("Invalid or expired token or code, or the new password fails the "
                      "account's policy", FIELD_ERRORS)})
def password_reset_confirm():
    """Set a new password with the emailed link's token, or the address and its code."""
    data = profile.read(reset_confirm_schema)
    policy = AccountPolicy()
    if data.get("token"):
        try:
            reset.reset_with_token(data["token"], data["new_password"], policy)
        except (TokenInvalid, TokenExpired):
            raise FieldErrors([FieldError("token", "token_invalid")]) from None
        except FieldErrors as exc:
            return profile.json(policy.words(exc), 400)
        return profile.json(RESET_DONE, 200)
    if not data.get("code"):
        raise FieldErrors([FieldError("non_field_errors", "need_secret")])
    if not data.get("email"):
        raise FieldErrors([FieldError("email", "required")])
    with timing.floor(current_app.config["CONFIRM_CODE_MIN_SECONDS"]) as wait:
        try:
            reset.reset_with_code(data["email"], data["code"], data["new_password"],
                                  policy)
        except (CodeMismatch, TooManyAttempts, TokenExpired):
            # One answer for a wrong, used-up or expired code and an unknown address.
            db.session.rollback()
            raise FieldErrors([FieldError("code", "code_invalid")]) from None
        except FieldErrors as exc:
            db.session.rollback()
            return profile.json(policy.words(exc), 400)
        wait.waive()
    return profile.json(RESET_DONE, 200)


@route(bp, "/users/me", None, methods=("GET",), endpoint="me", auth=True, responses={
    200: Reply("The caller's account", ME),
    401: Reply("Missing, malformed, invalid or expired credentials", UNAUTHENTICATED,
               headers=("WWW-Authenticate",))})
def me():
    """The caller's account, for a Bearer access JWT or an envelope api_token."""
    try:
        user = current_user()
    except Unauthenticated as exc:
        return profile.json(exc.body, 401, {"WWW-Authenticate": CHALLENGE})
    return profile.json(me_body(user), 200)


def me_body(user) -> dict:
    """The account as its owner sees it; no secrets, no hashes."""
    return {**account(user), "account_type": user.account_type,
            "is_email_confirmed": bool(user.is_email_confirmed)}


# Always mounted; routing errors under /api/ that no profile claims are rendered here.
PROFILE = ProfileSpec(profile, bp, shared=True)
