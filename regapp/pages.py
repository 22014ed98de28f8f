"""The browser page behind the emailed link: GET shows a button, only POST confirms."""

from __future__ import annotations

from flask import Blueprint
from flask import render_template
from flask import request

from .auth import limits
from .auth.payload import single
from .core import confirmation
from .core.errors import AlreadyConfirmed
from .core.errors import FieldErrors
from .core.errors import TokenExpired
from .core.errors import TokenInvalid
from .core.identity import normalize_email

bp = Blueprint("pages", __name__)


@bp.after_request
def no_leaks(response):
    """The token is in the URL: no caching, nothing from elsewhere (Referrer-Policy
    and nosniff are set app-wide, regapp/http.py)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return response


@bp.get("/confirm-email/")
def confirm_page():
    """Show the confirm button; a GET (or a mail scanner's prefetch) changes nothing."""
    token = single(request.args, "token_id") or ""
    state = "ready"
    try:
        user = confirmation.user_for_token(token)
        if user.is_email_confirmed:
            state = "already"
    except TokenExpired:
        state = "expired"
    except TokenInvalid:
        state = "invalid"
    return render_template("pages/confirm_email.html", state=state, token=token), (
        200 if state in ("ready", "already") else 400)


@bp.post("/confirm-email/")
@limits.declare(limits.CONFIRMATION)
def confirm_submit():
    """Confirm the address and say what happened."""
    token = single(request.form, "token_id") or ""
    try:
        confirmation.confirm(token)
        state, status = "confirmed", 200
    except AlreadyConfirmed:
        state, status = "already", 200
    except TokenExpired:
        state, status = "expired", 400
    except TokenInvalid:
        state, status = "invalid", 400
    return render_template("pages/confirm_email.html", state=state, token=""), status


@bp.post("/confirm-email/resend")
@limits.declare(limits.RESEND)
def resend():
    """The resend form shown beside a bad or expired link."""
    email = (single(request.form, "email") or "").strip()  # trimmed, as the API's field
    try:
        email = normalize_email(email)
    except FieldErrors:
        return render_template("pages/confirm_email.html", state="bad_email", token=""), 400
    confirmation.resend_confirmation(email)
    return render_template("pages/confirm_email.html", state="resent", token=""), 202
