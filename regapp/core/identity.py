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

# Django 5.2's EmailValidator (django/core/validators.py, BSD-3-Clause), so that no
# profile accepts an address Django refuses: a TLD of 2-63 letters (or punycode),
# no U+3002 ideographic full stop standing in for the dot, no trailing dot.
# Where Django accepts what regapp refuses (quoted local parts, IP literals,
# special-use domains such as localhost and .test), SECURITY.md lists why.
_UL = "\u00a1-\uffff"
_HOSTNAME = rf"[a-z{_UL}0-9](?:[a-z{_UL}0-9-]{{0,61}}[a-z{_UL}0-9])?"
_DOMAIN = rf"(?:\.(?!-)[a-z{_UL}0-9-]{{1,63}}(?<!-))*"
_TLD = rf"\.(?!-)(?:[a-z{_UL}-]{{2,63}}|xn--[a-z0-9]{{1,59}})(?<!-)"
DJANGO_USER_RE = re.compile(
    r"(^[-!#$%&'*+/=?^_`{}|~0-9A-Z]+(\.[-!#$%&'*+/=?^_`{}|~0-9A-Z]+)*\Z"
    r'|^"([\001-\010\013\014\016-\037!#-\[\]-\177]|\\[\001-\011\013\014\016-\177])*"\Z)',
    re.IGNORECASE)
DJANGO_DOMAIN_RE = re.compile(rf"^{_HOSTNAME}{_DOMAIN}{_TLD}\Z", re.IGNORECASE)

# The same rule as an OpenAPI ``pattern`` (ECMA-262 and Python alike: no flags, no
# lookbehind), for clients and fuzzers: an ASCII dot-atom local part (no quoted local
# parts: email-validator refuses them without SMTPUTF8), domain labels of letters
# (any script), digits and inner hyphens, a TLD of 2-63 letters or xn--, never a
# special-use one (email-validator refuses .test, .local, ...), and the whitespace
# around it that is trimmed (exactly Python's str.strip() set, spelled out so that
# every regex dialect agrees). Every address regapp accepts matches it; the few that
# match and are refused fail email-validator's finer checks (lengths, IDNA).
_SPACE = r"[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*"
_ATEXT = r"[-!#$%&'*+/=?^_`{}|~0-9A-Za-z]"
_UNI = r"\u00a1-\ud7ff\ue000-\uffff"  # Django's \u00a1-\uffff; lone surrogates never decode
_LABEL_END = rf"[0-9A-Za-z{_UNI}]"
_TLD_END = rf"[A-Za-z{_UNI}]"
_SPECIAL_USE = (r"(?!(?:[Aa][Rr][Pp][Aa]|[Ii][Nn][Vv][Aa][Ll][Ii][Dd]|[Ll][Oo][Cc][Aa][Ll]"
                r"(?:[Hh][Oo][Ss][Tt])?|[Oo][Nn][Ii][Oo][Nn]|[Tt][Ee][Ss][Tt])" + _SPACE + "$)")
EMAIL_PATTERN = (
    rf"^{_SPACE}{_ATEXT}+(?:\.{_ATEXT}+)*"
    rf"@(?:{_LABEL_END}(?:[-0-9A-Za-z{_UNI}]{{0,61}}{_LABEL_END})?\.)+"
    rf"{_SPECIAL_USE}(?:{_TLD_END}[-A-Za-z{_UNI}]{{0,61}}{_TLD_END}|[Xx][Nn]--[0-9A-Za-z]{{1,59}})"
    rf"{_SPACE}$"
)


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


def django_accepts(email: str) -> bool:
    """Whether Django's ``EmailValidator`` would accept ``email`` (its domain rule
    without IP literals, which regapp refuses anyway)."""
    user, at, domain = email.rpartition("@")
    return bool(at and user and DJANGO_USER_RE.match(user) and DJANGO_DOMAIN_RE.match(domain))


def normalize_email(email: str, *, check_deliverability: bool = False,
                    resolver=None) -> NormalizedEmail:
    """Return the address as it will be stored; raise ``FieldErrors`` for ``email``.

    Only ASCII addresses are accepted: SMTP without SMTPUTF8 can't deliver
    anything else, and a message that can't be sent must not be accepted.
    Nothing that Django's ``EmailValidator`` refuses is accepted either.
    """
    if len(email) > EMAIL_MAX_LENGTH:
        raise FieldErrors(
            [FieldError("email", "max_length", {"max_length": EMAIL_MAX_LENGTH})]
        )
    if not django_accepts(email):
        raise FieldErrors([FieldError("email", "invalid")])
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


def lookup_key(email) -> str | None:
    """The unique key of an address as a person types it, normalised exactly as
    registration stores it (``x@straße.de`` finds ``x@xn--strae-oqa.de``, never
    ``x@strasse.de``); None when it can't be an address at all."""
    if not isinstance(email, str) or not email.strip():
        return None
    try:
        return email_key(normalize_email(email.strip()))
    except FieldErrors:
        return None
