"""SECURITY.md section F (configuration), tested from the outside: processes, headers,
emails, rows and log output.

Already proved elsewhere (item -> test), not repeated here:
- F1 every weak SECRET_KEY, FLASK_DEBUG=1, in-process:
  tests/test_config.py::test_production_refuses_unsafe_settings
- F2 rotation inside one app: tests/core/test_tokens.py::
  test_secret_key_rotation_keeps_old_tokens_and_codes_alive,
  tests/profiles/test_jwt.py::test_secret_key_rotation
- F3 (B5) other salts and keys never confirm:
  tests/security/test_b_tokens.py::test_b5_other_secrets_of_the_service_never_confirm,
  tests/core/test_tokens.py::test_other_purpose_or_key_is_invalid,
  tests/profiles/test_jwt.py::test_tokens_are_not_signed_with_the_raw_secret_key
- F5 javascript:, //evil, ftp:, no scheme: tests/test_config.py::
  test_production_refuses_unsafe_settings
- F6 `<script>` in token_id escaped, page CSP: tests/test_pages.py::
  test_token_in_the_url_is_never_reflected_unescaped, assert_safe_page
- F7 (A8) 413s: tests/test_api_errors.py::test_body_over_64_kib_is_json_413,
  ::test_streamed_body_over_the_limit_is_413_not_truncated, ::test_the_limit_is_configuration;
  tests/security/test_a_bad_input.py::test_a8_*
- F9 RATELIMIT_ENABLED on by default, off in tests; production memory:// warns:
  tests/test_rate_limits.py::test_off_in_tests_by_default_on_in_the_config,
  ::test_production_with_memory_storage_warns; tests/test_config.py::test_defaults
- E9 and the request log: tests/security/test_e9_errors.py
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import jwt
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from itsdangerous import BadSignature
from itsdangerous import URLSafeTimedSerializer

import config
from regapp import create_app
from regapp.core import confirmation as core_confirmation
from regapp.core import delivery
from regapp.core import jwt_tokens
from regapp.core import registration
from regapp.core import tokens
from regapp.core.mail import confirmation_link
from regapp.extensions import db
from regapp.models import OutboxMessage
from tests.conftest import ENV_NAMES as CONFIG_ENV_NAMES
from tests.serverkit import Server
from tests.smtp import CODE_RE
from tests.smtp import LINK_RE
from tests.smtp import Recorder
from tests.smtp import confirmation
from tests.smtp import free_port
from tests.smtp import html_part
from tests.smtp import text_part

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PASSWORD = "Str0ng-passphrase-9"
STRONG_KEY = "f-config-" + "0123456789abcdef" * 3
MAIL_SECRET = "mail-pa55word-f8"
DB_SECRET = "hunter2"
BAD_DB_URL = f"postgresql+psycopg://nobody:{DB_SECRET}@127.0.0.1:5432/test"
FRONTEND = "https://accounts.example.org/app"
PAGE = "/confirm-email/"
ENV_NAMES = {*CONFIG_ENV_NAMES, "FLASK_APP"}


def clean_env(**values) -> dict:
    """This process's environment without any regapp setting, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env.update({k: v for k, v in values.items() if v is not None})
    return env


def boom(*args, **kwargs):
    raise RuntimeError("boom")


@pytest.fixture
def make_user(make_user):
    """conftest's, with this module's password: the one the secret checks look for."""
    return functools.partial(make_user, password=PASSWORD)


@pytest.fixture
def production(monkeypatch, tmp_path):
    """A clean production environment for ``create_app()`` in this process."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in {"REGAPP_CONFIG": "production", "SECRET_KEY": STRONG_KEY,
                        "FRONTEND_URL": FRONTEND, "MAIL_SERVER": "127.0.0.1",
                        "MAIL_DEFAULT_SENDER": "Accounts <accounts@example.org>",
                        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite'}"}.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


# -- F1: SECRET_KEY, debug ---------------------------------------------------------------

UPGRADE = [str(BIN / "flask"), "--app", "regapp", "db", "upgrade"]
IMPORT_WSGI = [sys.executable, "-c", "import wsgi"]
# Each weak value once, each entry point twice (a process costs ~1 s of CPU); every
# value against create_app in-process: tests/test_config.py.
WEAK_KEYS = [("unset", None, UPGRADE), ("short", "short-s3cret-but-only-30-chars", UPGRADE),
             ("empty", "", IMPORT_WSGI), ("dev default", config.DEV_SECRET_KEY, IMPORT_WSGI)]


def test_f1_weak_secret_key_stops_real_processes_without_echoing_it(tmp_path):
    procs = {}
    for key_name, key, argv in WEAK_KEYS:
        db_file = tmp_path / f"{len(procs)}.sqlite"
        env = clean_env(REGAPP_CONFIG="production", SECRET_KEY=key, FRONTEND_URL=FRONTEND,
                        DATABASE_URL=f"sqlite:///{db_file}")
        procs[key_name, " ".join(argv[-2:]), key, db_file] = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for (key_name, cmd_name, key, db_file), proc in procs.items():
        out, err = proc.communicate(timeout=60)
        where = f"{cmd_name} with {key_name} SECRET_KEY"
        assert proc.returncode != 0, where
        assert "refusing to start" in err and "SECRET_KEY must be set" in err, where
        if key:
            assert key not in out + err, where
        assert not db_file.exists() or db_file.stat().st_size == 0, where  # nothing migrated


def test_f1_debug_flag_stops_production(tmp_path):
    env = clean_env(REGAPP_CONFIG="production", SECRET_KEY=STRONG_KEY, FRONTEND_URL=FRONTEND,
                    DATABASE_URL=f"sqlite:///{tmp_path / 'd.sqlite'}")
    result = subprocess.run([str(BIN / "flask"), "--app", "regapp", "--debug", "routes"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "debug must be off" in result.stderr
    assert STRONG_KEY not in result.stdout + result.stderr


def test_f1_production_has_no_debugger(production, monkeypatch):
    app = create_app()
    assert app.debug is False and app.testing is False
    assert not app.config["PROPAGATE_EXCEPTIONS"]
    monkeypatch.setattr(core_confirmation, "user_for_token", boom)
    client = app.test_client()
    r = client.get(PAGE, query_string={"token_id": "a.b.c"})
    html = r.get_data(as_text=True)
    assert r.status_code == 500 and "Internal Server Error" in html
    for leak in ("Traceback", "boom", "__debugger__", "Werkzeug Debugger", "console"):
        assert leak not in html
    r = client.get("/", query_string={"__debugger__": "yes", "cmd": "resource",
                                      "f": "debugger.js"})
    assert r.status_code == 404 and b"function" not in r.data


# -- F2: key rotation across a restart ------------------------------------------------------

K1 = "rotation-key-one-" + "1" * 32
K2 = "rotation-key-two-" + "2" * 32


@pytest.fixture
def restart(app):
    """Another app on the same database and mailbox: the service restarted with ``overrides``."""
    apps = []

    def restart(**overrides):
        same = {k: app.config[k] for k in ("SQLALCHEMY_DATABASE_URI", "MAIL_SERVER", "MAIL_PORT")}
        apps.append(create_app({"TESTING": True, **same, **overrides}))
        return apps[-1].test_client()

    yield restart
    for other in apps:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


def me(client, access):
    return client.get("/api/users/me", headers={"Authorization": f"Bearer {access}"})


@pytest.mark.config(SECRET_KEY=K1)
def test_f2_rotation_keeps_old_tokens_while_listed_and_signs_with_the_new_key(
        client, restart, last_confirmation, make_user):
    pair = client.post("/api/sign-up/", json={"username": "jo", "email": "jo@x.io",
                                              "password": PASSWORD}).get_json()
    _, token, _ = last_confirmation("jo@x.io")
    make_user("cy")
    _, _, code = last_confirmation("cy@x.io")
    rotated = restart(SECRET_KEY=K2, SECRET_KEY_FALLBACKS=[K1])
    retired = restart(SECRET_KEY=K2, SECRET_KEY_FALLBACKS=[])

    # K1 listed as a fallback: everything K1 signed still works.
    assert rotated.get(PAGE, query_string={"token_id": token}).status_code == 200
    assert me(rotated, pair["access"]).status_code == 200
    r = rotated.post("/api/token/refresh/", json={"refresh": pair["refresh"]})
    assert r.status_code == 200
    new_access = r.get_json()["access"]
    jwt.decode(new_access, jwt_tokens.signing_key(K2), algorithms=["HS256"])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(new_access, jwt_tokens.signing_key(K1), algorithms=["HS256"])

    # K1 removed: what it signed is dead; what K2 signed lives on.
    assert retired.get(PAGE, query_string={"token_id": token}).status_code == 400
    r = retired.get("/api/confirm-email/", query_string={"token_id": token})
    assert r.status_code == 400 and r.get_json() == {"token_id": ["Invalid or expired token."]}
    assert me(retired, pair["access"]).status_code == 401
    assert retired.post("/api/token/refresh/",
                        json={"refresh": pair["refresh"]}).status_code == 401
    assert me(retired, new_access).status_code == 200
    r = retired.post("/api/users/validation", json={"email": "cy@x.io", "token": code})
    assert r.status_code == 401

    # Back with the fallback: the link and the code were never used up.
    assert rotated.get("/api/confirm-email/", query_string={"token_id": token}).status_code == 200
    r = rotated.post("/api/users/validation", json={"email": "cy@x.io", "token": code})
    assert r.status_code == 201

    # A sign-up after the rotation is signed with K2 only.
    make_user("di", client=rotated)
    _, fresh, _ = last_confirmation("di@x.io")
    URLSafeTimedSerializer(K2, salt=tokens.CONFIRM_SALT).loads(fresh)
    with pytest.raises(BadSignature):
        URLSafeTimedSerializer(K1, salt=tokens.CONFIRM_SALT).loads(fresh)
    assert retired.get(PAGE, query_string={"token_id": fresh}).status_code == 200


# -- F3: one key or salt per purpose --------------------------------------------------------

def test_f3_jwt_key_is_derived_and_every_salt_is_unique(app):
    secret = app.config["SECRET_KEY"]
    assert jwt_tokens.signing_key(secret) not in (secret.encode(), secret)
    session_salt = app.session_interface.salt
    purposes = [tokens.CONFIRM_SALT, tokens.CODE_KEY_PURPOSE.decode(),
                jwt_tokens.KEY_PURPOSE.decode(), session_salt, "itsdangerous"]
    assert len(set(purposes)) == len(purposes)
    # The confirmation salt is spelled out once, so nothing else signs with it by accident.
    spelled = [p.name for p in (ROOT / "regapp").rglob("*.py")
               if tokens.CONFIRM_SALT in p.read_text()]
    assert spelled == ["tokens.py"]


# -- F4: host-header poisoning ---------------------------------------------------------------

POISONED = [
    {"Host": "evil.example"},
    {"X-Forwarded-Host": "evil.example"},
    {"X-Forwarded-Proto": "javascript"},
    {"Forwarded": "host=evil.example;proto=javascript"},
    {"Host": "www.example:dr.frankenstein@evil.tld"},
    {"X-Forwarded-Server": "evil.example", "X-Host": "evil.example",
     "X-Original-Host": "evil.example"},
]


def assert_link_from_config(msg, base=FRONTEND):
    link, token, _ = confirmation(msg)
    assert link == f"{base}/confirm-email/?token_id={token}"
    for part in (text_part(msg), html_part(msg)):
        for bad in ("evil", "frankenstein", "javascript"):
            assert bad not in part


@pytest.mark.config(FRONTEND_URL=FRONTEND)
def test_f4_the_link_never_comes_from_the_request(client, deliver, make_user):
    for i, headers in enumerate(POISONED):
        make_user(f"p{i}", headers=headers)
    r = client.post("http://evil.example/api/register/",
                    json={"username": "abs", "email": "abs@x.io", "password": PASSWORD})
    assert r.status_code == 201
    messages = deliver()
    assert len(messages) == len(POISONED) + 1
    for msg in messages:
        assert_link_from_config(msg)


# -- F5: FRONTEND_URL --------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://", "https://", "http:///confirm", "https://good.example@evil.tld",
    "https://user:pw@accounts.example.org", "https://accounts.example.org:99999",
    "https://accounts.example.org/?next=/x", "https://accounts.example.org/ a",
    "https://accounts.example.org\n.evil.tld", "JavaScript:alert(1)//",
])
def test_f5_production_refuses_a_frontend_url_that_breaks_the_link(production, url):
    production.setenv("FRONTEND_URL", url)
    with pytest.raises(RuntimeError, match="refusing to start.*FRONTEND_URL"):
        create_app()


@pytest.mark.parametrize("url", ["https://accounts.example.org/base/?",
                                 "http://127.0.0.1:5000", "https://app.example.org/#/"])
def test_f5_production_accepts_http_urls_with_a_host(production, url):
    production.setenv("FRONTEND_URL", url)
    assert create_app().config["FRONTEND_URL"] == url


@pytest.mark.config(FRONTEND_URL="https://app.example.org/welcome/?")
def test_f5_base_with_a_path_and_a_trailing_question_mark(app, client, last_confirmation,
                                                          make_user):
    make_user("q")
    link, token, _ = last_confirmation()
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https", "app.example.org", "/welcome/confirm-email/")
    assert parse_qs(parts.query, strict_parsing=True) == {"token_id": [token]}
    assert client.get("/api/confirm-email/?" + parts.query).status_code == 200
    with app.app_context():
        assert confirmation_link("a+b/c=d&e f") == (
            "https://app.example.org/welcome/confirm-email/?token_id=a%2Bb%2Fc%3Dd%26e+f")


# -- F6: response headers ---------------------------------------------------------------------

def assert_no_leak_headers(r):
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_f6_confirm_endpoints_send_no_leak_headers(client, last_confirmation, make_user):
    make_user("h")
    _, token, code = last_confirmation()
    confirms = [
        ("GET", "/api/confirm-email/", {"query_string": {"token_id": "bad.to.ken"}}),
        ("GET", "/api/users/verification", {"query_string": {"email_token": "bad.to.ken"}}),
        ("POST", "/api/users/validation", {"json": {"email": "h@x.io", "token": "000000"}}),
        ("GET", PAGE, {"query_string": {"token_id": token}}),
        ("POST", PAGE, {"data": {"token_id": "bad.to.ken"}}),
        ("POST", "/api/users/validation", {"json": {"email": "h@x.io", "token": code}}),
        ("GET", "/api/confirm-email/", {"query_string": {"token_id": token}}),
        ("GET", "/api/users/verification", {"query_string": {"email_token": token}}),
        ("POST", PAGE, {"data": {"token_id": token}}),
    ]
    for method, path, kwargs in confirms:
        r = client.open(path, method=method, **kwargs)
        assert r.status_code < 500, (method, path)
        assert_no_leak_headers(r)
        if path == PAGE:
            csp = r.headers["Content-Security-Policy"]
            assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp


API_REQUESTS = [
    ("POST", "/api/register/", {"json": {"username": "u1", "email": "u1@x.io",
                                         "password": PASSWORD}}),
    ("POST", "/api/v1/user/register", {"json": {"username": "u2", "email_address": "u2@x.io",
                                                "password": PASSWORD}}),
    ("POST", "/api/users/register", {"json": {"first_name": "U", "last_name": "Three",
                                              "email": "u3@x.io", "postal_code": "1234 AB",
                                              "password": PASSWORD}}),
    ("POST", "/api/users/registration", {"json": {"email": "u4@x.io", "password": PASSWORD,
                                                  "password_confirmation": PASSWORD}}),
    ("POST", "/api/sign-up/", {"json": {"username": "u5", "email": "u5@x.io",
                                        "password": PASSWORD}}),
    ("POST", "/api/token/", {"json": {"username": "u5", "password": PASSWORD}}),
    ("POST", "/api/token/refresh/", {"json": {"refresh": "x"}}),
    ("GET", "/api/users/me", {}),
    ("POST", "/api/resend-confirmation/", {"json": {"email": "u1@x.io"}}),
    ("POST", "/api/register/", {"json": {}}),
    ("GET", "/api/nope", {}),
    ("DELETE", "/api/sign-up/", {}),
    ("POST", "/api/register/", {"data": b"x" * (65 * 1024), "content_type": "application/json"}),
    ("POST", "/api/register/", {"data": b"x", "content_type": "text/plain"}),
]


def test_f6_every_api_response_is_no_store_and_nosniff(client):
    statuses = []
    for method, path, kwargs in API_REQUESTS:
        r = client.open(path, method=method, **kwargs)
        statuses.append(r.status_code)
        assert r.headers["Cache-Control"] == "no-store", (method, path)
        assert r.headers["X-Content-Type-Options"] == "nosniff", (method, path)
        assert "Server" not in r.headers
    # The requests did what they were meant to (successes and errors alike).
    assert statuses == [201, 201, 201, 201, 201, 200, 401, 401, 202, 400, 404, 405, 413, 415]


@pytest.mark.parametrize("path", ["/nope", "/nope<script>alert(1)</script>", "/static/x.css",
                                  "/confirm-email/resend"])
def test_f6_nosniff_on_html_errors_too(client, path):
    r = client.get(path)
    assert r.status_code in (404, 405)
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert b"<script>" not in r.data and "Server" not in r.headers


@pytest.mark.config(RATELIMIT_ENABLED=True, RATELIMIT_REGISTRATION="1/minute")
def test_f6_throttled_answers_carry_the_headers(client, make_user):
    make_user("rl")
    r = client.post("/api/register/", json={})
    assert r.status_code == 429
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "no-store"


# -- F7: body limits -------------------------------------------------------------------------

def test_f7_body_limits_are_set_and_not_loosened(production):
    cfg = create_app().config
    assert cfg["MAX_CONTENT_LENGTH"] == 64 * 1024
    assert cfg["MAX_FORM_MEMORY_SIZE"] <= 500_000 and cfg["MAX_FORM_PARTS"] <= 1000


# -- F8: no secrets in logs or errors --------------------------------------------------------

def test_f8_database_auth_failure(caplog):
    caplog.set_level(logging.INFO)
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": BAD_DB_URL})
    try:
        r = app.test_client().post("/api/register/", json={
            "username": "dbf", "email": "dbf@x.io", "password": PASSWORD})
    finally:
        with app.app_context():
            db.engine.dispose()
    assert r.status_code == 503 and r.is_json
    assert "database unavailable" in caplog.text
    env = clean_env(REGAPP_CONFIG="development", DATABASE_URL=BAD_DB_URL)
    upgrade = subprocess.run([str(BIN / "flask"), "--app", "regapp", "db", "upgrade"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
    assert upgrade.returncode != 0 and "OperationalError" in upgrade.stderr
    for text in (r.get_data(as_text=True), caplog.text, upgrade.stdout + upgrade.stderr):
        assert DB_SECRET not in text and PASSWORD not in text


def reject_auth(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=False, handled=False)


@pytest.fixture(params=["auth rejected", "auth not offered"])
def auth_failing_smtp(request):
    kwargs = {"authenticator": reject_auth, "auth_require_tls": False}
    controller = Controller(Recorder(), hostname="127.0.0.1", port=free_port(),
                            **(kwargs if request.param == "auth rejected" else {}))
    controller.start()
    yield controller
    controller.stop()


def secrets_of(password: str, username: str = "mailer") -> list[str]:
    """The password as it might leak: plain, and inside AUTH PLAIN / LOGIN base64."""
    return [password, base64.b64encode(f"\0{username}\0{password}".encode()).decode(),
            base64.b64encode(password.encode()).decode()]


@pytest.mark.config(MAIL_USERNAME="mailer", MAIL_PASSWORD=MAIL_SECRET)
def test_f8_smtp_auth_failure(app, client, runner, caplog, auth_failing_smtp, make_user):
    caplog.set_level(logging.INFO)
    app.config["MAIL_PORT"] = auth_failing_smtp.port
    make_user("sm")
    with app.app_context():
        assert delivery.send_due()["retry"] == 1
        row = db.session.scalars(sa.select(OutboxMessage)).one()
        body, error, status = row.body_text, row.last_error, row.status
    assert status == "pending" and error.startswith(("SMTPAuthenticationError",
                                                     "SMTPNotSupportedError"))
    token = LINK_RE.search(body).group(2)
    code = CODE_RE.search(body).group(1)
    listing = runner.invoke(args=["mail", "list"]).output
    assert auth_failing_smtp.handler.messages == []
    for text in (caplog.text, error, listing):
        for secret in [*secrets_of(MAIL_SECRET), app.config["SECRET_KEY"], PASSWORD, token, code]:
            assert secret not in text


def test_f8_server_error_logs_no_secret(app, client, caplog, monkeypatch, last_confirmation,
                                        make_user):
    caplog.set_level(logging.INFO)
    make_user("se")
    _, token, code = last_confirmation()
    monkeypatch.setattr(core_confirmation, "confirm", boom)
    monkeypatch.setattr(core_confirmation, "confirm_code", boom)
    monkeypatch.setattr(registration, "register", boom)
    responses = [
        client.get("/api/confirm-email/", query_string={"token_id": token}),
        client.get("/api/users/verification", query_string={"email_token": token}),
        client.post("/api/users/validation", json={"email": "se@x.io", "token": code}),
        client.post("/api/register/", json={"username": "s2", "email": "s2@x.io",
                                            "password": PASSWORD}),
    ]
    assert [r.status_code for r in responses] == [500] * 4
    texts = [caplog.text] + [r.get_data(as_text=True) + str(r.headers) for r in responses]
    for text in texts:
        for secret in (app.config["SECRET_KEY"], PASSWORD, token, code):
            assert secret not in text


# -- F8 + F4 + F6 end to end: gunicorn in production, its stderr read back ---------------------

def raw_http(port, head: str, body: bytes = b"") -> tuple[int, dict, bytes]:
    """Send ``head`` (request line + headers) as is; return status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header_blob, _, payload = data.partition(b"\r\n\r\n")
    lines = header_blob.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, payload


def post_json(port, path, body: bytes, target=None, extra=""):
    head = (f"POST {target or path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n")
    return raw_http(port, head, body)


@pytest.fixture
def production_server(tmp_path):
    """gunicorn wsgi:app in production, mail to an SMTP server that refuses our login."""
    mailbox = Controller(Recorder(), hostname="127.0.0.1", port=free_port(),
                         authenticator=reject_auth, auth_require_tls=False)
    mailbox.start()
    db_url = f"sqlite:///{tmp_path / 'srv.sqlite'}"
    server = Server(db_url, mail_port=mailbox.port, log_dir=tmp_path, workers=1, env={
        "REGAPP_CONFIG": "production", "SECRET_KEY": STRONG_KEY, "FRONTEND_URL": FRONTEND,
        "MAIL_DEFAULT_SENDER": "Accounts <accounts@example.org>",
        "MAIL_USERNAME": "mailer", "MAIL_PASSWORD": MAIL_SECRET})
    try:
        server.start()
        yield server.port, db_url, server.log_path, mailbox, server.proc
    finally:
        server.stop(timeout=15)
        mailbox.stop()


def outbox_rows(db_url):
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT body_text, attempts, status FROM outbox_messages ORDER BY id")).all()
    finally:
        engine.dispose()


def test_f8_gunicorn_logs_hold_no_secret_and_links_ignore_the_host(production_server):
    port, db_url, log_path, mailbox, proc = production_server
    poisons = [f"{k}: {v}\r\n" for h in POISONED for k, v in h.items()
               if k != "Host"] + ["Forwarded: for=1.2.3.4;host=evil.example\r\n"]
    targets = ["/api/register/", "http://evil.example/api/register/"]
    n = 0
    for target in targets:
        for extra in poisons + [""]:
            body = (f'{{"username": "g{n}", "email": "g{n}@x.io", '
                    f'"password": "{PASSWORD}"}}').encode()
            status, headers, _ = post_json(port, "/api/register/", body, target, extra)
            assert status == 201
            assert headers["Server"] == "gunicorn"  # no version banner
            assert headers["X-Content-Type-Options"] == "nosniff"
            n += 1
    for host in ("evil.example", "www.example:dr.frankenstein@evil.tld"):
        head = (f"POST /api/register/ HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                "application/json\r\nContent-Length: {}\r\nConnection: close\r\n")
        body = (f'{{"username": "g{n}", "email": "g{n}@x.io", '
                f'"password": "{PASSWORD}"}}').encode()
        status, _, _ = raw_http(port, head.format(len(body)), body)
        assert status in (201, 400)  # gunicorn may refuse the odd Host itself
        n += 1 if status == 201 else 0

    # Every queued email links to FRONTEND_URL; the dispatcher tried (and failed) to log in.
    deadline = time.monotonic() + 10
    rows = outbox_rows(db_url)
    while not all(attempts >= 1 for _, attempts, _ in rows):
        assert time.monotonic() < deadline, "the dispatcher never tried to send"
        time.sleep(0.2)
        rows = outbox_rows(db_url)
    assert len(rows) == n and mailbox.handler.messages == []
    tokens_, codes = [], []
    for body_text, _, _ in rows:
        link = LINK_RE.search(body_text)
        assert link.group(1) == f"{FRONTEND}/confirm-email/?token_id={link.group(2)}"
        tokens_.append(link.group(2))
        codes.append(CODE_RE.search(body_text).group(1))

    # Confirm with a token in the URL and with a code; poke the log with a forged line.
    status, headers, _ = raw_http(port, f"GET /api/confirm-email/?token_id={tokens_[0]} "
                                        "HTTP/1.1\r\nHost: x\r\nConnection: close\r\n")
    assert status == 200
    rid = headers["X-Request-ID"]
    status, _, _ = post_json(port, "/api/users/validation",
                             f'{{"email": "g1@x.io", "token": "{codes[1]}"}}'.encode())
    assert status == 201
    raw_http(port, "GET /api/nope%0d%0aGET%20/forged%20200%1b[31m HTTP/1.1\r\nHost: x\r\n"
                   "Connection: close\r\n")

    proc.send_signal(signal.SIGTERM)  # flush and close the log
    proc.wait(15)
    log = log_path.read_text()
    assert "SMTPAuthenticationError" in log  # the failure was logged, by class and reply
    # Under gunicorn the access log is the one line per request: path without the
    # query string, and the request id the client saw in X-Request-ID.
    assert re.search(rf'"GET /api/confirm-email/ HTTP/1.1" 200 \d+ \d+ms {rid}$', log, re.M)
    assert not any(line.startswith("GET /forged") for line in log.splitlines())
    assert "\x1b" not in log
    for secret in [*secrets_of(MAIL_SECRET), STRONG_KEY, PASSWORD, *tokens_, *codes]:
        assert secret not in log


# -- F10: no CORS ---------------------------------------------------------------------------

@pytest.mark.parametrize("origin", ["https://evil.example", "null", FRONTEND,
                                    "http://127.0.0.1:5000"])
def test_f10_no_cors_headers_for_any_origin(client, origin):
    preflight = {"Origin": origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type, authorization"}
    responses = [
        client.options("/api/register/", headers=preflight),
        client.options("/api/users/me", headers=preflight),
        client.post("/api/register/", json={}, headers={"Origin": origin}),
        client.get("/api/users/me", headers={"Origin": origin}),
        client.get(PAGE, headers={"Origin": origin}),
    ]
    for r in responses:
        assert not [h for h in r.headers.keys() if h.lower().startswith("access-control-")]


# -- F11: SMTP over TLS, certificate verified -----------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl, into a temp directory)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    return cert, key


class TLSRecorder(Recorder):
    """Records, with each message, whether it arrived inside TLS."""

    def __init__(self):
        super().__init__()
        self.encrypted: list[bool] = []

    async def handle_DATA(self, server, session, envelope):
        self.encrypted.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def starttls_smtp(certificate):
    """STARTTLS offered, not required: a client that fell back to plain text would succeed."""
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(TLSRecorder(), hostname="127.0.0.1", port=free_port(),
                            tls_context=context, require_starttls=False)
    controller.start()
    yield controller
    controller.stop()


def send_one(app, make_user, server, name):
    app.config["MAIL_PORT"] = server.port
    make_user(name)
    with app.app_context():
        counts = delivery.send_due()  # one pass: tests retry at once (MAIL_RETRY_BASE=0)
        row = db.session.scalars(sa.select(OutboxMessage)).one()
        return counts, row.status, row.last_error or ""


@pytest.mark.config(MAIL_USE_TLS=True)
def test_f11_self_signed_certificate_is_refused_by_default(app, client, starttls_smtp, make_user):
    assert app.config["MAIL_TLS_VERIFY"] is True
    counts, status, error = send_one(app, make_user, starttls_smtp, "t1")
    assert counts["retry"] == 1 and status == "pending"
    assert "SSLCertVerificationError" in error
    assert starttls_smtp.handler.messages == []  # never sent in the clear instead


@pytest.mark.config(MAIL_USE_TLS=True, MAIL_MAX_ATTEMPTS=1)
def test_f11_refused_certificate_parks_the_row_after_its_attempts(app, client, starttls_smtp,
                                                                  make_user):
    counts, status, _ = send_one(app, make_user, starttls_smtp, "t2")
    assert counts["failed"] == 1 and status == "failed"
    assert starttls_smtp.handler.messages == []


@pytest.mark.config(MAIL_USE_TLS=True)
def test_f11_trusted_certificate_is_verified_with_its_host_name(
        app, client, starttls_smtp, certificate, monkeypatch, make_user):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust this CA for the test
    app.config["MAIL_SERVER"] = "localhost"  # the certificate names 127.0.0.1 only
    counts, status, error = send_one(app, make_user, starttls_smtp, "t3")
    assert status == "pending" and "SSLCertVerificationError" in error
    app.config["MAIL_SERVER"] = "127.0.0.1"
    with app.app_context():  # retried at once (MAIL_RETRY_BASE=0 in tests)
        assert delivery.send_due()["sent"] == 1
    assert starttls_smtp.handler.encrypted == [True]


@pytest.mark.config(MAIL_USE_TLS=True, MAIL_TLS_VERIFY=False)
def test_f11_explicit_opt_out_delivers_inside_tls(app, client, starttls_smtp, make_user):
    counts, status, _ = send_one(app, make_user, starttls_smtp, "t4")
    assert counts["sent"] == 1 and status == "sent"
    assert starttls_smtp.handler.encrypted == [True]


@pytest.mark.config(MAIL_USE_TLS=True)
def test_f11_server_without_starttls_gets_nothing(app, client, smtp, make_user):
    counts, status, error = send_one(app, make_user, smtp, "t5")
    assert counts["retry"] == 1 and status == "pending" and "SMTPNotSupportedError" in error
    assert smtp.messages == []


@pytest.mark.parametrize(("server", "starts"), [
    ("smtp.example.org", False), ("10.0.0.5", False), ("127.0.0.1", True),
    ("localhost", True), ("::1", True),
])
def test_f11_production_refuses_tls_opt_out_except_on_this_machine(production, server, starts):
    production.setenv("MAIL_TLS_VERIFY", "false")
    production.setenv("MAIL_SERVER", server)
    if starts:
        assert create_app().config["MAIL_TLS_VERIFY"] is False
    else:
        with pytest.raises(RuntimeError, match="MAIL_TLS_VERIFY"):
            create_app()
