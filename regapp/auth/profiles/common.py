"""Routes shared by every profile, in DRF's ``{"detail"}`` format."""

from __future__ import annotations

from ...core import confirmation
from .. import limits
from ..credentials import CHALLENGE
from ..credentials import Unauthenticated
from ..credentials import current_user
from .base import Email
from .base import ProfileSchema
from .base import ProfileSpec
from .base import Reply
from .base import account
from .base import blueprint
from .base import route
from .django_rules import DETAIL
from .django_rules import DetailProfile

RESEND_ACCEPTED = ("If this address is registered and not yet confirmed, "
                   "a new confirmation email is on its way.")


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


class CommonProfile(DetailProfile):
    name = "common"


class ResendSchema(ProfileSchema):
    email = Email(required=True)


profile = CommonProfile()
bp = blueprint(profile, __name__)
resend_schema = ResendSchema()


@route(bp, "/resend-confirmation/", limits.RESEND, endpoint="resend_confirmation",
       body=resend_schema, responses={202: Reply(
           "Accepted; the same answer whether or not the address exists", DETAIL)})
def resend_confirmation():
    """Queue a new confirmation email; the answer never says whether the address exists."""
    data = profile.read(resend_schema)
    confirmation.resend_confirmation(data["email"])
    return profile.json({"detail": RESEND_ACCEPTED}, 202)


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
