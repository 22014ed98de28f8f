"""Normalised lookup keys and email syntax checks."""

from __future__ import annotations

import re
import unicodedata

from email_validator import EmailNotValidError
from email_validator import EmailUndeliverableError
from email_validator import validate_email

from .errors import FieldError
from .errors import FieldErrors

USERNAME_MAX_LENGTH = 150
EMAIL_MAX_LENGTH = 254
# Django's UnicodeUsernameValidator: letters, digits and @/./+/-/_ only, so no
# controls, format or bidi characters, whitespace or markup in any username.
USERNAME_RE = re.compile(r"[\w.@+-]+\Z")
DNS_TIMEOUT_SECONDS = 3


def username_key(username: str) -> str:
    """The unique key of a username: NFKC, then casefold, then NFKC again."""
    folded = unicodedata.normalize("NFKC", username).casefold()
    return unicodedata.normalize("NFKC", folded)


def check_username(username: str) -> str:
    """Validate a username for every path that sets one; return its unique key.

    The length is checked before normalising (NFKC can multiply it by 18) and
    again after. :raises FieldErrors: ``max_length`` or ``invalid_chars``.
    """
    too_long = FieldErrors([FieldError("username", "max_length",
                                       {"max_length": USERNAME_MAX_LENGTH})])
    if len(username) > USERNAME_MAX_LENGTH:
        raise too_long
    if not USERNAME_RE.match(username):
        raise FieldErrors([FieldError("username", "invalid_chars")])
    key = username_key(username)
    if len(key) > USERNAME_MAX_LENGTH:
        raise too_long
    return key


def email_key(email: str) -> str:
    """The unique key of an address: NFKC + casefold of the whole address.

    Case-mapping collisions (Kelvin sign, long s, dotless i...) fold onto the
    same key, so they can never make a second account for the same mailbox.
    """
    return username_key(email)


def normalize_email(email: str, *, check_deliverability: bool = False, resolver=None):
    """Return the address as it will be stored; raise ``FieldErrors`` for ``email``.

    Only ASCII addresses are accepted: SMTP without SMTPUTF8 can't deliver
    anything else, and a message that can't be sent must not be accepted.
    """
    if len(email) > EMAIL_MAX_LENGTH:
        raise FieldErrors(
            [FieldError("email", "max_length", {"max_length": EMAIL_MAX_LENGTH})]
        )
    kwargs = {"check_deliverability": check_deliverability}
    if resolver is not None:
        kwargs["dns_resolver"] = resolver
    elif check_deliverability:
        # Bounded wait: a slow DNS server must not hold a worker for 15 s.
        kwargs["timeout"] = DNS_TIMEOUT_SECONDS
    try:
        info = validate_email(email, allow_smtputf8=False, **kwargs)
    except EmailUndeliverableError:
        raise FieldErrors([FieldError("email", "undeliverable")]) from None
    except EmailNotValidError:
        raise FieldErrors([FieldError("email", "invalid")]) from None
    return info.ascii_email or info.normalized
