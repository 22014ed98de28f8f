"""Abuse throttling: Flask-Limiter limits applied by route purpose, one limiter per app.

Every route that changes state declares what it is for, next to its route::

    @bp.post("/register/", endpoint="register")
    @limits.declare(limits.REGISTRATION)
    def register(): ...

The purposes are ``registration``, ``confirmation``, ``resend``, ``token``
(logging in, refreshing, logging out) and ``reset`` (password reset); a route
that declares none is not throttled (tests/test_route_purposes.py fails for any
state-changing route without one).

Each purpose has one bucket per client IP shared by all its endpoints, so
switching profiles buys nothing. Confirmation adds a bucket per normalised
email (code guessing); it applies only when the request names an email, which
the emailed link never does, so nobody can lock an owner out of the link
(SECURITY.md C7). Logins have no per-account bucket here on purpose: anyone
could fill it and lock the owner out. Wrong passwords are counted per resolved
account in the core instead (core/login.py, core/throttle.py), where a login
from a known device still works past the limit.
HEAD and OPTIONS are never counted.

The limit is checked in ``before_request``, after routing, so its 429 is an
``HTTPException`` that each profile's own error handler renders; ``on_breach``
supplies the exact ``Retry-After`` (and the HTML body for the browser page).
"""

from __future__ import annotations

import math
import time
from functools import partial

from flask import Response
from flask import current_app
from flask import g
from flask import request
from flask_limiter import Limit
from flask_limiter import Limiter
from limits import parse_many
from limits.errors import ConfigurationError
from markupsafe import escape
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from ..core.identity import email_key
from ..core.identity import lookup_key
from ..core.throttle import hmac_key
from .payload import read_payload

EXTENSION = "regapp.limiter"
REGISTRATION = "registration"
CONFIRMATION = "confirmation"
RESEND = "resend"
TOKEN = "token"
RESET = "reset"
PURPOSES = (REGISTRATION, CONFIRMATION, RESEND, TOKEN, RESET)
PURPOSE_ATTRIBUTE = "regapp_limit_purpose"
# (purpose, config key, what the bucket is keyed on)
LIMITS = (
    (REGISTRATION, "RATELIMIT_REGISTRATION", "ip"),
    (CONFIRMATION, "RATELIMIT_CONFIRMATION", "ip"),
    (CONFIRMATION, "RATELIMIT_CONFIRMATION_PER_EMAIL", "email"),
    (RESEND, "RATELIMIT_RESEND", "ip"),
    (TOKEN, "RATELIMIT_TOKEN", "ip"),
    (RESET, "RATELIMIT_RESET", "ip"),
)
# Request fields that name the account a request is about, body first, then query.
EMAIL_FIELDS = ("email",)
COUNTED_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
REDIS_SCHEMES = ("redis://", "rediss://", "redis+unix://")
MAX_KEY_INPUT = 320


def declare(kind: str):
    """Decorator: the view is throttled as ``kind`` (one of ``PURPOSES``)."""
    if kind not in PURPOSES:
        raise ValueError(f"unknown rate-limit purpose {kind!r}")

    def mark(view):
        setattr(view, PURPOSE_ATTRIBUTE, kind)
        return view
    return mark


def purpose(endpoint: str | None, app=None) -> str | None:
    """The declared purpose of ``endpoint`` in ``app`` (default: the current app)."""
    if not endpoint:
        return None
    app = app or current_app
    return getattr(app.view_functions.get(endpoint), PURPOSE_ATTRIBUTE, None)


def limited_endpoints(app) -> dict[str, str]:
    """``{endpoint: purpose}`` for every route of ``app`` that is throttled."""
    return {rule.endpoint: purpose(rule.endpoint, app) for rule in app.url_map.iter_rules()
            if purpose(rule.endpoint, app)}


def client_ip() -> str:
    """The client address: ``remote_addr``, rewritten by ProxyFix only for trusted hops."""
    return request.remote_addr or "unknown"


def _hashed(value: str) -> str:
    """The bucket key of an address (or username) as a person types it.

    An address is normalised exactly as registration stores it (``lookup_key``), so
    ``x@straße.de`` charges ``x@xn--strae-oqa.de``'s bucket and never
    ``x@strasse.de``'s; anything else (a username, garbage) is NFKC-casefolded.
    Buckets hold an HMAC under ``SECRET_KEY``: never an address in clear (Redis,
    Flask-Limiter's log lines), nor a bare hash that a dictionary of addresses
    would reverse, and no separator can be smuggled into the storage key.
    """
    key = lookup_key(value) or email_key(value.strip()[:MAX_KEY_INPUT])
    return hmac_key("ratelimit", key)[:32]


def _named(fields) -> str:
    """Hashed normalised value of the first field present in the body, else the query."""
    cache = g.setdefault("_regapp_limit_keys", {})
    if fields not in cache:
        try:
            payload = read_payload()
        except HTTPException:
            payload = {}  # the view reports the bad body; only the IP bucket counts it
        value = next((payload[f] for f in fields if isinstance(payload.get(f), str)
                      and payload[f].strip()), None)
        if value is None:
            value = next((request.args[f] for f in fields if request.args.get(f, "").strip()),
                         None)
        cache[fields] = _hashed(value) if value is not None else ""
    return cache[fields]


KEYS = {
    "ip": client_ip,
    "email": partial(_named, EMAIL_FIELDS),
}


def _exempt(kind: str, by: str) -> bool:
    if purpose(request.endpoint) != kind:
        return True
    return by != "ip" and not KEYS[by]()


def _retry_after(limit) -> int:
    # ``limit.reset_at`` rounds up by a whole extra second; the window is exact.
    return max(1, math.ceil(limit.window.reset_time - time.time()))


def _message() -> str:
    return f"Too many requests. Retry after {g.get('_regapp_retry_after', 60)} seconds."


def _on_breach(limit) -> Response:
    """Log the breach and carry ``Retry-After``; profiles render their own 429 body.

    The HTML body is the browser page's, which has no handler of its own; under
    /api/ every HTTP error goes through a profile's ``http_error``, which keeps
    only the ``Retry-After`` of this response.
    """
    seconds = _retry_after(limit)
    g._regapp_retry_after = seconds
    current_app.logger.warning(
        "rate limit %s exceeded: %s %s from %s", limit.limit, request.method,
        request.endpoint, client_ip(),
        extra={"event": "rate_limited", "purpose": purpose(request.endpoint)})
    response = Response(
        "<!doctype html><title>Too many requests</title>"
        f"<p>{escape(_message())}</p>", content_type="text/html; charset=utf-8")
    response.status_code = 429
    response.headers["Retry-After"] = str(seconds)
    return response


def build_limits(config) -> list[Limit]:
    """One shared ``Limit`` per (purpose, key) from the config's limit strings."""
    out = []
    for kind, key, by in LIMITS:
        value = config.get(key) or ""
        if not value:
            continue  # an empty string switches that limit off
        try:
            parse_many(value)  # a typo fails at start-up, not on every request
        except ValueError:
            from config import ConfigValueError  # noqa: PLC0415 - beside the package

            raise ConfigValueError(
                f"{key}={value[:40]!r} is not accepted: expected limits such as "
                "'10/minute;100/day', or empty for no limit") from None
        out.append(Limit(
            value, key_function=KEYS[by], scope=f"{kind}:{by}", shared=True,
            methods=COUNTED_METHODS, exempt_when=partial(_exempt, kind, by),
            error_message=_message,
        ))
    return out


def _storage_options(config) -> dict:
    uri = config.get("RATELIMIT_STORAGE_URI") or ""
    if not uri.startswith(REDIS_SCHEMES):
        return {}
    # Bounded waits: a black-holed Redis must not hold every request.
    timeout = config.get("RATELIMIT_STORAGE_TIMEOUT", 1)
    return {"socket_connect_timeout": timeout, "socket_timeout": timeout}


def _watch_storage(limiter: Limiter, response):
    """Log an error when the shared store is lost (and when it comes back)."""
    # Flask-Limiter 4.1 only exposes this as ``_storage_dead``; tests pin the behaviour.
    dead = bool(getattr(limiter, "_storage_dead", False))
    state = current_app.extensions[EXTENSION + ".degraded"]
    if dead != state[0]:
        state[0] = dead
        if dead:
            current_app.logger.error(
                "rate limiter degraded: storage unreachable, limits are per process "
                "(in-memory fallback) until it recovers")
        else:
            current_app.logger.warning("rate limiter storage recovered")
    return response


def init_app(app) -> None:
    """Trust the configured proxy hops, then throttle the classified endpoints."""
    hops = int(app.config.get("TRUSTED_PROXY_COUNT") or 0)
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)
    # A Limiter keeps its storage, switches and prefix per init_app, so one
    # module-level instance shared by several apps would mix their settings.
    limiter = Limiter(
        key_func=client_ip, default_limits=build_limits(app.config),
        on_breach=_on_breach, storage_options=_storage_options(app.config),
    )
    try:
        limiter.init_app(app)
    except ConfigurationError as exc:  # a storage the environment cannot reach or load
        from config import ConfigError  # noqa: PLC0415 - config.py sits beside the package

        # The library's text repeats the URI, which may hold a password: not shown.
        raise ConfigError("RATELIMIT_STORAGE_URI is not accepted: its storage cannot be "
                          f"used ({type(exc).__name__}); expected memory:// or a redis:// "
                          "URI with the redis package installed") from None
    app.extensions[EXTENSION] = limiter
    if limiter.enabled:
        app.extensions[EXTENSION + ".degraded"] = [False]
        app.after_request(partial(_watch_storage, limiter))
