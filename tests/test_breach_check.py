"""The optional breached-password check (PASSWORD_BREACH_CHECK_URL), against a local
fake of the Have I Been Pwned range API on 127.0.0.1.

Only the first five hex digits of the SHA-1 leave the service, with
``Add-Padding: true``; a listed password (count > 0) is refused in each
profile's format; a padding line (count 0) is not a hit; a slow (2 s), failing
or garbled service never blocks a sign-up: accepted, with a warning logged.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest

from regapp import create_app
from tests.dbstate import counts
from tests.profile_matrix import CASES
from tests.profile_matrix import PASSWORD
from tests.profile_matrix import PROFILES
from tests.profile_matrix import created
from tests.profile_matrix import post

by_profile = pytest.mark.parametrize("case", PROFILES, ids=str)
DIGEST = hashlib.sha1(PASSWORD.encode()).hexdigest().upper()
PREFIX, SUFFIX = DIGEST[:5], DIGEST[5:]
BREACHED = {
    "drf": (400, {"error": ["This password has appeared in a data breach. "
                            "Please choose a different password."]}),
    "jwt": (400, {"password": ["This password has appeared in a data breach. "
                               "Please choose a different password."]}),
    "envelope": (400, {"results": None,
                       "message": "Password invalid: This password has appeared in a data "
                                  "breach. Please choose a different password.",
                       "error": "Password invalid", "error_code": -3, "status": 400}),
    "laravel": (422, {"message": "The given data was invalid.",
                      "errors": {"password": ["The given password has appeared in a data "
                                              "leak. Please choose a different password."]}}),
    "jsonapi": (422, {"errors": [{"title": "Invalid password",
                                  "detail": "Password has appeared in a data breach",
                                  "source": {}}],
                      "jsonapi": {"version": "1.0"}}),
}


class RangeServer:
    """A k-anonymity range service: ``GET /range/<5 hex>`` -> ``SUFFIX:COUNT`` lines."""

    def __init__(self):
        self.mode = "ok"
        self.listed: dict[str, int] = {}
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                outer.requests.append({"path": self.path, "headers": dict(self.headers)})
                outer.answer(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/range"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, handler):
        if self.mode == "slow":
            time.sleep(3)
        if self.mode == "500":
            handler.send_response(500)
            handler.end_headers()
            return
        if self.mode == "garbage":
            body = b"<html>service moved</html>\n\xff\xfe"
        elif self.mode == "text":
            body = b"Hello! Please upgrade your plan.\n"
        else:
            # Padding lines first (count 0), then what the service lists.
            lines = [f"{i:035X}:0" for i in range(50)]
            lines += [f"{suffix}:{count}" for suffix, count in self.listed.items()]
            body = "\r\n".join(lines).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def ranges(app):
    with RangeServer() as server:
        app.config["PASSWORD_BREACH_CHECK_URL"] = server.url
        yield server


@by_profile
def test_a_breached_password_is_refused_in_each_format(app, client, ranges, case):
    ranges.listed = {SUFFIX: 42}
    r = post(client, case.register, case.payload("ann@example.org"))
    status, body = BREACHED[case.name]
    assert (r.status_code, r.get_json(force=True)) == (status, body)
    assert counts(app) == (0, 0)
    # Only the first five hex digits of the SHA-1 were sent, with padding asked for.
    [request] = ranges.requests
    assert request["path"] == f"/range/{PREFIX}"
    assert request["headers"]["Add-Padding"] == "true"
    sent = repr(request)
    assert SUFFIX not in sent and SUFFIX.lower() not in sent and PASSWORD not in sent


@by_profile
def test_unlisted_and_padding_only_passwords_are_accepted(app, client, ranges, case):
    ranges.listed = {"0" * 35: 3}
    created(case, post(client, case.register, case.payload("ann@example.org")))
    ranges.listed = {SUFFIX: 0}  # a padding line for this very suffix is not a hit
    created(case, post(client, case.register, case.payload("bob@example.org")))
    assert counts(app) == (2, 2)


def test_the_policy_comes_first(client, ranges):
    """A password the profile's policy already refuses is never sent anywhere."""
    r = post(client, "/api/register/", CASES["drf"].payload("ann@example.org",
                                                             password="password"))
    assert r.get_json() == {"error": ["This password is too common."]}
    assert ranges.requests == []


@pytest.mark.parametrize("mode", ["500", "garbage", "text"])
def test_a_failing_service_fails_open_with_a_warning(app, client, ranges, caplog, mode):
    ranges.mode = mode
    ranges.listed = {SUFFIX: 42}
    with caplog.at_level(logging.WARNING, logger="regapp"):
        r = post(client, "/api/register/", CASES["drf"].payload("ann@example.org"))
    assert r.status_code == 201
    warnings = [rec.getMessage() for rec in caplog.records if rec.name == "regapp.core.breach"]
    assert len(warnings) == 1 and warnings[0].startswith("breached-password check skipped")
    assert PASSWORD not in caplog.text and PREFIX not in caplog.text


def test_a_slow_service_times_out_after_two_seconds(app, client, ranges, caplog):
    ranges.mode = "slow"
    with caplog.at_level(logging.WARNING, logger="regapp"):
        started = time.monotonic()
        r = post(client, "/api/register/", CASES["drf"].payload("ann@example.org"))
        elapsed = time.monotonic() - started
    assert r.status_code == 201
    assert 1.9 <= elapsed < 2.9, elapsed
    assert "breached-password check skipped: TimeoutError" in caplog.text


def test_a_service_that_is_down_fails_open(app, client, caplog):
    with RangeServer() as server:
        url = server.url
    app.config["PASSWORD_BREACH_CHECK_URL"] = url  # nobody listens there any more
    with caplog.at_level(logging.WARNING, logger="regapp"):
        r = post(client, "/api/register/", CASES["drf"].payload("ann@example.org"))
    assert r.status_code == 201
    assert "breached-password check skipped" in caplog.text


def test_off_by_default(app):
    assert app.config["PASSWORD_BREACH_CHECK_URL"] == ""


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/range", "not a url",
                                 "http://user@127.0.0.1/range", "http:///range"])
def test_a_bad_url_stops_start_up(url):
    with pytest.raises(RuntimeError, match="PASSWORD_BREACH_CHECK_URL"):
        create_app({"TESTING": True, "PASSWORD_BREACH_CHECK_URL": url})
