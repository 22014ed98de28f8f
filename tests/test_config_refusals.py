"""Configuration fails closed: every refused value is one line that names the variable
and says what is accepted, from create_app, `flask ...`, `import wsgi` and gunicorn."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError
from regapp import create_app
from regapp.extensions import db
from tests.conftest import ENV_NAMES
from tests.serverkit import Server
from tests.serverkit import ServerError
from tests.smtp import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STRONG_KEY = "r3fusal-" + "0123456789abcdef" * 3


@pytest.fixture
def production(env):
    for name, value in {"REGAPP_CONFIG": "production", "SECRET_KEY": STRONG_KEY,
                        "FRONTEND_URL": "https://accounts.example.org",
                        "MAIL_SERVER": "localhost",
                        "MAIL_DEFAULT_SENDER": "Accounts <accounts@example.org>"}.items():
        env.setenv(name, value)
    return env


def clean_env(**values) -> dict:
    """This process's environment without regapp's settings, plus ``values``."""
    out = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    out.update({k: str(v) for k, v in values.items()})
    return out


REFUSED = [
    ("RATELIMIT_ENABLED", "ture", "true/false, 1/0, yes/no or on/off"),
    ("MAIL_USE_TLS", "yes-please", "true/false, 1/0, yes/no or on/off"),
    ("EMAIL_CHECK_DELIVERABILITY", "2", "true/false"),
    ("MAIL_PORT", "abc", "a whole number from 1 to 65535"),
    ("MAIL_PORT", "0", "a whole number from 1 to 65535"),
    ("MAIL_PORT", "70000", "a whole number from 1 to 65535"),
    ("MAIL_PORT", "25.5", "a whole number"),
    ("JWT_ACCESS_LIFETIME", "-5", "a whole number >= 1"),
    ("JWT_REFRESH_LIFETIME", "0", "a whole number >= 1"),
    ("CONFIRM_TOKEN_MAX_AGE", "0", "a whole number >= 1"),
    ("TRUSTED_PROXY_COUNT", "-1", "a whole number from 0 to 10"),
    ("MAIL_TIMEOUT", "1e3", "a whole number"),
    ("REGAPP_PROFILES", ",", "comma-separated list of names"),
    ("REGAPP_PROFILES", " , ,", "comma-separated list of names"),
    ("REGAPP_PROFILES", "drf,jsonap", "drf, envelope, jsonapi, jwt, laravel"),
    ("REGAPP_CONFIG", "staging", "development, testing, production"),
    ("LOG_FORMAT", "xml", "text, json"),
    ("DATABASE_URL", "not a url", "postgresql+psycopg://"),
    ("MAIL_DEFAULT_SENDER", "nobody", "accounts@example.org"),
    ("MAIL_LOGO_URL", "javascript:alert(1)", "http(s) URL"),
    ("MAIL_SUPPORT_ADDRESS", "help desk", "accounts@example.org"),
    ("RATELIMIT_REGISTRATION", "ten a minute", "10/minute;100/day"),
    ("CORS_ORIGINS", "*", "scheme://host[:port]"),
    ("CORS_ORIGINS", "http://localhost:3000/app", "no path"),
    ("RATELIMIT_STORAGE_URI", "bogus://", "memory://, redis://, rediss://, redis+unix://"),
    ("RATELIMIT_STORAGE_URI", "memcached://127.0.0.1:11211", "memory://, redis://"),
    ("REGAPP_PROFILE_MODULES", "no.such.mod", "No module named 'no'"),
    ("REGAPP_PROFILE_MODULES", "json", "declares no PROFILE"),
    ("DATABASE_URL", "mysql://x/y", "sqlite or postgresql only"),
    ("DATABASE_URL", "oracle+cx_oracle://u@h/db", "sqlite or postgresql only"),
    ("MAX_CONTENT_LENGTH", "99999999999999999", "a whole number from 1024 to 10485760"),
    ("MAX_CONTENT_LENGTH", "10485761", "a whole number from 1024 to 10485760"),
]


@pytest.mark.parametrize(("name", "value", "accepted"), REFUSED)
def test_refused_values_name_the_variable_and_what_is_accepted(env, name, value, accepted):
    env.setenv(name, value)
    with pytest.raises(ConfigError) as exc:
        create_app()
    message = exc.value.format_message()
    assert name in message and accepted in message
    assert "\n" not in message
    assert isinstance(exc.value, RuntimeError)  # callers catching RuntimeError still do


@pytest.mark.parametrize(("name", "raw", "expected"), [
    ("MAIL_USE_TLS", "On", True), ("MAIL_USE_TLS", " NO ", False),
    ("MAIL_PORT", " 587 ", 587), ("TRUSTED_PROXY_COUNT", "0", 0),
    ("LOG_FORMAT", "JSON", "json"), ("REGAPP_PROFILES", "drf, jwt", ["drf", "jwt"]),
])
def test_accepted_spellings(env, name, raw, expected):
    env.setenv(name, raw)
    key = {"REGAPP_PROFILES": "REGAPP_PROFILES"}.get(name, name)
    assert create_app().config[key] == expected


def test_secrets_are_never_repeated_in_a_refusal(env):
    env.setenv("DATABASE_URL", "postgres ://admin:hunter2@db")
    with pytest.raises(ConfigError) as exc:
        create_app()
    assert "DATABASE_URL" in str(exc.value) and "hunter2" not in str(exc.value)


def test_storage_uri_is_never_repeated_in_a_refusal(env):
    env.setenv("RATELIMIT_STORAGE_URI", "bogus://admin:hunter2@127.0.0.1:6379")
    with pytest.raises(ConfigError) as exc:
        create_app()
    assert "RATELIMIT_STORAGE_URI" in str(exc.value) and "hunter2" not in str(exc.value)


@pytest.mark.parametrize("uri", ["memory://", "redis://127.0.0.1:6379/0",
                                 "rediss://:pw@127.0.0.1:6380/0", "redis+unix:///run/r.sock"])
def test_supported_storage_uris_are_accepted(env, uri):
    env.setenv("RATELIMIT_STORAGE_URI", uri)
    env.setenv("RATELIMIT_ENABLED", "false")  # no connection is made
    assert create_app().config["RATELIMIT_STORAGE_URI"] == uri


def test_an_unsupported_database_given_to_create_app_is_refused_too():
    with pytest.raises(ConfigError, match="DATABASE_URL is not accepted: expected sqlite or "
                                          "postgresql only"):
        create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "mysql://u:pw@127.0.0.1/db"})


def test_the_largest_body_limit_is_accepted(env):
    env.setenv("MAX_CONTENT_LENGTH", str(10 * 1024 * 1024))
    assert create_app().config["MAX_CONTENT_LENGTH"] == 10 * 1024 * 1024


def test_tls_and_ssl_together_are_refused(env):
    env.setenv("MAIL_USE_TLS", "1")
    env.setenv("MAIL_USE_SSL", "true")
    with pytest.raises(ConfigError, match="MAIL_USE_TLS and MAIL_USE_SSL are both on"):
        create_app()


def test_tls_and_ssl_from_overrides_are_refused_too():
    with pytest.raises(ConfigError, match="MAIL_USE_TLS and MAIL_USE_SSL"):
        create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://",
                    "MAIL_USE_TLS": True, "MAIL_USE_SSL": True})


@pytest.mark.parametrize("name", ["DATABASE_URL", "MAIL_SERVER", "MAIL_DEFAULT_SENDER"])
def test_production_requires_where_data_and_mail_go(production, name):
    production.delenv(name)
    with pytest.raises(ConfigError, match=f"refusing to start: {name} must be set"):
        create_app()


def test_production_accepts_a_local_relay_set_on_purpose(production):
    production.setenv("MAIL_SERVER", "127.0.0.1")
    production.setenv("MAIL_PORT", "25")
    app = create_app()
    assert (app.config["MAIL_SERVER"], app.config["MAIL_PORT"]) == ("127.0.0.1", 25)
    assert app.config["MAIL_DEFAULT_SENDER"] == "Accounts <accounts@example.org>"


def test_development_keeps_its_defaults(env):
    env.delenv("DATABASE_URL")
    app = create_app()
    assert app.config["MAIL_SERVER"] == "localhost"
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")


@pytest.mark.parametrize("given", ["postgres://u:p@127.0.0.1:5432/app",
                                   "postgresql://u:p@127.0.0.1:5432/app"])
def test_postgres_urls_use_psycopg(env, given):
    env.setenv("DATABASE_URL", given)
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@127.0.0.1:5432/app"
    with app.app_context():
        assert db.engine.url.drivername == "postgresql+psycopg"
        db.engine.dispose()


def test_every_setting_is_in_the_readme_configuration_table():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    missing = sorted(set(ENV_NAMES) - {"FLASK_DEBUG"} - listed)
    assert missing == [], f"settings missing from README.md's configuration table: {missing}"


# -- real processes: one line, exit status != 0, no traceback ---------------------------------

def assert_one_line_refusal(result_err: str, name: str):
    lines = [line for line in result_err.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("Error: ") and name in lines[0], (
        result_err)
    assert "Traceback" not in result_err


@pytest.mark.parametrize(("argv", "name", "value"), [
    ([sys.executable, "-c", "import wsgi"], "MAIL_PORT", "abc"),
    ([str(BIN / "flask"), "--app", "regapp", "users", "list"], "RATELIMIT_ENABLED", "ture"),
    ([str(BIN / "flask"), "--app", "regapp", "db", "upgrade"], "REGAPP_PROFILES", ","),
    # Refused while the app is built (CORS, rate limits, profiles, the engine), not
    # only while the settings are read: the same one line.
    ([sys.executable, "-c", "import wsgi"], "CORS_ORIGINS", "*"),
    ([str(BIN / "flask"), "--app", "regapp", "routes"], "CORS_ORIGINS", "http://a.example/p"),
    ([sys.executable, "-c", "import wsgi"], "RATELIMIT_STORAGE_URI", "bogus://"),
    ([str(BIN / "flask"), "--app", "regapp", "users", "list"], "RATELIMIT_STORAGE_URI",
     "bogus://"),
    ([sys.executable, "-c", "import wsgi"], "REGAPP_PROFILE_MODULES", "no.such.mod"),
    ([str(BIN / "flask"), "--app", "regapp", "db", "upgrade"], "REGAPP_PROFILE_MODULES",
     "no.such.mod"),
    ([sys.executable, "-c", "import wsgi"], "DATABASE_URL", "mysql://x/y"),
    ([str(BIN / "flask"), "--app", "regapp", "db", "upgrade"], "DATABASE_URL", "mysql://x/y"),
    ([sys.executable, "-c", "import wsgi"], "MAX_CONTENT_LENGTH", "99999999999999999"),
])
def test_refusal_in_a_real_process(tmp_path, argv, name, value):
    env = clean_env(**{"DATABASE_URL": f"sqlite:///{tmp_path / 'p.sqlite'}", name: value})
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    # flask: 1 (a click error); import wsgi: 4 (gunicorn's "App failed to load")
    assert result.returncode == (4 if "import wsgi" in argv else 1)
    assert_one_line_refusal(result.stderr, name)
    assert not (tmp_path / "p.sqlite").exists()


def test_production_refusal_in_a_real_process_lists_every_problem(tmp_path):
    env = clean_env(REGAPP_CONFIG="production", SECRET_KEY=STRONG_KEY,
                    FRONTEND_URL="https://accounts.example.org")
    result = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 4
    assert_one_line_refusal(result.stderr, "DATABASE_URL")
    for name in ("MAIL_SERVER", "MAIL_DEFAULT_SENDER"):
        assert f"{name} must be set" in result.stderr
    assert STRONG_KEY not in result.stderr


def test_dotenv_is_read_like_flask_does(tmp_path):
    """A ``.env`` in the working directory reaches wsgi.py (python-dotenv)."""
    (tmp_path / ".env").write_text("MAIL_PORT=abc\n")
    env = clean_env(PYTHONPATH=str(ROOT), DATABASE_URL=f"sqlite:///{tmp_path / 'p.sqlite'}")
    result = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert_one_line_refusal(result.stderr, "MAIL_PORT")
    # The environment wins over the file.
    env["MAIL_PORT"] = "2525"
    show_port = "import wsgi; print(wsgi.app.config['MAIL_PORT'])"
    result = subprocess.run([sys.executable, "-c", show_port], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2525"


@pytest.mark.parametrize(("name", "value", "line"), [
    ("MAIL_USE_TLS", "yes-please", "Error: MAIL_USE_TLS='yes-please' is not accepted: "
                                   "expected true/false, 1/0, yes/no or on/off"),
    ("CORS_ORIGINS", "*", "Error: CORS_ORIGINS='*' is not accepted: expected exact origins "
                          "scheme://host[:port], comma-separated (http or https, no path, "
                          "no trailing slash, no wildcard)"),
    ("REGAPP_PROFILE_MODULES", "no.such.mod",
     "Error: REGAPP_PROFILE_MODULES='no.such.mod' is not accepted: cannot import it "
     "(No module named 'no'); expected dotted names of importable modules that each "
     "declare PROFILE"),
])
def test_gunicorn_stops_with_one_line(tmp_path, name, value, line):
    server = Server(f"sqlite:///{tmp_path / 'g.sqlite'}", mail_port=free_port(),
                    log_dir=tmp_path, workers=1, upgrade=False, env={name: value})
    with pytest.raises(ServerError, match="gunicorn exited early"):
        server.start(timeout=30)
    assert server.proc.returncode == 4  # gunicorn's "App failed to load": no restart loop
    log = server.log()
    refusals = [line for line in log.splitlines() if line.startswith("Error: ")]
    assert refusals == [line]
    assert "Traceback" not in log and "App failed to load" in log


# -- an unmigrated database ---------------------------------------------------------------

@pytest.mark.parametrize(("path", "body", "content_type", "expected"), [
    ("/api/register/", {"username": "ada", "email": "ada@example.com",
                        "password": "Str0ng-passphrase"}, "application/json",
     {"detail": "Service temporarily unavailable, try again later."}),
    ("/api/users/register", {"first_name": "Ada", "last_name": "Lovelace",
                             "email": "ada@example.com", "postal_code": "1234 AB",
                             "password": "Str0ng-passphrase"},
     "application/json", {"message": "Service Unavailable"}),
])
def test_unmigrated_database_answers_503_and_says_what_to_do(env, caplog, path, body,
                                                              content_type, expected):
    app = create_app()  # DATABASE_URL points at an empty file: no tables
    caplog.set_level(logging.INFO)
    r = app.test_client().post(path, json=body, headers={"Content-Type": content_type})
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert r.get_json() == expected
    assert "run `flask db upgrade`" in caplog.text
    assert "ada@example.com" not in caplog.text and "Str0ng-passphrase" not in caplog.text
    with app.app_context():
        db.engine.dispose()


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="needs TEST_DATABASE_URL")
def test_unmigrated_postgresql_answers_503_and_says_what_to_do(caplog):
    """PostgreSQL's 'relation "users" does not exist' becomes the same 503 and hint."""
    from tests.serverkit import PostgresDatabase  # noqa: PLC0415

    with PostgresDatabase("regapp_unmigrated") as url:
        app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
        client = app.test_client()
        r = client.post("/api/sign-up/", json={"username": "ada", "email": "ada@example.com",
                                               "password": "Str0ng-passphrase"})
        assert r.status_code == 503
        assert r.get_json() == {"detail": "Service temporarily unavailable, try again later."}
        assert "run `flask db upgrade`" in caplog.text
        r = client.get("/readyz")
        assert r.status_code == 503 and r.get_json()["database"] == "not migrated"
        with app.app_context():
            db.engine.dispose()
