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


class NormalizedEmail(str):
    """An address as ``normalize_email`` returned it: the core does not normalise it again."""

    __slots__ = ()


def normalize_email(email: str, *, check_deliverability: bool = False,
                    resolver=None) -> NormalizedEmail:
    """Return the address as it will be stored; raise ``FieldErrors`` for ``email``.

    Only ASCII addresses are accepted: SMTP without SMTPUTF8 can't deliver
    anything else, and a message that can't be sent must not be accepted.
    """
    if len(email) > EMAIL_MAX_LENGTH:
        raise FieldErrors(
            [FieldError("email", "max_length", {"max_length": EMAIL_MAX_LENGTH})]
        )
    try:
        info = validate_email(email, allow_smtputf8=False, check_deliverability=False)
    except EmailNotValidError:
        raise FieldErrors([FieldError("email", "invalid")]) from None
    normalized = NormalizedEmail(info.ascii_email or info.normalized)
    if check_deliverability:
        check_deliverable(normalized, resolver=resolver)
    return normalized


def check_deliverable(email: NormalizedEmail, *, resolver=None) -> None:
    """Check in DNS that a normalised address's domain takes mail (MX, else A/AAAA).

    :raises FieldErrors: ``undeliverable`` for ``email``.
    """
    # Lazy: dns.resolver is slow to import and only needed when checking.
    from email_validator.deliverability import validate_email_deliverability  # noqa: PLC0415

    domain = email.rpartition("@")[2]
    # Bounded wait: a slow DNS server must not hold a worker for 15 s.
    timeout = None if resolver is not None else DNS_TIMEOUT_SECONDS
    try:
        validate_email_deliverability(domain, domain, timeout=timeout, dns_resolver=resolver)
    except EmailUndeliverableError:
        raise FieldErrors([FieldError("email", "undeliverable")]) from None
