"""The optional breached-password check: a k-anonymity range query.

``PASSWORD_BREACH_CHECK_URL`` names a service with the Have I Been Pwned range
API's shape: ``GET {url}/{first five hex digits of the SHA-1}`` answers lines of
``SUFFIX:COUNT``. Only those five digits leave the service, and the request asks
for padding (``Add-Padding: true``) so the answer's size says nothing either;
padding lines have a count of 0. Empty URL (the default): no check. A service
that is slow (2 s), down or answers garbage never blocks a sign-up: the check
fails open and logs a warning.
"""

from __future__ import annotations

import hashlib
import logging
import re
import urllib.error
import urllib.request

from flask import current_app

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 2
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
LINE_RE = re.compile(r"([0-9A-Fa-f]{35}):([0-9]+)")


def is_breached(password: str) -> bool:
    """True when the configured range service lists ``password`` with a count > 0."""
    base = current_app.config.get("PASSWORD_BREACH_CHECK_URL") or ""
    if not base:
        return False
    digest = hashlib.sha1(password.encode("utf-8", "surrogatepass")).hexdigest().upper()
    prefix, suffix = digest[:5], digest[5:]
    request = urllib.request.Request(
        f"{base.rstrip('/')}/{prefix}",
        headers={"Add-Padding": "true", "User-Agent": "regapp"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - operator-set URL
            body = response.read(MAX_RESPONSE_BYTES).decode("ascii")
    except (OSError, ValueError, urllib.error.URLError) as exc:
        log.warning("breached-password check skipped: %s", type(exc).__name__)
        return False
    counts = {}
    for line in filter(None, (line.strip() for line in body.splitlines())):
        match = LINE_RE.fullmatch(line)
        if match is None:  # not a range answer at all: nothing was checked
            log.warning("breached-password check skipped: malformed answer")
            return False
        counts[match.group(1).upper()] = int(match.group(2))
    return counts.get(suffix, 0) > 0  # padding lines have a count of 0
