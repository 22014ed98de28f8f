"""Configuration classes; every value of the contract is read from the environment.

Settings are declared as typed ``Env`` descriptors on the classes below and read
when an app is configured. A value that does not parse, or is out of range, stops
the app with a :class:`ConfigError`: one line that names the variable and says
what is accepted (``flask`` prints it as ``Error: ...``, ``wsgi.py`` prints it and
exits, so gunicorn halts with "App failed to load").

Declaring a new setting (and listing it in README.md's configuration table, which
tests/test_config.py checks)::

    FOO_ENABLED = Bool("FOO_ENABLED", False)
    FOO_LIFETIME = Int("FOO_LIFETIME", 3600, min=1)          # seconds
    FOO_PORT = Int("FOO_PORT", 25, min=1, max=65535)
    FOO_MODE = Choice("FOO_MODE", "text", ("text", "json"))
    FOO_URL = Url("FOO_URL", "")                             # http(s) URL or empty
    FOO_NAMES = List("FOO_NAMES", "")                        # comma-separated
    FOO_NAME = Str("FOO_NAME", "regapp")
    FOO_TOKEN = Str("FOO_TOKEN", None, secret=True)          # never echoed in an error

Checks that involve several settings go in ``Config.validate`` (all environments)
or ``ProductionConfig.validate``; they append to ``problems``.
"""

import ipaddress
import os
from urllib.parse import urlsplit

import click

DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
BOOL_ACCEPTED = "true/false, 1/0, yes/no or on/off"
LOG_FORMATS = ("text", "json")


class ConfigError(click.ClickException, RuntimeError):
    """A setting regapp refuses; its message is one line naming the variable.

    A ``click.ClickException``, so ``flask ...`` prints ``Error: <line>`` and exits 1
    without a traceback; a ``RuntimeError`` for callers that catch those.
    """

    exit_code = 1


class ConfigValueError(ConfigError, ValueError):
    """A refused value where callers expect a ValueError (rate-limit strings)."""


def as_bool(value, default=False):
    """Read an environment flag: ``true/false``, ``1/0``, ``yes/no``, ``on/off``
    (any case); unset or empty is ``default``; anything else is a ValueError."""
    if value is None or value.strip() == "":
        return default
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"expected {BOOL_ACCEPTED}")


def as_int(value, default):
    """Read an integer environment value, falling back to ``default`` when unset."""
    if value is None or value.strip() == "":
        return default
    text = value.strip()
    if not text.lstrip("+-").isascii() or not text.lstrip("+-").isdigit():
        raise ValueError("expected a whole number")
    return int(text)


def as_list(value, default=""):
    """Read a comma-separated environment value into a list of stripped items."""
    if value is None:
        value = default
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def as_str(value, default=None):
    """Read a string environment value; unset or empty means ``default``."""
    return value or default


def database_url(value: str | None) -> str | None:
    """``postgres://`` and driver-less ``postgresql://`` (Heroku-style, libpq) mean
    psycopg 3, the driver regapp ships; anything else is left as given."""
    if not value:
        return value
    for prefix in ("postgres://", "postgresql://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value[len(prefix):]
    return value


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


def shown(value: str, limit: int = 40) -> str:
    """A refused value as it may appear in the error line: short, one line."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return repr(text.encode("unicode_escape").decode("ascii"))


class Env:
    """A setting read from ``os.environ`` when an app is configured, not at import,
    so every ``create_app`` (and every test) sees the environment as it is now.

    ``parse(raw, default)`` turns the raw text (None when unset) into the value and
    raises ValueError (its text: what is accepted) for anything else; the error
    becomes a :class:`ConfigError` naming the variable. ``secret`` values are never
    repeated in that message.
    """

    accepted = ""

    def __init__(self, name, default=None, parse=None, *, secret=False):
        self.name = name
        self.default = default
        self.parse = parse
        self.secret = secret

    def __get__(self, instance, owner):
        raw = os.environ.get(self.name)
        try:
            return self.convert(raw)
        except ValueError as exc:
            what = self.name if self.secret or raw is None else f"{self.name}={shown(raw)}"
            raise ConfigError(f"{what} is not accepted: {exc}") from None

    def convert(self, raw):
        """The value of the raw environment text; ValueError says what is accepted."""
        if self.parse is not None:
            return self.parse(raw, self.default)
        return self.default if raw is None else raw


class Str(Env):
    """Text; unset or empty is the default."""

    def convert(self, raw):
        return raw or self.default


class Bool(Env):
    """``true/false``, ``1/0``, ``yes/no``, ``on/off`` (any case)."""

    def convert(self, raw):
        return as_bool(raw, self.default)


class Int(Env):
    """A whole number within ``min``..``max`` (seconds, for every duration)."""

    def __init__(self, name, default, *, min=None, max=None, **kwargs):  # noqa: A002
        super().__init__(name, default, **kwargs)
        self.min, self.max = min, max

    def convert(self, raw):
        low, high = self.min, self.max
        if high is None:
            accepted = "a whole number" + ("" if low is None else f" >= {low}")
        elif low is None:
            accepted = f"a whole number <= {high}"
        else:
            accepted = f"a whole number from {low} to {high}"
        try:
            value = as_int(raw, self.default)
        except ValueError:
            raise ValueError(f"expected {accepted}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"expected {accepted}")
        return value


class Choice(Env):
    """One of ``choices`` (case-insensitive)."""

    def __init__(self, name, default, choices, **kwargs):
        super().__init__(name, default, **kwargs)
        self.choices = tuple(choices)

    def convert(self, raw):
        if raw is None or raw.strip() == "":
            return self.default
        value = raw.strip().lower()
        if value not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}")
        return value


class List(Env):
    """Comma-separated items; ``allow_empty=False`` refuses a value that is set but
    names nothing (``REGAPP_PROFILES=,``)."""

    def __init__(self, name, default="", *, allow_empty=True, **kwargs):
        super().__init__(name, default, **kwargs)
        self.allow_empty = allow_empty

    def convert(self, raw):
        items = as_list(raw, self.default)
        if not items and not self.allow_empty and raw is not None and raw != "":
            raise ValueError("expected a comma-separated list of names, or unset")
        return items


class Url(Env):
    """An http(s) URL with a host (no user info, no query), or empty."""

    def convert(self, raw):
        value = (raw if raw is not None else self.default) or ""
        if value and not is_base_url(value):
            raise ValueError("expected an http(s) URL with a host, no user info and no query")
        return value


class DatabaseUrl(Env):
    """An SQLAlchemy URL; ``postgres://`` is rewritten for psycopg 3. Never echoed
    (it may hold a password)."""

    def __init__(self, name, default=None):
        super().__init__(name, default, secret=True)

    def convert(self, raw):
        if not raw:
            return self.default
        from sqlalchemy.engine import make_url  # noqa: PLC0415 - config stays light
        from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

        value = database_url(raw.strip())
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(DATABASE_ACCEPTED) from None
        if url.drivername not in DATABASE_DRIVERS:
            raise ValueError(DATABASE_ACCEPTED)
        return value


# The databases regapp ships drivers for and its migrations are tested on.
DATABASE_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")
DATABASE_ACCEPTED = ("expected sqlite or postgresql only, e.g. sqlite:///path or "
                     "postgresql+psycopg://user:password@host/db (postgres:// and "
                     "postgresql:// mean psycopg)")


def check_database_url(value: str) -> None:
    """A ConfigError (one line, the URL never shown) unless ``value`` is a URL of a
    database regapp supports: it also covers URLs given to ``create_app`` directly."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - config stays light
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        drivername = make_url(value).drivername
    except ArgumentError:
        drivername = None
    if drivername not in DATABASE_DRIVERS:
        raise ConfigError(f"DATABASE_URL is not accepted: {DATABASE_ACCEPTED}")


# Rate-limit storages regapp supports (the ``limits`` library's schemes whose driver
# it ships): per-process memory, or Redis over TCP, TLS or a Unix socket.
RATELIMIT_STORAGE_SCHEMES = ("memory://", "redis://", "rediss://", "redis+unix://")


class StorageUri(Env):
    """A rate-limit storage URI with a supported scheme. Never echoed (a Redis URL
    may hold a password)."""

    def __init__(self, name, default):
        super().__init__(name, default, secret=True)

    def convert(self, raw):
        value = (raw or "").strip() or self.default
        if not value.lower().startswith(RATELIMIT_STORAGE_SCHEMES):
            raise ValueError("expected a URI starting with "
                             + ", ".join(RATELIMIT_STORAGE_SCHEMES))
        return value


class Sender(Env):
    """An address, optionally with a display name: ``Accounts <accounts@example.org>``."""

    def convert(self, raw):
        value = raw if raw else self.default
        if value is not None and not is_sender(value):
            raise ValueError("expected an address such as accounts@example.org or "
                             "'Name <accounts@example.org>'")
        return value


def is_sender(value: str) -> bool:
    """A single address (``a@b``) or ``Name <a@b>``, without control characters."""
    from email.utils import parseaddr  # noqa: PLC0415

    if any(ord(ch) < 32 for ch in value):
        return False
    _, address = parseaddr(value)
    local, _, domain = address.rpartition("@")
    return bool(local and domain) and " " not in address and len(address) <= 254


class Config:
    """Defaults shared by every environment, overridable through ``os.environ``."""

    SECRET_KEY = Str("SECRET_KEY", DEV_SECRET_KEY, secret=True)
    SECRET_KEY_FALLBACKS = List("SECRET_KEY_FALLBACKS", "", secret=True)
    # None means "an SQLite file in the instance folder", filled in by create_app.
    SQLALCHEMY_DATABASE_URI = DatabaseUrl("DATABASE_URL", None)
    # hide_parameters: SQL logging or an error's text never shows bound values
    # (outbox bodies hold confirmation links and codes). No pool_pre_ping: a
    # "SELECT 1" round trip on every checkout cost ~14 % of a sign-up under load;
    # regapp.core.database pings only connections that sat idle in the pool.
    SQLALCHEMY_ENGINE_OPTIONS = {"hide_parameters": True}

    MAIL_SERVER = Str("MAIL_SERVER", "localhost")
    MAIL_PORT = Int("MAIL_PORT", 25, min=1, max=65535)
    MAIL_USE_TLS = Bool("MAIL_USE_TLS", False)
    MAIL_USE_SSL = Bool("MAIL_USE_SSL", False)
    MAIL_USERNAME = Str("MAIL_USERNAME", None)
    MAIL_PASSWORD = Str("MAIL_PASSWORD", None, secret=True)
    MAIL_DEFAULT_SENDER = Sender("MAIL_DEFAULT_SENDER", "regapp <no-reply@localhost>")
    # smtplib's defaults set no socket timeout and do not verify TLS certificates;
    # regapp's outbox connection adds both.
    MAIL_TIMEOUT = Int("MAIL_TIMEOUT", 30, min=1, max=600)
    MAIL_TLS_VERIFY = Bool("MAIL_TLS_VERIFY", True)
    MAIL_MAX_ATTEMPTS = Int("MAIL_MAX_ATTEMPTS", 12, min=1)
    MAIL_MAX_PERMANENT_ATTEMPTS = Int("MAIL_MAX_PERMANENT_ATTEMPTS", 3, min=1)
    MAIL_RETRY_BASE = Int("MAIL_RETRY_BASE", 5, min=0)
    MAIL_RETRY_MAX = Int("MAIL_RETRY_MAX", 3600, min=1)
    MAIL_POLL_INTERVAL = Int("MAIL_POLL_INTERVAL", 5, min=1)
    # A claimed row whose sender died is retried after this many seconds (at once
    # when the sender was a process of this host that is gone). A batch renews its
    # claims every third of this while it is being sent, and gives back what it has
    # not sent after half of it.
    MAIL_CLAIM_LEASE = Int("MAIL_CLAIM_LEASE", 10, min=1)
    OUTBOX_AUTOSTART = Bool("OUTBOX_AUTOSTART", True)
    # What the emails are signed with: the product's name, where to ask for help and
    # an optional logo (an https URL of an image, shown above the text).
    MAIL_PRODUCT_NAME = Str("MAIL_PRODUCT_NAME", "regapp")
    MAIL_SUPPORT_ADDRESS = Sender("MAIL_SUPPORT_ADDRESS", None)
    MAIL_LOGO_URL = Url("MAIL_LOGO_URL", "")

    FRONTEND_URL = Str("FRONTEND_URL", "http://127.0.0.1:5000")
    CONFIRM_TOKEN_MAX_AGE = Int("CONFIRM_TOKEN_MAX_AGE", 86400, min=1)
    CONFIRM_CODE_MAX_ATTEMPTS = 5
    CONFIRM_CODE_LIFETIME_CAP = 20
    # A refused code is answered after at least this long: the wrong-guess counter a
    # pending account commits would otherwise show in the latency (SECURITY.md B9).
    CONFIRM_CODE_MIN_SECONDS = 0.05
    RESEND_COOLDOWN = Int("RESEND_COOLDOWN", 60, min=0)
    # simplejwt's defaults: 5-minute access tokens, 1-day refresh tokens.
    JWT_ACCESS_LIFETIME = Int("JWT_ACCESS_LIFETIME", 300, min=1)
    JWT_REFRESH_LIFETIME = Int("JWT_REFRESH_LIFETIME", 86400, min=1)

    # Wrong passwords per account per hour after which only logins that carry a
    # device token of that account are evaluated (SECURITY.md, login throttling).
    LOGIN_LOCK_THRESHOLD = Int("LOGIN_LOCK_THRESHOLD", 100, min=1)
    PASSWORD_RESET_MAX_AGE = Int("PASSWORD_RESET_MAX_AGE", 3600, min=1)
    RESET_CODE_MAX_ATTEMPTS = 5
    RESET_CODE_LIFETIME_CAP = 20
    # Wrong reset codes per hour, service-wide, above which codes are refused
    # (links keep working) and an ERROR is logged.
    RESET_CODE_GLOBAL_CEILING = Int("RESET_CODE_GLOBAL_CEILING", 1000, min=1)
    # Per address: the reset and the duplicate-sign-up mail each have their own.
    RESET_MAIL_COOLDOWN = Int("RESET_MAIL_COOLDOWN", 60, min=0)
    DUPLICATE_MAIL_COOLDOWN = Int("DUPLICATE_MAIL_COOLDOWN", 60, min=0)
    SECURITY_MAIL_DAILY_CAP = Int("SECURITY_MAIL_DAILY_CAP", 5, min=1)

    RATELIMIT_ENABLED = Bool("RATELIMIT_ENABLED", True)
    RATELIMIT_STORAGE_URI = StorageUri("RATELIMIT_STORAGE_URI", "memory://")
    # Off: Flask-Limiter would stamp Retry-After on every 2xx and rewrite the
    # 429's own value; regapp.auth.limits sets an exact Retry-After on 429s.
    RATELIMIT_HEADERS_ENABLED = False
    RATELIMIT_KEY_PREFIX = Str("RATELIMIT_KEY_PREFIX", "regapp")
    # Storage down (Redis): fail open to per-process in-memory counters, log an
    # error, never answer 500 (regapp.auth.limits, README "Rate limits").
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = Bool("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    RATELIMIT_SWALLOW_ERRORS = Bool("RATELIMIT_SWALLOW_ERRORS", True)
    RATELIMIT_STORAGE_TIMEOUT = Int("RATELIMIT_STORAGE_TIMEOUT", 1, min=1, max=60)
    # limits strings ("10/minute;100/day"); an empty value switches that limit off.
    RATELIMIT_REGISTRATION = Env("RATELIMIT_REGISTRATION", "10/minute;100/day")
    RATELIMIT_CONFIRMATION = Env("RATELIMIT_CONFIRMATION", "20/minute")
    RATELIMIT_CONFIRMATION_PER_EMAIL = Env("RATELIMIT_CONFIRMATION_PER_EMAIL", "10/minute")
    RATELIMIT_RESEND = Env("RATELIMIT_RESEND", "5/minute;50/day")
    RATELIMIT_TOKEN = Env("RATELIMIT_TOKEN", "10/minute")
    RATELIMIT_RESET = Str("RATELIMIT_RESET", "10/minute;100/day")
    # Reverse proxies in front of the app whose X-Forwarded-For is trusted; 0 = none.
    TRUSTED_PROXY_COUNT = Int("TRUSTED_PROXY_COUNT", 0, min=0, max=10)

    # A k-anonymity range API (Have I Been Pwned's shape) for breached passwords;
    # empty: off. Fails open (2 s timeout) with a warning in the log.
    PASSWORD_BREACH_CHECK_URL = Str("PASSWORD_BREACH_CHECK_URL", "")
    EMAIL_CHECK_DELIVERABILITY = Bool("EMAIL_CHECK_DELIVERABILITY", False)
    # Empty: every profile found (regapp/auth/profiles/ and REGAPP_PROFILE_MODULES);
    # the names are checked against those found when the app is built.
    REGAPP_PROFILES = List("REGAPP_PROFILES", "", allow_empty=False)
    # Modules (dotted names) declaring more profiles, each with a module-level PROFILE.
    REGAPP_PROFILE_MODULES = List("REGAPP_PROFILE_MODULES", "")

    # Origins (scheme://host[:port], comma-separated) allowed to call /api/ from a
    # browser; empty: CORS off (regapp/cors.py).
    CORS_ORIGINS = List("CORS_ORIGINS", "")

    # Log lines as plain text (development) or one JSON object per line.
    LOG_FORMAT = Choice("LOG_FORMAT", "text", LOG_FORMATS)

    # Request bodies are a few fields: 64 KiB by default, never more than 10 MiB.
    MAX_CONTENT_LENGTH = Int("MAX_CONTENT_LENGTH", 64 * 1024, min=1024, max=10 * 1024 * 1024)
    # argon2id at the OWASP ASVS 5.0 Appendix C minimum row (t=2, m=19 MiB, p=1).
    ARGON2_TIME_COST = Int("ARGON2_TIME_COST", 2, min=1)
    ARGON2_MEMORY_COST = Int("ARGON2_MEMORY_COST", 19456, min=8)
    ARGON2_PARALLELISM = Int("ARGON2_PARALLELISM", 1, min=1)

    @classmethod
    def init_app(cls, app):
        """Checks across settings once the app is configured: ConfigError, one line."""
        problems = []
        cls.validate(app, problems)
        if problems:
            raise ConfigError("refusing to start: " + "; ".join(problems))

    @classmethod
    def validate(cls, app, problems: list) -> None:
        """Contradictions every environment refuses; append one phrase per problem."""
        cfg = app.config
        if cfg.get("MAIL_USE_TLS") and cfg.get("MAIL_USE_SSL"):
            problems.append("MAIL_USE_TLS and MAIL_USE_SSL are both on: choose STARTTLS "
                            "(MAIL_USE_TLS, usually port 587) or implicit TLS "
                            "(MAIL_USE_SSL, usually port 465)")
        if cfg.get("LOG_FORMAT", "text") not in LOG_FORMATS:
            problems.append(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")


# Settings that must be whole numbers of at least the given value (checked by
# every configuration at start-up, see ``check_numbers``).
MINIMUMS = {
    "LOGIN_LOCK_THRESHOLD": 1, "PASSWORD_RESET_MAX_AGE": 60, "RESET_CODE_MAX_ATTEMPTS": 1,
    "RESET_CODE_LIFETIME_CAP": 1, "RESET_CODE_GLOBAL_CEILING": 1, "RESET_MAIL_COOLDOWN": 0,
    "DUPLICATE_MAIL_COOLDOWN": 0, "SECURITY_MAIL_DAILY_CAP": 1,
}


def check_numbers(values) -> None:
    """Refuse to start on a security setting that is not a whole number, or too small."""
    problems = [f"{name} must be a whole number of at least {low}"
                for name, low in MINIMUMS.items()
                if type(values.get(name)) is not int or values[name] < low]
    if problems:
        raise ConfigError("refusing to start: " + "; ".join(problems))


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
    """Production: refuses to start on unsafe or unstated settings."""

    # No silent defaults for where data and mail go: unset is refused below.
    MAIL_SERVER = Str("MAIL_SERVER", None)
    MAIL_DEFAULT_SENDER = Sender("MAIL_DEFAULT_SENDER", None)

    @classmethod
    def validate(cls, app, problems: list) -> None:
        super().validate(app, problems)
        cfg = app.config
        if not cfg.get("SQLALCHEMY_DATABASE_URI"):
            problems.append("DATABASE_URL must be set (production never falls back to "
                            "an SQLite file)")
        if not cfg.get("MAIL_SERVER"):
            problems.append("MAIL_SERVER must be set (a relay on this machine is fine: "
                            "MAIL_SERVER=localhost)")
        if not cfg.get("MAIL_DEFAULT_SENDER"):
            problems.append("MAIL_DEFAULT_SENDER must be set, e.g. "
                            "'Accounts <accounts@example.org>'")
        secret = cfg.get("SECRET_KEY") or ""
        if secret == DEV_SECRET_KEY or len(secret) < 32:
            problems.append("SECRET_KEY must be set to a random value of 32+ characters")
        if not os.environ.get("FRONTEND_URL"):
            problems.append("FRONTEND_URL must be set")
        elif not is_base_url(cfg["FRONTEND_URL"]):
            problems.append("FRONTEND_URL must be an http(s) URL with a host, "
                            "no user info and no query")
        if not cfg["MAIL_TLS_VERIFY"] and not is_loopback(cfg.get("MAIL_SERVER")):
            # An unverified certificate lets anyone on the path read the mail (links, codes).
            problems.append("MAIL_TLS_VERIFY may be off only for a mail server on this machine")
        # MAIL_CLAIM_LEASE may be shorter than MAIL_TIMEOUT: a separate thread renews
        # a batch's claims every third of the lease while SMTP I/O blocks (outbox.py).
        if app.debug:
            problems.append("debug must be off")
        if (
            cfg["ARGON2_TIME_COST"] < 2
            or cfg["ARGON2_MEMORY_COST"] < 19456
            or cfg["ARGON2_PARALLELISM"] < 1
        ):
            problems.append("argon2 parameters are below t=2, m=19456 KiB, p=1")
        if not problems and cfg["RATELIMIT_ENABLED"] and cfg["RATELIMIT_STORAGE_URI"].startswith(
                "memory://"):
            app.logger.warning("RATELIMIT_STORAGE_URI=memory:// counts per worker process, "
                               "so each limit is multiplied by the number of workers; "
                               "use redis:// in production")


config = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}
