"""Extension points: Blinker signals in regapp's own namespace (Flask's mechanism).

Each is sent with the app as sender, after the change is committed, and never
carries a password, token or code::

    from regapp import signals

    @signals.user_registered.connect
    def welcome(app, user, profile, **extra):
        crm.add_contact(user.id, user.email)

- ``user_registered(app, user, profile)``: an account was created (API or CLI);
- ``confirmation_sent(app, user, resend)``: a confirmation email was queued;
- ``email_confirmed(app, user, method)``: an address was confirmed
  (``method``: ``link``, ``code`` or ``operator``);
- ``confirmation_failed(app, reason, method)``: a link or code was refused
  (``reason``: the core's error code, e.g. ``code_mismatch``, ``token_expired``);
- ``password_reset(app, user, method)``: a password was reset (``link`` or ``code``).

Receivers run in the request (keep them quick, or queue work of your own); an
exception in one is logged and never changes the client's answer.
"""

from __future__ import annotations

import logging

from blinker import Namespace
from flask import current_app

log = logging.getLogger(__name__)

regapp_signals = Namespace()

user_registered = regapp_signals.signal("user-registered")
confirmation_sent = regapp_signals.signal("confirmation-sent")
email_confirmed = regapp_signals.signal("email-confirmed")
confirmation_failed = regapp_signals.signal("confirmation-failed")
password_reset = regapp_signals.signal("password-reset")


def send(signal, **kwargs) -> None:
    """Send ``signal`` from the current app; a failing receiver is logged, not raised."""
    if not signal.receivers:
        return
    app = current_app._get_current_object()  # noqa: SLF001 - the documented way
    for receiver in signal.receivers_for(app):
        try:
            receiver(app, **kwargs)
        except Exception:  # noqa: BLE001 - an extension never breaks a sign-up
            log.exception("receiver of %s failed", signal.name)
