"""Build the confirmation message from its templates and queue it."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import current_app
from flask import render_template

from . import outbox


def confirmation_link(token: str) -> str:
    """The emailed link; its base is configuration, never the request's Host."""
    # An empty query ("https://app.example/base/?") would swallow the path.
    base = current_app.config["FRONTEND_URL"].rstrip("/?")
    return f"{base}/confirm-email/?{urlencode({'token_id': token})}"


def queue_confirmation(user, token: str, code: str) -> None:
    """Render the confirmation email and add it to the outbox in the current transaction."""
    context = {
        "user": user,
        "link": confirmation_link(token),
        "code": code,
        "valid_for": _duration(current_app.config["CONFIRM_TOKEN_MAX_AGE"]),
    }
    outbox.enqueue(
        to=user.email,
        subject=render_template("email/confirm/subject.txt", **context).strip(),
        body_text=render_template("email/confirm/body.txt", **context),
        body_html=render_template("email/confirm/body.html", **context),
    )


def _duration(seconds: int) -> str:
    """``86400`` -> ``24 hours``, ``600`` -> ``10 minutes`` (the email's wording)."""
    size, unit = next((size, unit) for size, unit in ((3600, "hour"), (60, "minute"), (1, "second"))
                      if seconds % size == 0)
    count = seconds // size
    return f"{count} {unit}{'' if count == 1 else 's'}"
