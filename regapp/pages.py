"""The browser page behind the emailed link: GET shows a button, only POST confirms.

Without a link the page takes the address and the emailed 6-digit code (a form
whose POST confirms through the core), so the code in the email is usable whatever
profiles are enabled.
"""

from __future__ import annotations

from flask import Blueprint
from flask import render_template
from flask import request

from .auth import limits
from .auth.payload import single
from .core import confirmation
from .core import tokens
from .core.errors import AlreadyConfirmed
from .core.errors import CodeMismatch
from .core.errors import FieldErrors
from .core.errors import TokenExpired
from .core.errors import TokenInvalid
from .core.errors import TooManyAttempts
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
    """Show the confirm button (or, without a link, the address and code form); a GET
    (or a mail scanner's prefetch) changes nothing."""
    if "token_id" not in request.args:
        return render_template("pages/confirm_email.html", state="code", token="")
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
    """Confirm the address (by the link's token, or by address and code) and say
    what happened."""
    if "token_id" not in request.form and ("code" in request.form or "email" in request.form):
        return _confirm_code()
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


def _confirm_code():
    email = (single(request.form, "email") or "").strip()
    code = (single(request.form, "code") or "").strip().replace(" ", "")
    if not email or not tokens.is_code(code):
        return _page("code_wrong", 400, email)
    try:
        confirmation.confirm(code, email=email)
        return _page("confirmed", 200)
    except AlreadyConfirmed:
        return _page("already", 200)
    except CodeMismatch:
        return _page("code_wrong", 400, email)
    except TooManyAttempts:
        return _page("code_dead", 400)
    except (TokenExpired, TokenInvalid):
        return _page("code_expired", 400)


def _page(state: str, status: int, email: str = ""):
    return render_template("pages/confirm_email.html", state=state, token="",
                           email=email), status


@bp.post("/confirm-email/resend")
@limits.declare(limits.RESEND)
def resend():
    """The resend form shown beside a bad or expired link."""
    email = single(request.form, "email") or ""
    try:
        email = normalize_email(email)
    except FieldErrors:
        return render_template("pages/confirm_email.html", state="bad_email", token=""), 400
    confirmation.resend_confirmation(email)
    return render_template("pages/confirm_email.html", state="resent", token=""), 202
