"""Routes shared by every profile, in DRF's ``{"detail"}`` format."""

from __future__ import annotations

from flask import Blueprint

from ...core import accounts
from ..payload import read_payload
from .base import Email
from .base import ProfileSchema
from .base import register_errors
from .drf import DetailProfile
from .drf import field_message

RESEND_ACCEPTED = ("If this address is registered and not yet confirmed, "
                   "a new confirmation email is on its way.")


class CommonProfile(DetailProfile):
    name = "common"

    def field_errors(self, exc):
        body: dict[str, list[str]] = {}
        for err in exc.errors:
            body.setdefault(err.field, []).append(
                field_message(err.field, err.code, err.params, {}))
        return self.json(body, 400)


class ResendSchema(ProfileSchema):
    email = Email(required=True)


profile = CommonProfile()
bp = Blueprint("common", __name__)
register_errors(bp, profile)
resend_schema = ResendSchema()


@bp.post("/resend-confirmation/", endpoint="resend_confirmation")
def resend_confirmation():
    """Queue a new confirmation email; the answer never says whether the address exists."""
    data = profile.load(read_payload(), resend_schema)
    accounts.resend_confirmation(data["email"])
    return profile.json({"detail": RESEND_ACCEPTED}, 202)
