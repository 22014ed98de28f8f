"""Configuration: every contract variable is read at startup; production fails closed."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from itsdangerous import URLSafeTimedSerializer

import config
from regapp import create_app
from regapp.core import tokens
from regapp.core.mail import confirmation_link
from regapp.extensions import db
from tests.conftest import ENV_NAMES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRONG_KEY = "k3y-" + "0123456789abcdef" * 4


@pytest.fixture
def production(env):
    env.setenv("REGAPP_CONFIG", "production")
    env.setenv("SECRET_KEY", STRONG_KEY)
    env.setenv("FRONTEND_URL", "https://accounts.example.org")
    env.setenv("MAIL_SERVER", "localhost")  # production wants both stated explicitly
    env.setenv("MAIL_DEFAULT_SENDER", "Accounts <accounts@example.org>")
    return env


def test_contract_variables_are_all_read():
    for name in ("SECRET_KEY", "DATABASE_URL", "MAIL_SERVER", "MAIL_PORT", "MAIL_USE_TLS",
                 "MAIL_USE_SSL", "MAIL_USERNAME", "MAIL_PASSWORD", "MAIL_DEFAULT_SENDER",
                 "FRONTEND_URL", "CONFIRM_TOKEN_MAX_AGE", "RATELIMIT_ENABLED",
                 "RATELIMIT_STORAGE_URI", "EMAIL_CHECK_DELIVERABILITY"):
        assert name in ENV_NAMES


def test_production_starts_with_good_values(production):
    app = create_app()
    assert app.config["SECRET_KEY"] == STRONG_KEY
    assert app.config["FRONTEND_URL"] == "https://accounts.example.org"
    assert not app.debug and not app.testing
    assert app.config["ARGON2_MEMORY_COST"] == 19456


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("SECRET_KEY", None, "SECRET_KEY"),
    ("SECRET_KEY", "", "SECRET_KEY"),
    ("SECRET_KEY", config.DEV_SECRET_KEY, "SECRET_KEY"),
    ("SECRET_KEY", "x" * 31, "SECRET_KEY"),
    ("FRONTEND_URL", None, "FRONTEND_URL"),
    ("FRONTEND_URL", "", "FRONTEND_URL"),
    ("FRONTEND_URL", "javascript:alert(1)//", "FRONTEND_URL"),
    ("FRONTEND_URL", "//evil.example", "FRONTEND_URL"),
    ("FRONTEND_URL", "ftp://files.example.org", "FRONTEND_URL"),
    ("FRONTEND_URL", "accounts.example.org", "FRONTEND_URL"),
    ("FLASK_DEBUG", "1", "debug"),
    ("ARGON2_MEMORY_COST", "64", "argon2"),
])
def test_production_refuses_unsafe_settings(production, name, value, problem):
    if value is None:
        production.delenv(name)
    else:
        production.setenv(name, value)
    with pytest.raises(RuntimeError, match="refusing to start") as exc:
        create_app()
    assert problem in str(exc.value)
    assert STRONG_KEY not in str(exc.value) and "x" * 31 not in str(exc.value)


def test_production_refuses_debug_from_overrides(production):
    with pytest.raises(RuntimeError, match="debug"):
        create_app({"DEBUG": True})


def test_production_refusal_in_a_real_process(production):
    """What gunicorn's ``wsgi:app`` does: the process exits, the secret is not printed."""
    production.setenv("SECRET_KEY", "short-but-secret")
    result = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert result.returncode != 0
    assert "refusing to start" in result.stderr
    assert "short-but-secret" not in result.stderr + result.stdout


def test_unknown_config_name_is_refused(env):
    env.setenv("REGAPP_CONFIG", "staging")
    with pytest.raises(RuntimeError, match="REGAPP_CONFIG"):
        create_app()


def test_defaults(env):
    env.delenv("DATABASE_URL")
    app = create_app()
    cfg = app.config
    assert cfg["SECRET_KEY"] == config.DEV_SECRET_KEY and cfg["SECRET_KEY_FALLBACKS"] == []
    assert cfg["SQLALCHEMY_DATABASE_URI"] == "sqlite:///" + os.path.join(
        app.instance_path, "regapp.sqlite")
    assert (cfg["MAIL_SERVER"], cfg["MAIL_PORT"]) == ("localhost", 25)
    assert (cfg["MAIL_USE_TLS"], cfg["MAIL_USE_SSL"]) == (False, False)
    assert (cfg["MAIL_USERNAME"], cfg["MAIL_PASSWORD"]) == (None, None)
    assert cfg["FRONTEND_URL"] == "http://127.0.0.1:5000"
    assert cfg["CONFIRM_TOKEN_MAX_AGE"] == 86400
    assert (cfg["RATELIMIT_ENABLED"], cfg["RATELIMIT_STORAGE_URI"]) == (True, "memory://")
    assert cfg["EMAIL_CHECK_DELIVERABILITY"] is False
    assert cfg["MAX_CONTENT_LENGTH"] == 64 * 1024
    assert cfg["TESTING"] is False and app.debug is False


def test_every_contract_variable_reaches_the_app(env):
    values = {
        "SECRET_KEY": STRONG_KEY,
        "SECRET_KEY_FALLBACKS": "old-key-one, old-key-two",
        "MAIL_SERVER": "smtp.internal",
        "MAIL_PORT": "2525",
        "MAIL_USE_TLS": "true",
        "MAIL_USE_SSL": "0",
        "MAIL_USERNAME": "mailer",
        "MAIL_PASSWORD": "mail-secret",
        "MAIL_DEFAULT_SENDER": "Accounts <accounts@example.org>",
        "FRONTEND_URL": "https://app.example.org/base",
        "CONFIRM_TOKEN_MAX_AGE": "3600",
        "RATELIMIT_ENABLED": "off",
        "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0",
        "EMAIL_CHECK_DELIVERABILITY": "yes",
    }
    for name, value in values.items():
        env.setenv(name, value)
    app = create_app()
    cfg = app.config
    assert cfg["SQLALCHEMY_DATABASE_URI"] == os.environ["DATABASE_URL"]
    assert cfg["SECRET_KEY"] == STRONG_KEY
    assert cfg["SECRET_KEY_FALLBACKS"] == ["old-key-one", "old-key-two"]
    assert (cfg["MAIL_SERVER"], cfg["MAIL_PORT"], cfg["MAIL_USE_TLS"], cfg["MAIL_USE_SSL"]) == (
        "smtp.internal", 2525, True, False)
    assert (cfg["MAIL_USERNAME"], cfg["MAIL_PASSWORD"]) == ("mailer", "mail-secret")
    assert cfg["MAIL_DEFAULT_SENDER"] == "Accounts <accounts@example.org>"
    assert cfg["CONFIRM_TOKEN_MAX_AGE"] == 3600
    assert (cfg["RATELIMIT_ENABLED"], cfg["RATELIMIT_STORAGE_URI"]) == (
        False, "redis://127.0.0.1:6379/0")
    assert cfg["EMAIL_CHECK_DELIVERABILITY"] is True
    with app.app_context():
        assert db.engine.url.render_as_string() == os.environ["DATABASE_URL"]
        link = confirmation_link("abc.def")
        assert link == "https://app.example.org/base/confirm-email/?token_id=abc.def"
        # Tokens are signed with SECRET_KEY and live CONFIRM_TOKEN_MAX_AGE seconds.
        token = tokens.make_confirm_token(SimpleNamespace(id=1, email_key="a@b.org"))
        URLSafeTimedSerializer(STRONG_KEY, salt=tokens.CONFIRM_SALT).loads(token, max_age=3600)
        db.engine.dispose()


@pytest.mark.parametrize(("raw", "expected"), [
    ("1", True), ("true", True), ("YES", True), ("on", True),
    ("0", False), ("false", False), ("no", False), ("off", False), ("", True),
])
def test_boolean_variables(env, raw, expected):
    env.setenv("RATELIMIT_ENABLED", raw)  # "" means unset: the default (on)
    assert create_app().config["RATELIMIT_ENABLED"] is expected


def test_environment_is_read_when_the_app_is_built(env):
    env.setenv("MAIL_PORT", "2525")
    first = create_app()
    env.setenv("MAIL_PORT", "2626")
    second = create_app()
    assert (first.config["MAIL_PORT"], second.config["MAIL_PORT"]) == (2525, 2626)


def test_testing_config_keeps_its_own_values(env):
    env.setenv("REGAPP_CONFIG", "testing")
    env.setenv("SECRET_KEY", STRONG_KEY)
    app = create_app()
    assert app.testing is True
    assert app.config["SECRET_KEY"] == config.TestingConfig.SECRET_KEY != STRONG_KEY
    assert app.config["ARGON2_MEMORY_COST"] == 64


def test_request_body_limit(client):
    body = {"username": "u", "email": "u@example.com", "password": "x" * (65 * 1024)}
    response = client.post("/api/register/", json=body)
    assert response.status_code == 413
    assert response.is_json
