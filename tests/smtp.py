"""A real SMTP server for tests: aiosmtpd on a free loopback port."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
import time

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Recorder:
    """aiosmtpd handler that keeps every accepted message; ``reply`` forces an error."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.reply: str | None = None  # e.g. "451 4.3.0 try later"
        self.lock = threading.Lock()
        # Advertise PIPELINING (RFC 2920) as most servers do, so regapp's pipelined
        # conversation is what the suite exercises; False: smtplib's one at a time.
        self.pipelining = True

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server, session, envelope):
        if self.reply:
            return self.reply
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(msg)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


class SMTPServer:
    """Start, stop and restart a recording SMTP server on one port."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.recorder = Recorder()
        self.controller: Controller | None = None

    def start(self):
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self):
        return self.recorder.messages

    def clear(self):
        with self.recorder.lock:
            self.recorder.messages.clear()
            self.recorder.envelopes.clear()
        self.recorder.reply = None

    def wait_for(self, count: int, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages) >= count:
                return self.messages
            time.sleep(0.02)
        raise AssertionError(f"expected {count} messages, got {len(self.messages)}")


LINK_RE = re.compile(r"(https?://\S+/confirm-email/\?token_id=([A-Za-z0-9_.\-]+))")
CODE_RE = re.compile(r"^\s*([0-9]{6})\s*$", re.M)


def text_part(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def html_part(msg) -> str:
    return msg.get_body(preferencelist=("html",)).get_content()


def confirmation(msg) -> tuple[str, str, str]:
    """``(link, token, code)`` from a confirmation email's text part."""
    text = text_part(msg)
    link = LINK_RE.search(text)
    code = CODE_RE.search(text)
    assert link and code, text
    return link.group(1), link.group(2), code.group(1)


def is_confirmation(msg) -> bool:
    """A confirmation email (it carries a confirm-email link)."""
    return LINK_RE.search(text_part(msg)) is not None


# Subjects of the reset-family messages (regapp/templates/email/*/subject.txt).
SUBJECTS = {
    "Confirm your email address": "confirm",
    "Reset your password": "reset",
    "Someone tried to sign up with your address": "duplicate_pending",
    "You already have an account": "duplicate_confirmed",
    "Set your password": "set_password",
    "Your password was changed": "password_changed",
}


def kind(msg) -> str:
    """Which message this is, by its subject."""
    return SUBJECTS.get(str(msg["Subject"]), "other")


RESET_LINK_RE = re.compile(r"(https?://\S+/reset-password/\?token=([A-Za-z0-9_.\-]+))")
CANCEL_LINK_RE = re.compile(r"(https?://\S+/cancel-registration/\?token=([A-Za-z0-9_.\-]+))")


def reset(msg) -> tuple[str, str, str | None]:
    """``(link, token, code)`` from a reset-family email (``code`` None when it has none)."""
    text = text_part(msg)
    link = RESET_LINK_RE.search(text)
    code = CODE_RE.search(text)
    assert link, text
    return link.group(1), link.group(2), code.group(1) if code else None


def cancel_link(msg) -> tuple[str, str]:
    """``(link, token)`` of a confirmation email's "this wasn't me" link."""
    found = CANCEL_LINK_RE.search(text_part(msg))
    assert found, text_part(msg)
    return found.group(1), found.group(2)
