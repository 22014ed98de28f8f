"""Who is calling: ``Authorization: Bearer <access JWT>`` or ``Token <api_token>``.

Messages are DRF's (TokenAuthentication) and simplejwt's (JWTAuthentication),
so clients of either library see the failures they already handle.
"""

from __future__ import annotations

from flask import request

from ..core import jwt_tokens
from ..core import login
from ..core.errors import TokenExpired
from ..core.errors import TokenInvalid
from ..models import User

# Both schemes are accepted, so both are offered (RFC 9110 §11.6.1).
CHALLENGE = 'Bearer realm="api", Token realm="api"'
NOT_PROVIDED = "Authentication credentials were not provided."


class Unauthenticated(Exception):
    """No usable credentials; ``body`` is the 401 answer in DRF's format."""

    def __init__(self, detail: str, code: str | None = None):
        super().__init__(detail)
        self.body = {"detail": detail}
        if code:
            self.body["code"] = code


def current_user() -> User:
    """The account the request's credentials belong to.

    :raises Unauthenticated: missing, malformed, invalid or expired credentials.
    """
    header = request.headers.get("Authorization", "")
    parts = header.split()
    if not parts:
        raise Unauthenticated(NOT_PROVIDED)
    scheme = parts[0].lower()
    if scheme == "bearer":
        return _bearer_user(parts)
    if scheme == "token":
        return _token_user(parts)
    # Another scheme (Basic, ...) is not ours: as if nothing were sent.
    raise Unauthenticated(NOT_PROVIDED)


def _bearer_user(parts: list[str]) -> User:
    if len(parts) != 2:
        raise Unauthenticated("Authorization header must contain two space-delimited values",
                              "bad_authorization_header")
    try:
        return jwt_tokens.user_for(parts[1], jwt_tokens.ACCESS)
    except (TokenInvalid, TokenExpired):
        raise Unauthenticated("Given token not valid for any token type",
                              "token_not_valid") from None


def _token_user(parts: list[str]) -> User:
    if len(parts) == 1:
        raise Unauthenticated("Invalid token header. No credentials provided.")
    if len(parts) > 2:
        raise Unauthenticated("Invalid token header. Token string should not contain spaces.")
    try:
        return login.user_for_api_token(parts[1])
    except TokenInvalid:
        raise Unauthenticated("Invalid token.") from None
