"""Fixtures: an app per test on SQLite (always) and PostgreSQL (TEST_DATABASE_URL),
each test run on its own database built by the committed migrations."""

from __future__ import annotations

import contextlib
import os

import pytest
import redis
import sqlalchemy as sa
from flask_migrate import upgrade

import config
from regapp import create_app
from regapp.core import delivery
from regapp.core import registration
from regapp.core.passwords import DjangoPolicy
from regapp.extensions import db
from tests.serverkit import postgres_database
from tests.smtp import SMTPServer
from tests.smtp import confirmation
from tests.smtp import is_confirmation

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if TEST_DATABASE_URL else [])
MIGRATIONS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")
TABLES = ("email_confirmations", "password_reset_codes", "refresh_families", "security_events",
          "outbox_messages", "users")
PASSWORD = "Str0ng-passphrase"

# Every setting config.py reads from the environment (and Flask's own switches).
ENV_NAMES = sorted(
    {value.name for value in vars(config.Config).values() if isinstance(value, config.Env)}
    | {"REGAPP_CONFIG", "FLASK_DEBUG"}
)


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean environment (no setting inherited from the shell) with a temp database."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", "sqlite:///" + str(tmp_path / "cfg.sqlite"))
    return monkeypatch


def pytest_configure(config):
    config.addinivalue_line("markers", "config(**overrides): app config for this test")
    config.addinivalue_line("markers", "postgresql_only: needs TEST_DATABASE_URL")


def _migrate(uri: str) -> None:
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": uri})
    with app.app_context():
        upgrade(directory=MIGRATIONS)
        db.engine.dispose()


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory):
    """One fresh database per backend for this run, dropped afterwards."""
    urls = {"sqlite": "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.sqlite")}
    with contextlib.ExitStack() as stack:
        if TEST_DATABASE_URL:
            urls["postgresql"] = stack.enter_context(postgres_database("regapp_test"))
        for url in urls.values():
            _migrate(url)
        yield urls


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(scope="session")
def smtp_server():
    server = SMTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def mailbox():
    """An SMTP server of this test's own (for a gunicorn server started by the test)."""
    server = SMTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def smtp(smtp_server):
    """The session's SMTP server, emptied for this test."""
    smtp_server.clear()
    yield smtp_server
    smtp_server.clear()


@pytest.fixture
def app(request, backend, database_urls, smtp):
    if backend == "sqlite" and request.node.get_closest_marker("postgresql_only"):
        pytest.skip("runs on PostgreSQL only")
    overrides = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_urls[backend],
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp.port,
    }
    marker = request.node.get_closest_marker("config")
    if marker:
        overrides.update(marker.kwargs)
    app = create_app(overrides)
    yield app
    with app.app_context():
        db.session.remove()
        with db.engine.begin() as conn:
            if backend == "postgresql":
                conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
            else:
                for table in TABLES:
                    conn.execute(sa.text(f"DELETE FROM {table}"))
                conn.execute(sa.text("DELETE FROM sqlite_sequence"))
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def sign_up(client):
    """``sign_up(name="alice", email=None, *, client=None, password=PASSWORD,
    **request_kwargs)``: POST a drf registration (username ``name``, email ``name@x.io``
    unless given); the response."""

    def sign_up(name="alice", email=None, *, client=client, password=PASSWORD, **kwargs):
        return client.post("/api/register/", json={
            "username": name, "email": email or f"{name}@x.io", "password": password}, **kwargs)

    return sign_up


@pytest.fixture
def make_user(sign_up):
    """``make_user(name="alice", email=None, *, client=None, password=PASSWORD,
    **request_kwargs)``: a user signed up through the drf profile (asserted 201); returns
    the email."""

    def make_user(name="alice", email=None, **kwargs):
        r = sign_up(name, email, **kwargs)
        assert r.status_code == 201, r.get_json()
        return email or f"{name}@x.io"

    return make_user


@pytest.fixture
def statements(app):
    """The SQL statements the app's engine runs while the test is in its block."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", record)
        yield seen
        sa.event.remove(db.engine, "before_cursor_execute", record)


@pytest.fixture
def make_core_user():
    """``make_core_user(email="alice@example.org", username=None, password=PASSWORD, **extra)``:
    a user registered by the core (Django's password rules), in the caller's app context."""

    def make_core_user(email="alice@example.org", username=None, password=PASSWORD, **extra):
        data = {"email": email, "password": password, **extra}
        if username is not None:
            data["username"] = username
        return registration.register(data, policy=DjangoPolicy()).user

    return make_core_user


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def deliver(app, smtp):
    """Deliver everything due now to the test SMTP server; return all messages so far."""

    def deliver():
        with app.app_context():
            delivery.send_all_due()
        return list(smtp.messages)

    return deliver


@pytest.fixture
def last_confirmation(deliver):
    """``(link, token, code)`` of the newest confirmation email, after delivering."""

    def last_confirmation(to: str | None = None):
        messages = deliver()
        if to is not None:
            messages = [m for m in messages if m["To"].lower() == to.lower()]
        # Other mail (the duplicate-sign-up mail, resets) is not a confirmation.
        messages = [m for m in messages if is_confirmation(m)]
        assert messages, "no confirmation email arrived"
        return confirmation(messages[-1])

    return last_confirmation


def pytest_sessionstart(session):
    """Services named by the environment are required: fail the run, never skip."""
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            raise pytest.UsageError(f"TEST_REDIS_URL={url} is unreachable: {exc}") from None
    if TEST_DATABASE_URL:
        try:
            engine = sa.create_engine(TEST_DATABASE_URL, connect_args={"connect_timeout": 5})
            with engine.connect():
                pass
            engine.dispose()
        except sa.exc.OperationalError as exc:
            raise pytest.UsageError(
                f"TEST_DATABASE_URL is unreachable: {type(exc.orig).__name__}") from None
