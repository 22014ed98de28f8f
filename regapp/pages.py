"""The browser pages behind the emailed links: GET shows a form, only POST changes
anything. /confirm-email/ confirms by the link's token or, without one, by the
address and the emailed 6-digit code (usable whatever profiles are enabled);
/reset-password/ sets a new password (or, without a token, mails a reset link);
/cancel-registration/ deletes an unconfirmed account ("this wasn't me"). The reset
and cancel forms carry a CSRF token (Flask-WTF's, tied to the session cookie); the
JSON API has none."""

from __future__ import annotations

from flask import Blueprint
from flask import current_app
from flask import render_template
from flask import request
from flask_wtf.csrf import generate_csrf
from flask_wtf.csrf import validate_csrf
from wtforms.validators import ValidationError

from .auth import limits
from .auth.payload import single
from .core import confirmation
from .core import operators
from .core import reset
from .core import timing
from .core import tokens
from .core.errors import AlreadyConfirmed
from .core.errors import CodeMismatch
from .core.errors import FieldErrors
from .core.errors import TokenExpired
from .core.errors import TokenInvalid
from .core.errors import TooManyAttempts
from .core.identity import normalize_email
from .extensions import db

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
    email = (single(request.form, "email") or "").strip()  # trimmed, as the API's field
    try:
        email = normalize_email(email)
    except FieldErrors:
        return render_template("pages/confirm_email.html", state="bad_email", token=""), 400
    confirmation.resend_confirmation(email)
    return render_template("pages/confirm_email.html", state="resent", token=""), 202


# -- password reset ----------------------------------------------------------------------

RESET_PAGE = "pages/reset_password.html"


def _csrf_ok() -> bool:
    try:
        validate_csrf(single(request.form, "csrf_token") or "")
    except ValidationError:
        return False
    return True


def _reset_page(state: str, status: int, token: str = "", errors=()):
    return render_template(RESET_PAGE, state=state, token=token, errors=list(errors),
                           csrf_token=generate_csrf()), status


@bp.get("/reset-password/")
def reset_page():
    """With a live token, the new-password form; without one, the "email me a link" form."""
    token = single(request.args, "token") or ""
    if not token:
        return _reset_page("request", 200)
    try:
        reset.user_for_token(token)
    except TokenExpired:
        return _reset_page("expired", 400)
    except TokenInvalid:
        return _reset_page("invalid", 400)
    return _reset_page("ready", 200, token)


@bp.post("/reset-password/")
@limits.declare(limits.RESET)
def reset_submit():
    """Set the new password (typed twice) with the link's token."""
    if not _csrf_ok():
        return _reset_page("csrf", 400)
    token = single(request.form, "token") or ""
    password = single(request.form, "new_password")
    again = single(request.form, "new_password_again")
    if not isinstance(password, str) or not password.strip():
        # Only whitespace is blank, as in every profile; passwords are never trimmed.
        return _reset_page("ready", 400, token, ["Enter a new password."])
    if password != again:
        return _reset_page("ready", 400, token, ["The two passwords do not match."])
    from .auth.profiles.common import AccountPolicy  # noqa: PLC0415 - the profiles need the app

    policy = AccountPolicy()
    try:
        reset.reset_with_token(token, password, policy)
    except TokenExpired:
        return _reset_page("expired", 400)
    except TokenInvalid:
        return _reset_page("invalid", 400)
    except FieldErrors as exc:
        return _reset_page("ready", 400, token, policy.words(exc)["new_password"])
    return _reset_page("done", 200)


@bp.post("/reset-password/request")
@limits.declare(limits.RESET)
def reset_request():
    """The "email me a reset link" form: the same page whether or not the address exists."""
    if not _csrf_ok():
        return _reset_page("csrf", 400)
    email = single(request.form, "email") or ""
    try:
        email = normalize_email(email)
    except FieldErrors:
        return _reset_page("bad_email", 400)
    with timing.floor(current_app.config["CONFIRM_CODE_MIN_SECONDS"]):
        reset.request_reset(email)
        db.session.rollback()
    return _reset_page("requested", 202)


# -- "this wasn't me" ----------------------------------------------------------------------

CANCEL_PAGE = "pages/cancel_registration.html"


def _cancel_page(state: str, status: int, token: str = ""):
    return render_template(CANCEL_PAGE, state=state, token=token,
                           csrf_token=generate_csrf()), status


@bp.get("/cancel-registration/")
def cancel_page():
    """Show the delete button; a GET (or a mail scanner's prefetch) deletes nothing."""
    token = single(request.args, "token") or ""
    try:
        user = operators.user_for_cancel_token(token)
    except TokenExpired:
        return _cancel_page("expired", 400)
    except TokenInvalid:
        return _cancel_page("invalid", 400)
    if user.is_email_confirmed:
        return _cancel_page("confirmed", 409)
    return _cancel_page("ready", 200, token)


@bp.post("/cancel-registration/")
@limits.declare(limits.CONFIRMATION)
def cancel_submit():
    """Delete the unconfirmed account and its queued mail; the address is free again."""
    if not _csrf_ok():
        return _cancel_page("csrf", 400)
    token = single(request.form, "token") or ""
    try:
        operators.cancel_registration(token)
    except TokenExpired:
        return _cancel_page("expired", 400)
    except TokenInvalid:
        return _cancel_page("invalid", 400)
    except AlreadyConfirmed:
        return _cancel_page("confirmed", 409)
    return _cancel_page("cancelled", 200)
