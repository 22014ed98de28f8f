"""Build the confirmation message from its templates and queue it."""

from __future__ import annotations

from email.utils import parseaddr
from urllib.parse import urlencode

from flask import current_app

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


def page_url(path: str) -> str:
    """A page of regapp's under ``FRONTEND_URL``, without a query."""
    return f"{current_app.config['FRONTEND_URL'].rstrip('/?')}/{path}/"


def queue_confirmation(user, token: str, code: str) -> None:
    """Render the confirmation email and add it to the outbox in the current transaction.

    It carries the link, the code (with the page that takes it: the confirmation
    page works whichever profiles are enabled) and a "this wasn't me" link that
    frees the address.
    """
    from .tokens import make_cancel_token  # noqa: PLC0415 - tokens needs an app

    _queue("confirm", user, "confirm", **confirm_context(
        link=confirmation_link(token), code=code,
        cancel_link=page_link("cancel-registration", token=make_cancel_token(user))))


def confirm_context(**context) -> dict:
    """The confirmation email's variables besides link, code and cancel link."""
    return {"code_page": page_url("confirm-email"),
            "valid_for": _duration(current_app.config["CONFIRM_TOKEN_MAX_AGE"]), **context}


def branding() -> dict:
    """What every email template may show: product name, support address, logo."""
    cfg = current_app.config
    return {"product_name": cfg.get("MAIL_PRODUCT_NAME") or "regapp",
            # The bare address: it becomes a mailto: link.
            "support_address": parseaddr(cfg.get("MAIL_SUPPORT_ADDRESS") or "")[1],
            "logo_url": cfg.get("MAIL_LOGO_URL") or ""}


def render(template: str, **context) -> tuple[str, str, str]:
    """``(subject, text, html)`` of ``email/<template>/`` with ``context`` and the
    branding."""
    context = {**branding(), **context}
    # Straight from the app's Jinja environment (templates compiled once, cached
    # there): email templates read only their context, not Flask's request globals.
    env = current_app.jinja_env
    subject, text, html = (env.get_template(f"email/{template}/{name}").render(context)
                           for name in ("subject.txt", "body.txt", "body.html"))
    return subject.strip(), text, html


def templates() -> list[str]:
    """The email templates: every folder of ``templates/email/``."""
    loader = current_app.jinja_env.loader
    names = {name.split("/")[1] for name in loader.list_templates()
             if name.startswith("email/") and name.endswith("/subject.txt")}
    return sorted(names)


def sample(template: str) -> tuple[str, str, str]:
    """``template`` rendered with made-up values (``flask mail preview``)."""
    context = {"link": page_link("reset-password" if template != "confirm" else "confirm-email",
                                 token="SAMPLE-TOKEN"),
               "code": "123456",
               "valid_for": _duration(current_app.config["PASSWORD_RESET_MAX_AGE"])}
    if template == "confirm":
        context = confirm_context(link=confirmation_link("SAMPLE-TOKEN"), code="123456",
                                  cancel_link=page_link("cancel-registration",
                                                        token="SAMPLE-TOKEN"))
    return render(template, **context)


def queue_reset(user, template: str, token: str, code: str | None, *, kind: str) -> None:
    """A reset-family message (reset, duplicate sign-up, set password, password
    changed): the reset link, and the code when there is one."""
    _queue(template, user, kind, link=page_link("reset-password", token=token), code=code,
           valid_for=_duration(current_app.config["PASSWORD_RESET_MAX_AGE"]))


def _queue(template: str, user, kind: str, **context) -> None:
    # No free text from any request reaches a message (SECURITY.md): only the
    # address, links and codes regapp made itself.
    subject, text, html = render(template, **context)
    outbox.enqueue(to=user.email, subject=subject, body_text=text, body_html=html, kind=kind)


def _duration(seconds: int) -> str:
    """``86400`` -> ``24 hours``, ``600`` -> ``10 minutes`` (the email's wording)."""
    size, unit = next((size, unit) for size, unit in ((3600, "hour"), (60, "minute"), (1, "second"))
                      if seconds % size == 0)
    count = seconds // size
    return f"{count} {unit}{'' if count == 1 else 's'}"
