"""Cross-origin access to /api/ for browser apps on other origins (Flask-CORS).

``CORS_ORIGINS`` lists the allowed origins exactly (``scheme://host[:port]``,
comma-separated); empty, the default, sends no ``Access-Control-*`` header at all.
Credentials (cookies, HTTP authentication) are never allowed: the API takes its
credentials from the ``Authorization`` header, which a page sets itself.
Preflights are cached for ``MAX_AGE`` seconds; ``Retry-After`` and ``X-Request-ID``
are readable by the page.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask_cors import CORS

MAX_AGE = 600
EXPOSED_HEADERS = ["Retry-After", "X-Request-ID"]
ALLOWED_HEADERS = ["Authorization", "Content-Type", "X-Request-ID"]
METHODS = ["GET", "HEAD", "POST"]
RESOURCES = r"/api/.*"


def parse_origin(value: str) -> str:
    """``value`` as an exact origin (lower-cased scheme and host), or ValueError."""
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise ValueError
    parts = urlsplit(value)
    port = parts.port  # ValueError on a malformed port
    if (parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc
            or parts.path or parts.query or parts.fragment or value.endswith(("?", "#"))):
        raise ValueError
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def origins(config) -> list[str]:
    """The validated ``CORS_ORIGINS``; a one-line ConfigError naming the variable otherwise."""
    from config import ConfigError  # noqa: PLC0415 - config.py sits beside the package
    from config import shown  # noqa: PLC0415

    out = []
    for value in config.get("CORS_ORIGINS") or []:
        try:
            out.append(parse_origin(value))
        except ValueError:
            raise ConfigError(
                f"CORS_ORIGINS={shown(value)} is not accepted: expected exact origins "
                "scheme://host[:port], comma-separated (http or https, no path, no "
                "trailing slash, no wildcard)") from None
    return out


def init_app(app) -> None:
    """Answer CORS requests to /api/ from the configured origins (none: CORS stays off)."""
    allowed = origins(app.config)
    app.config["CORS_ORIGINS"] = allowed
    if not allowed:
        return
    # Compiled, anchored patterns: Flask-CORS would read a string with brackets (an
    # IPv6 host) as a regular expression.
    patterns = [re.compile(re.escape(origin) + r"\Z", re.IGNORECASE) for origin in allowed]
    CORS(app, resources={RESOURCES: {
        "origins": patterns, "supports_credentials": False, "max_age": MAX_AGE,
        "expose_headers": EXPOSED_HEADERS, "allow_headers": ALLOWED_HEADERS,
        "methods": METHODS, "vary_header": True}})
