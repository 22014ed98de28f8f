"""App-wide response hardening and request logging (with a request id, without secrets).

Every response gets ``X-Request-ID``, ``X-Content-Type-Options: nosniff`` and
``Referrer-Policy: no-referrer``; every ``/api/`` response is ``no-store``
(they carry tokens and account data) and has a ``Content-Security-Policy`` that
allows nothing (``default-src 'none'; frame-ancestors 'none'``). One log line per
request names the method, the path *without* its query string (confirmation tokens travel in
``?token_id=``), the status, the duration and the request id; unhandled errors
are logged with the same id, so a client's ``X-Request-ID`` finds them.

An incoming ``X-Request-ID`` (a proxy's, or a client's) is kept when it is a sane
token, 1 to 64 of ``[A-Za-z0-9_-]``; anything else is replaced by a random id, so
a log line can never be forged or bloated through it.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import g
from flask import got_request_exception
from flask import request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import MethodNotAllowed

log = logging.getLogger("regapp.request")

REQUEST_ID_HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# TRACE echoes the request (cookies, Authorization) back: cross-site tracing.
UNSUPPORTED_METHODS = frozenset({"TRACE", "TRACK"})
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # Confirmation links carry the token in the URL; no page of ours passes it on.
    "Referrer-Policy": "no-referrer",
}
API_HEADERS = {
    "Cache-Control": "no-store",
    # JSON is never a document to render or frame (a docs page may set its own).
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
MAX_LOGGED_PATH = 2048


def init_app(app) -> None:
    """Stamp request ids and headers on every response and log each request."""
    if log.level == logging.NOTSET:  # an operator's logging config wins
        log.setLevel(logging.INFO)
    app.logger  # noqa: B018 - creating it attaches Flask's handler that these lines reach
    # First of all before_request functions, so even a request refused by a
    # later one (rate limit) has its id and start time.
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_finish)
    got_request_exception.connect(_log_unhandled, app)
    app.session_interface = CookieSessions()


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, except that a request without a session cookie
    gets its empty session without the cookie's signing serializer being built (Flask
    builds one per request, whatever the request): only the pages' forms use the
    session (their CSRF token), and no API request carries its cookie."""

    def open_session(self, app, request):
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def request_id() -> str:
    """This request's id: the incoming ``X-Request-ID`` when it is a sane token
    (``[A-Za-z0-9_-]{1,64}``), else a random one."""
    rid = g.get("request_id")
    if rid is None:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        rid = given if SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        g.request_id = rid
    return rid


def printable(text: str, limit: int = MAX_LOGGED_PATH) -> str:
    """``text`` safe for a log line: control characters escaped (Django CVE-2025-48432)."""
    return text[:limit].encode("unicode_escape").decode("ascii")


def _start():
    g.request_started = time.perf_counter()
    request_id()
    if request.method in UNSUPPORTED_METHODS:
        exc = request.routing_exception
        methods = exc.valid_methods if isinstance(exc, MethodNotAllowed) else None
        raise MethodNotAllowed(valid_methods=methods)


def _finish(response):
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path == "/api" or request.path.startswith("/api/"):
        for name, value in API_HEADERS.items():
            response.headers.setdefault(name, value)
    if response.status_code == 405:
        # RFC 9110 15.5.6: a 405 always lists the allowed methods, even none.
        response.headers.setdefault("Allow", "")
    rid = request_id()
    response.headers[REQUEST_ID_HEADER] = rid
    started = g.get("request_started")
    elapsed_ms = (time.perf_counter() - started) * 1000 if started else 0.0
    log.log(logging.WARNING if response.status_code >= 500 else logging.INFO,
            "%s %s %s %.1fms request_id=%s", printable(request.method, 32),
            printable(request.path), response.status_code, elapsed_ms, rid)
    return response


def _log_unhandled(sender, exception, **extra):
    # Flask logs the traceback next; this line ties it to the client's X-Request-ID.
    log.error("unhandled %s on %s %s request_id=%s", type(exception).__name__,
              printable(request.method, 32), printable(request.path), request_id())
