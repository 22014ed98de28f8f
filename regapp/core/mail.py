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


def page_link(path: str, **params) -> str:
    """A link to one of regapp's pages under ``FRONTEND_URL``."""
    # An empty query ("https://app.example/base/?") would swallow the path.
    base = current_app.config["FRONTEND_URL"].rstrip("/?")
    return f"{base}/{path}/?{urlencode(params)}"


def queue_confirmation(user, token: str, code: str) -> None:
    """Render the confirmation email and add it to the outbox in the current transaction.

    It carries the link, the code and a "this wasn't me" link that frees the address.
    """
    from .tokens import make_cancel_token  # noqa: PLC0415 - tokens needs an app

    _queue("confirm", user, "confirm",
           link=confirmation_link(token), code=code,
           cancel_link=page_link("cancel-registration", token=make_cancel_token(user)),
           valid_for=_duration(current_app.config["CONFIRM_TOKEN_MAX_AGE"]))


def queue_reset(user, template: str, token: str, code: str | None, *, kind: str) -> None:
    """A reset-family message (reset, duplicate sign-up, set password, password
    changed): the reset link, and the code when there is one."""
    _queue(template, user, kind, link=page_link("reset-password", token=token), code=code,
           valid_for=_duration(current_app.config["PASSWORD_RESET_MAX_AGE"]))


def _queue(template: str, user, kind: str, **context) -> None:
    # No free text from any request reaches a message (SECURITY.md): only the
    # address, links and codes regapp made itself.
    outbox.enqueue(
        to=user.email,
        subject=render_template(f"email/{template}/subject.txt", **context).strip(),
        body_text=render_template(f"email/{template}/body.txt", **context),
        body_html=render_template(f"email/{template}/body.html", **context),
        kind=kind,
    )


def _duration(seconds: int) -> str:
    """``86400`` -> ``24 hours``, ``600`` -> ``10 minutes`` (the email's wording)."""
    size, unit = next((size, unit) for size, unit in ((3600, "hour"), (60, "minute"), (1, "second"))
                      if seconds % size == 0)
    count = seconds // size
    return f"{count} {unit}{'' if count == 1 else 's'}"
