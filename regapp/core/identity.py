"""Normalised lookup keys and email syntax checks."""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError
from email_validator import EmailUndeliverableError
from email_validator import validate_email

from .errors import FieldError
from .errors import FieldErrors

USERNAME_MAX_LENGTH = 150
EMAIL_MAX_LENGTH = 254


def username_key(username: str) -> str:
    """The unique key of a username: NFKC, then casefold, then NFKC again."""
    folded = unicodedata.normalize("NFKC", username).casefold()
    return unicodedata.normalize("NFKC", folded)


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
    try:
        info = validate_email(email, allow_smtputf8=False, **kwargs)
    except EmailUndeliverableError:
        raise FieldErrors([FieldError("email", "undeliverable")]) from None
    except EmailNotValidError:
        raise FieldErrors([FieldError("email", "invalid")]) from None
    return info.ascii_email or info.normalized
