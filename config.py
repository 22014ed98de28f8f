"""Configuration classes; every value of the contract is read from the environment."""

import os

DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"


def as_bool(value, default=False):
    """Read an environment flag such as ``MAIL_USE_TLS=1`` or ``true``."""
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def as_int(value, default):
    """Read an integer environment value, falling back to ``default`` when unset."""
    if value is None or value == "":
        return default
    return int(value)


def as_list(value):
    """Read a comma-separated environment value into a list of stripped items."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


class Config:
    """Defaults shared by every environment, overridable through ``os.environ``."""

    env = os.environ

    SECRET_KEY = env.get("SECRET_KEY", DEV_SECRET_KEY)
    SECRET_KEY_FALLBACKS = as_list(env.get("SECRET_KEY_FALLBACKS"))
    # None means "an SQLite file in the instance folder", filled in by create_app.
    SQLALCHEMY_DATABASE_URI = env.get("DATABASE_URL") or None
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}

    MAIL_SERVER = env.get("MAIL_SERVER", "localhost")
    MAIL_PORT = as_int(env.get("MAIL_PORT"), 25)
    MAIL_USE_TLS = as_bool(env.get("MAIL_USE_TLS"))
    MAIL_USE_SSL = as_bool(env.get("MAIL_USE_SSL"))
    MAIL_USERNAME = env.get("MAIL_USERNAME") or None
    MAIL_PASSWORD = env.get("MAIL_PASSWORD") or None
    MAIL_DEFAULT_SENDER = env.get("MAIL_DEFAULT_SENDER", "regapp <no-reply@localhost>")
    MAIL_SUPPRESS_SEND = False
    # Flask-Mail sets no socket timeout and does not verify TLS certificates;
    # regapp's outbox connection adds both.
    MAIL_TIMEOUT = as_int(env.get("MAIL_TIMEOUT"), 30)
    MAIL_TLS_VERIFY = as_bool(env.get("MAIL_TLS_VERIFY"), True)
    MAIL_MAX_ATTEMPTS = as_int(env.get("MAIL_MAX_ATTEMPTS"), 12)
    MAIL_MAX_PERMANENT_ATTEMPTS = as_int(env.get("MAIL_MAX_PERMANENT_ATTEMPTS"), 3)
    MAIL_RETRY_BASE = as_int(env.get("MAIL_RETRY_BASE"), 5)
    MAIL_RETRY_MAX = as_int(env.get("MAIL_RETRY_MAX"), 3600)
    MAIL_POLL_INTERVAL = as_int(env.get("MAIL_POLL_INTERVAL"), 5)
    # A claimed row whose sender died is retried after this many seconds;
    # it must exceed MAIL_TIMEOUT times the number of SMTP round trips.
    MAIL_CLAIM_LEASE = as_int(env.get("MAIL_CLAIM_LEASE"), 300)
    OUTBOX_AUTOSTART = as_bool(env.get("OUTBOX_AUTOSTART"), True)

    FRONTEND_URL = env.get("FRONTEND_URL", "http://127.0.0.1:5000")
    CONFIRM_TOKEN_MAX_AGE = as_int(env.get("CONFIRM_TOKEN_MAX_AGE"), 86400)
    CONFIRM_CODE_MAX_ATTEMPTS = 5
    CONFIRM_CODE_LIFETIME_CAP = 20
    RESEND_COOLDOWN = as_int(env.get("RESEND_COOLDOWN"), 60)

    RATELIMIT_ENABLED = as_bool(env.get("RATELIMIT_ENABLED"), True)
    RATELIMIT_STORAGE_URI = env.get("RATELIMIT_STORAGE_URI", "memory://")
    RATELIMIT_HEADERS_ENABLED = True

    EMAIL_CHECK_DELIVERABILITY = as_bool(env.get("EMAIL_CHECK_DELIVERABILITY"))
    REGAPP_PROFILES = as_list(
        env.get("REGAPP_PROFILES", "drf,envelope,laravel,jsonapi,jwt")
    )

    MAX_CONTENT_LENGTH = as_int(env.get("MAX_CONTENT_LENGTH"), 64 * 1024)
    # argon2id at the OWASP ASVS 5.0 Appendix C minimum row (t=2, m=19 MiB, p=1).
    ARGON2_TIME_COST = as_int(env.get("ARGON2_TIME_COST"), 2)
    ARGON2_MEMORY_COST = as_int(env.get("ARGON2_MEMORY_COST"), 19456)
    ARGON2_PARALLELISM = as_int(env.get("ARGON2_PARALLELISM"), 1)

    @classmethod
    def init_app(cls, app):
        """Hook for environment-specific checks once the app is configured."""


class DevelopmentConfig(Config):
    """`make run`: SQLite in the instance folder, mail to a local sink."""

    DEBUG = False


class TestingConfig(Config):
    """The test suite: cheap password hashing, no background thread, fast retries."""

    TESTING = True
    SECRET_KEY = "testing-secret-key-with-enough-entropy-0123456789"
    SECRET_KEY_FALLBACKS = []
    SQLALCHEMY_DATABASE_URI = None
    OUTBOX_AUTOSTART = False
    RATELIMIT_ENABLED = False
    RATELIMIT_STORAGE_URI = "memory://"
    MAIL_SERVER = "127.0.0.1"
    MAIL_TIMEOUT = 5
    MAIL_RETRY_BASE = 0
    RESEND_COOLDOWN = 0
    FRONTEND_URL = "http://127.0.0.1:5000"
    ARGON2_TIME_COST = 1
    ARGON2_MEMORY_COST = 64
    ARGON2_PARALLELISM = 1


class ProductionConfig(Config):
    """Production: refuses to start on unsafe settings."""

    @classmethod
    def init_app(cls, app):
        problems = []
        secret = app.config.get("SECRET_KEY") or ""
        if secret == DEV_SECRET_KEY or len(secret) < 32:
            problems.append("SECRET_KEY must be set to a random value of 32+ characters")
        if not os.environ.get("FRONTEND_URL"):
            problems.append("FRONTEND_URL must be set")
        elif not app.config["FRONTEND_URL"].startswith(("http://", "https://")):
            problems.append("FRONTEND_URL must be an http(s) URL")
        if app.debug:
            problems.append("debug must be off")
        if (
            app.config["ARGON2_TIME_COST"] < 2
            or app.config["ARGON2_MEMORY_COST"] < 19456
            or app.config["ARGON2_PARALLELISM"] < 1
        ):
            problems.append("argon2 parameters are below t=2, m=19456 KiB, p=1")
        if problems:
            raise RuntimeError("refusing to start: " + "; ".join(problems))


config = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}
