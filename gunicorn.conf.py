"""gunicorn settings, read automatically from the working directory.

The access log shows the path without the query string: confirmation tokens
travel in ``?token_id=`` / ``?email_token=`` and must never reach a log.
With ``LOG_FORMAT=json`` gunicorn's own lines (error log and access log) are JSON
objects too, from regapp's formatter: an access line carries ``method``, ``path``
(no query), ``status``, ``duration_ms`` and ``request_id`` as keys.
"""

import logging
import os

from flask.cli import load_dotenv
from gunicorn import glogging

# As wsgi.py does, so LOG_FORMAT in .env shapes gunicorn's lines as well as the app's.
load_dotenv()


class EscapingLogger(glogging.Logger):
    """gunicorn's logger with control characters in ``%(U)s`` escaped: the path is
    percent-decoded, so ``/x%0d%0aforged`` would start a forged line (CVE-2025-48432)."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        if atoms.get("U"):
            atoms["U"] = atoms["U"].encode("unicode_escape").decode("ascii")
        return atoms


logger_class = EscapingLogger
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# gthread, with connections spread evenly over the workers (regapp/serving.py says why).
worker_class = "regapp.serving.BalancedThreadWorker"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 20
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms %({x-request-id}o)s'
# The access log above is the one line per request under gunicorn: the app's own
# request lines (regapp.request) keep only warnings (5xx), with the same request id.
logging.getLogger("regapp.request").setLevel(logging.WARNING)
errorlog = "-"


def json_logconfig() -> dict:
    """``logconfig_dict`` for ``LOG_FORMAT=json``: gunicorn's error log (stderr) and
    access log (stdout), and anything else that logs a warning, as JSON lines.

    The ``regapp`` logger keeps the handler regapp.logs gives it (request ids, JSON
    by the same setting) and does not propagate, so no line is written twice."""
    def stream(name):
        return {"class": "logging.StreamHandler", "formatter": "json",
                "stream": f"ext://sys.{name}"}

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "regapp.logs.JsonFormatter"}},
        "handlers": {"json_stdout": stream("stdout"), "json_stderr": stream("stderr")},
        "root": {"level": "WARNING", "handlers": ["json_stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["json_stderr"],
                               "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["json_stdout"],
                                "propagate": False},
            "regapp": {"propagate": False},
            # dictConfig resets existing children of configured loggers: set again.
            "regapp.request": {"level": "WARNING"},
        },
    }


if os.environ.get("LOG_FORMAT", "").strip().lower() == "json":
    logconfig_dict = json_logconfig()
# gunicorn 25+ opens a control socket at one path per user ($HOME/.gunicorn/gunicorn.ctl),
# which a second instance on the host would take over; opt in with a path of your own.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket


def post_worker_init(worker):
    """Start the worker's mail dispatcher now, not at its first request.

    With ``--preload`` the app was imported in the master, whose dispatcher
    thread regapp stops before fork() (see ``regapp.core.dispatcher``).
    """
    from regapp.core import dispatcher  # noqa: PLC0415 - the master loads this file before the app

    app = getattr(worker, "wsgi", None)
    if hasattr(app, "app_context"):
        dispatcher.ensure_dispatcher(app)


def worker_exit(server, worker):
    """Let the dispatcher finish its batch, so no claim is left to wait for its lease."""
    from regapp.core import dispatcher  # noqa: PLC0415 - the master loads this file before the app

    app = getattr(worker, "wsgi", None)
    if hasattr(app, "app_context"):
        dispatcher.stop_dispatcher(app, timeout=5)
