"""The `jsonapi` profile (seed 003): JSON:API documents, Rails messages."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import request

from ...core import accounts
from ...core.errors import AlreadyConfirmed
from ...core.errors import TokenExpired
from ...core.errors import TokenInvalid
from ..payload import MalformedBody
from .base import Profile
from .base import http_headers
from .base import register_errors

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


class JsonApiProfile(Profile):
    name = "jsonapi"

    def json(self, body, status, headers=None):
        response = super().json(body, status, headers)
        response.headers["Content-Type"] = MEDIA_TYPE
        return response

    def document(self, errors, status, headers=None):
        return self.json({"errors": errors, "jsonapi": JSONAPI}, status, headers)

    def http_error(self, exc):
        status = exc.code or 500
        title = HTTP_TITLES.get(status, "Error")
        detail = exc.description if status < 500 else title
        if isinstance(exc, MalformedBody):
            detail = ("Request body must be a JSON object"
                      if exc.code_name == "not_an_object" else "Malformed JSON body")
        error = {"status": str(status), "title": title, "detail": detail, "source": {}}
        return self.document([error], status, http_headers(exc))

    def field_errors(self, exc):  # completed by the registration adapter
        errors = [{"title": f"Invalid {e.field}", "detail": e.code, "source": {}}
                  for e in exc.errors]
        return self.document(errors, 422)


profile = JsonApiProfile()
bp = Blueprint("jsonapi", __name__)
register_errors(bp, profile)


@bp.get("/users/verification", endpoint="verification")
def verification():
    """Confirm an address with ``email_token`` (seed 003)."""
    if request.method == "HEAD":  # a HEAD (link scanner) never changes state
        return "", 200
    try:
        accounts.confirm(request.args.get("email_token", ""))
    except AlreadyConfirmed:
        return profile.document([{"user_account": ALREADY_VERIFIED}], 422)
    except (TokenInvalid, TokenExpired):
        return profile.document([{"email_token": INVALID_TOKEN}], 422)
    return Response("", 200, content_type="text/plain; charset=utf-8")
