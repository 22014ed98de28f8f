"""Configuration classes; every value of the contract is read from the environment."""

import ipaddress
import os
from urllib.parse import urlsplit

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


def as_list(value, default=""):
    """Read a comma-separated environment value into a list of stripped items."""
    if value is None:
        value = default
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def as_str(value, default=None):
    """Read a string environment value; unset or empty means ``default``."""
    return value or default


def is_base_url(value):
    """True for an http(s) URL with a host and nothing that breaks the emailed link:
    no user info (``https://good@evil``), no query (a trailing ``?`` is fine)."""
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        return False
    parts = urlsplit(value.rstrip("?"))
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname)
            and "@" not in parts.netloc and not parts.query)


def is_loopback(host):
    """True when ``host`` is this machine (no DNS lookup)."""
    host = (host or "").strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Env:
    """A setting read from ``os.environ`` when an app is configured, not at import,
    so every ``create_app`` (and every test) sees the environment as it is now."""

    def __init__(self, name, default=None, parse=None):
        self.name = name
        self.default = default
        self.parse = parse

    def __get__(self, instance, owner):
        value = os.environ.get(self.name)
        if self.parse is not None:
            return self.parse(value, self.default)
        return self.default if value is None else value


class Config:
    """Defaults shared by every environment, overridable through ``os.environ``."""

    SECRET_KEY = Env("SECRET_KEY", DEV_SECRET_KEY)
    SECRET_KEY_FALLBACKS = Env("SECRET_KEY_FALLBACKS", "", as_list)
    # None means "an SQLite file in the instance folder", filled in by create_app.
    SQLALCHEMY_DATABASE_URI = Env("DATABASE_URL", None, as_str)
    # hide_parameters: SQL logging or an error's text never shows bound values
    # (outbox bodies hold confirmation links and codes). No pool_pre_ping: a
    # "SELECT 1" round trip on every checkout cost ~14 % of a sign-up under load;
    # regapp.core.database pings only connections that sat idle in the pool.
    SQLALCHEMY_ENGINE_OPTIONS = {"hide_parameters": True}

    MAIL_SERVER = Env("MAIL_SERVER", "localhost")
    MAIL_PORT = Env("MAIL_PORT", 25, as_int)
    MAIL_USE_TLS = Env("MAIL_USE_TLS", False, as_bool)
    MAIL_USE_SSL = Env("MAIL_USE_SSL", False, as_bool)
    MAIL_USERNAME = Env("MAIL_USERNAME", None, as_str)
    MAIL_PASSWORD = Env("MAIL_PASSWORD", None, as_str)
    MAIL_DEFAULT_SENDER = Env("MAIL_DEFAULT_SENDER", "regapp <no-reply@localhost>")
    # smtplib's defaults set no socket timeout and do not verify TLS certificates;
    # regapp's outbox connection adds both.
    MAIL_TIMEOUT = Env("MAIL_TIMEOUT", 30, as_int)
    MAIL_TLS_VERIFY = Env("MAIL_TLS_VERIFY", True, as_bool)
    MAIL_MAX_ATTEMPTS = Env("MAIL_MAX_ATTEMPTS", 12, as_int)
    MAIL_MAX_PERMANENT_ATTEMPTS = Env("MAIL_MAX_PERMANENT_ATTEMPTS", 3, as_int)
    MAIL_RETRY_BASE = Env("MAIL_RETRY_BASE", 5, as_int)
    MAIL_RETRY_MAX = Env("MAIL_RETRY_MAX", 3600, as_int)
    MAIL_POLL_INTERVAL = Env("MAIL_POLL_INTERVAL", 5, as_int)
    # A claimed row whose sender died is retried after this many seconds (at once
    # when the sender was a process of this host that is gone). A batch renews its
    # claims every third of this while it is being sent, and gives back what it has
    # not sent after half of it.
    MAIL_CLAIM_LEASE = Env("MAIL_CLAIM_LEASE", 10, as_int)
    OUTBOX_AUTOSTART = Env("OUTBOX_AUTOSTART", True, as_bool)

    FRONTEND_URL = Env("FRONTEND_URL", "http://127.0.0.1:5000")
    CONFIRM_TOKEN_MAX_AGE = Env("CONFIRM_TOKEN_MAX_AGE", 86400, as_int)
    CONFIRM_CODE_MAX_ATTEMPTS = 5
    CONFIRM_CODE_LIFETIME_CAP = 20
    # A refused code is answered after at least this long: the wrong-guess counter a
    # pending account commits would otherwise show in the latency (SECURITY.md B9).
    CONFIRM_CODE_MIN_SECONDS = 0.05
    RESEND_COOLDOWN = Env("RESEND_COOLDOWN", 60, as_int)
    # simplejwt's defaults: 5-minute access tokens, 1-day refresh tokens.
    JWT_ACCESS_LIFETIME = Env("JWT_ACCESS_LIFETIME", 300, as_int)
    JWT_REFRESH_LIFETIME = Env("JWT_REFRESH_LIFETIME", 86400, as_int)

    # Wrong passwords per account per hour after which only logins that carry a
    # device token of that account are evaluated (SECURITY.md, login throttling).
    LOGIN_LOCK_THRESHOLD = Env("LOGIN_LOCK_THRESHOLD", 100, as_int)
    PASSWORD_RESET_MAX_AGE = Env("PASSWORD_RESET_MAX_AGE", 3600, as_int)
    RESET_CODE_MAX_ATTEMPTS = 5
    RESET_CODE_LIFETIME_CAP = 20
    # Wrong reset codes per hour, service-wide, above which codes are refused
    # (links keep working) and an ERROR is logged.
    RESET_CODE_GLOBAL_CEILING = Env("RESET_CODE_GLOBAL_CEILING", 1000, as_int)
    # Per address: the reset and the duplicate-sign-up mail each have their own.
    RESET_MAIL_COOLDOWN = Env("RESET_MAIL_COOLDOWN", 60, as_int)
    DUPLICATE_MAIL_COOLDOWN = Env("DUPLICATE_MAIL_COOLDOWN", 60, as_int)
    SECURITY_MAIL_DAILY_CAP = Env("SECURITY_MAIL_DAILY_CAP", 5, as_int)

    RATELIMIT_ENABLED = Env("RATELIMIT_ENABLED", True, as_bool)
    RATELIMIT_STORAGE_URI = Env("RATELIMIT_STORAGE_URI", "memory://")
    # Off: Flask-Limiter would stamp Retry-After on every 2xx and rewrite the
    # 429's own value; regapp.auth.limits sets an exact Retry-After on 429s.
    RATELIMIT_HEADERS_ENABLED = False
    RATELIMIT_KEY_PREFIX = Env("RATELIMIT_KEY_PREFIX", "regapp")
    # Storage down (Redis): fail open to per-process in-memory counters, log an
    # error, never answer 500 (regapp.auth.limits, README "Rate limits").
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = Env("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True,
                                               as_bool)
    RATELIMIT_SWALLOW_ERRORS = Env("RATELIMIT_SWALLOW_ERRORS", True, as_bool)
    RATELIMIT_STORAGE_TIMEOUT = Env("RATELIMIT_STORAGE_TIMEOUT", 1, as_int)
    # limits strings ("10/minute;100/day"); an empty value switches that limit off.
    RATELIMIT_REGISTRATION = Env("RATELIMIT_REGISTRATION", "10/minute;100/day")
    RATELIMIT_CONFIRMATION = Env("RATELIMIT_CONFIRMATION", "20/minute")
    RATELIMIT_CONFIRMATION_PER_EMAIL = Env("RATELIMIT_CONFIRMATION_PER_EMAIL", "10/minute")
    RATELIMIT_RESEND = Env("RATELIMIT_RESEND", "5/minute;50/day")
    RATELIMIT_TOKEN = Env("RATELIMIT_TOKEN", "10/minute")
    RATELIMIT_TOKEN_PER_IDENTIFIER = Env("RATELIMIT_TOKEN_PER_IDENTIFIER", "10/minute")
    # Reverse proxies in front of the app whose X-Forwarded-For is trusted; 0 = none.
    TRUSTED_PROXY_COUNT = Env("TRUSTED_PROXY_COUNT", 0, as_int)

    # A k-anonymity range API (Have I Been Pwned's shape) for breached passwords;
    # empty: off. Fails open (2 s timeout) with a warning in the log.
    PASSWORD_BREACH_CHECK_URL = Env("PASSWORD_BREACH_CHECK_URL", "")
    EMAIL_CHECK_DELIVERABILITY = Env("EMAIL_CHECK_DELIVERABILITY", False, as_bool)
    # Empty: every profile found (regapp/auth/profiles/ and REGAPP_PROFILE_MODULES).
    REGAPP_PROFILES = Env("REGAPP_PROFILES", "", as_list)
    # Modules (dotted names) declaring more profiles, each with a module-level PROFILE.
    REGAPP_PROFILE_MODULES = Env("REGAPP_PROFILE_MODULES", "", as_list)

    MAX_CONTENT_LENGTH = Env("MAX_CONTENT_LENGTH", 64 * 1024, as_int)
    # argon2id at the OWASP ASVS 5.0 Appendix C minimum row (t=2, m=19 MiB, p=1).
    ARGON2_TIME_COST = Env("ARGON2_TIME_COST", 2, as_int)
    ARGON2_MEMORY_COST = Env("ARGON2_MEMORY_COST", 19456, as_int)
    ARGON2_PARALLELISM = Env("ARGON2_PARALLELISM", 1, as_int)

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
    TRUSTED_PROXY_COUNT = 0
    MAIL_SERVER = "127.0.0.1"
    MAIL_TIMEOUT = 5
    MAIL_RETRY_BASE = 0
    RESEND_COOLDOWN = 0
    CONFIRM_CODE_MIN_SECONDS = 0  # fast tests; tests/security/test_c_enumeration.py sets it
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
        elif not is_base_url(app.config["FRONTEND_URL"]):
            problems.append("FRONTEND_URL must be an http(s) URL with a host, "
                            "no user info and no query")
        if not app.config["MAIL_TLS_VERIFY"] and not is_loopback(app.config["MAIL_SERVER"]):
            # An unverified certificate lets anyone on the path read the mail (links, codes).
            problems.append("MAIL_TLS_VERIFY may be off only for a mail server on this machine")
        if app.debug:
            problems.append("debug must be off")
        if (
            app.config["ARGON2_TIME_COST"] < 2
            or app.config["ARGON2_MEMORY_COST"] < 19456
            or app.config["ARGON2_PARALLELISM"] < 1
        ):
            problems.append("argon2 parameters are below t=2, m=19456 KiB, p=1")
        if app.config["RATELIMIT_ENABLED"] and app.config["RATELIMIT_STORAGE_URI"].startswith(
                "memory://"):
            app.logger.warning("RATELIMIT_STORAGE_URI=memory:// counts per worker process, "
                               "so each limit is multiplied by the number of workers; "
                               "use redis:// in production")
        if problems:
            raise RuntimeError("refusing to start: " + "; ".join(problems))


config = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}
