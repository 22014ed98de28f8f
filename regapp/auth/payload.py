"""Read a request body (JSON or form) into a plain dict, or fail with a clear error.

One rule for parameter pollution: a field given twice (a repeated form field
or a duplicated JSON key) is kept as a list, so it fails the field's type
check like any other list instead of silently picking one value.
"""

from __future__ import annotations

import json

from flask import request
from werkzeug.exceptions import BadRequest
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.exceptions import UnsupportedMediaType

FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}


class MalformedBody(BadRequest):
    """The body is not parseable JSON, or not a JSON object; ``code`` says which."""

    def __init__(self, code: str, detail: str = "", got: str = ""):
        super().__init__()
        self.code_name = code
        self.detail = detail
        self.got = got


def _pairs_hook(pairs):
    out: dict = {}
    for key, value in pairs:
        if key in out:
            previous = out[key]
            out[key] = (previous if isinstance(previous, _Repeated)
                        else _Repeated([previous])) + [value]
        else:
            out[key] = value
    return out


class _Repeated(list):
    """A JSON key given more than once."""


class _BadConstant(ValueError):
    """NaN or Infinity: Python's json accepts them, JSON does not."""


def _reject_constant(name):
    raise _BadConstant(name)


def read_payload() -> dict:
    """The request body as a dict of wire names to values.

    :raises MalformedBody: invalid JSON or a JSON value that is not an object.
    :raises UnsupportedMediaType: a body of any other media type.
    """
    mimetype = request.mimetype
    if mimetype in FORM_TYPES:
        form = request.form.to_dict(flat=False)
        _reject_cut_body()
        if request.files:
            # Files are not fields of any profile; a name sent as a file is a wrong type.
            for key in request.files:
                form.setdefault(key, [{}])
        return {k: v[0] if len(v) == 1 else list(v) for k, v in form.items()}
    if mimetype == "application/json" or mimetype.endswith("+json"):
        raw = request.get_data(cache=True)
        _reject_cut_body()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw.decode("utf-8"), object_pairs_hook=_pairs_hook,
                              parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise MalformedBody("parse_error", _parse_detail(exc)) from None
        if not isinstance(data, dict):
            raise MalformedBody("not_an_object", got=_json_type(data))
        return data
    if not request.content_length and not mimetype:
        return {}
    raise UnsupportedMediaType()


def _reject_cut_body() -> None:
    """A streamed (chunked) body is cut off silently at MAX_CONTENT_LENGTH by
    Werkzeug's single read; never parse what is left of it."""
    stream = request.stream
    if request.content_length is None and getattr(stream, "is_exhausted", False):
        raise RequestEntityTooLarge()


def _parse_detail(exc: Exception) -> str:
    """A short, input-free reason for a parse failure (never echoes the body)."""
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if isinstance(exc, UnicodeDecodeError):
        return "invalid encoding"
    if isinstance(exc, RecursionError):
        return "nesting too deep"
    if isinstance(exc, _BadConstant):
        return "NaN and Infinity are not valid JSON"
    return "invalid value"  # e.g. an integer longer than Python's 4300-digit limit


def _json_type(value) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "str"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return type(value).__name__
    return "NoneType" if value is None else type(value).__name__


def single(values, name: str) -> str | None:
    """The one value of query or form parameter ``name``: ``""`` when absent, ``None``
    when repeated (refused like a repeated body field)."""
    found = values.getlist(name)
    if len(found) > 1:
        return None
    return found[0] if found else ""
