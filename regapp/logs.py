"""Log output: plain text (the default) or one JSON object per line (``LOG_FORMAT=json``).

Every line logged while a request is handled carries its request id (the
``request_id`` field in JSON, ``request_id=...`` at the end of a text line).
Events are logged with ``extra={"event": ..., "account_id": ...}``: the JSON
lines carry those fields, never an address, password, token or code.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from datetime import timezone

from flask import g
from flask import has_request_context
from flask.logging import default_handler

# Record attributes logged as JSON fields when an event sets them.
EVENT_FIELDS = ("event", "account_id", "profile", "account_type", "method", "reason",
                "outbox_id", "kind", "purpose", "status", "attempts")
TEXT_FORMAT = "[%(asctime)s] %(levelname)s in %(module)s: %(message)s"
_HANDLER_FLAG = "_regapp_handler"


class RequestIdFilter(logging.Filter):
    """Put the current request's id on the record (``None`` outside a request)."""

    def filter(self, record):
        if not hasattr(record, "request_id"):
            rid = None
            if has_request_context():
                rid = g.get("request_id")
            record.request_id = rid
        return True


class TextFormatter(logging.Formatter):
    """Flask's text format, with ``request_id=...`` unless the message has it."""

    def format(self, record):
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        if rid and "request_id=" not in record.getMessage():
            line += f" request_id={rid}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, event fields."""

    def format(self, record):
        out = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            out["request_id"] = rid
        for name in EVENT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            # gunicorn's access atoms: a JSON line with the fields, not just the text.
            atoms = record.args
            # The path never carries the query string (confirmation tokens travel there).
            status = atoms.get("s")
            out.update({"method": atoms.get("m"), "path": atoms.get("U"),
                        "status": int(status) if str(status).isdigit() else status,
                        "duration_ms": atoms.get("M"),
                        "request_id": atoms.get("{x-request-id}o") or rid})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for ``LOG_FORMAT`` (``text`` or ``json``)."""
    return JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT)


def init_app(app) -> None:
    """Give the ``regapp`` logger (every module's logger is its child) one handler in
    the configured format; a handler an operator configured is left alone."""
    logger = logging.getLogger("regapp")
    app.logger  # noqa: B018 - Flask attaches its default handler on first use
    if logger.level == logging.NOTSET:  # events are INFO; an operator's level wins
        logger.setLevel(logging.INFO)
    own = [h for h in logger.handlers if h is default_handler or getattr(h, _HANDLER_FLAG, False)]
    if len(own) != len(logger.handlers):
        return  # someone else configured logging: theirs wins
    for handler in own:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_FLAG, True)
    handler.setFormatter(formatter(app.config.get("LOG_FORMAT", "text")))
    handler.addFilter(RequestIdFilter())
    logger.addHandler(handler)


def event(logger: logging.Logger, name: str, message: str, *args, level=logging.INFO,
          **fields) -> None:
    """Log event ``name`` (``registered``, ``confirmed``, ...) with its fields;
    the text line ends with ``key=value`` pairs of the fields."""
    text = message % args if args else message
    pairs = "".join(f" {key}={value}" for key, value in fields.items() if value is not None)
    logger.log(level, "%s%s", text, pairs, extra={"event": name, **fields})
