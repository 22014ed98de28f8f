"""Build the confirmation message from its templates and queue it."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import current_app
from flask import render_template

from . import outbox


def confirmation_link(token: str) -> str:
    """The emailed link; its base is configuration, never the request's Host."""
    base = current_app.config["FRONTEND_URL"].rstrip("/")
    return f"{base}/confirm-email/?{urlencode({'token_id': token})}"


def queue_confirmation(user, token: str, code: str) -> None:
    """Render the confirmation email and add it to the outbox in the current transaction."""
    context = {
        "user": user,
        "link": confirmation_link(token),
        "code": code,
        "max_age_hours": current_app.config["CONFIRM_TOKEN_MAX_AGE"] // 3600,
    }
    outbox.enqueue(
        to=user.email,
        subject=render_template("email/confirm/subject.txt", **context).strip(),
        body_text=render_template("email/confirm/body.txt", **context),
        body_html=render_template("email/confirm/body.html", **context),
    )
