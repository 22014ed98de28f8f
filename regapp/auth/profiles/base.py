"""What every profile adapter shares: input fields, error wiring, generic views."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import request
from marshmallow import EXCLUDE
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import InternalServerError
from werkzeug.exceptions import ServiceUnavailable

from ...core import database
from ...core import registration
from ...core.errors import FieldError
from ...core.errors import FieldErrors
from ...core.identity import EMAIL_PATTERN
from ...core.identity import normalize_email
from ...extensions import db
from ...http import request_id
from .. import limits
from ..payload import MalformedBody
from ..payload import read_payload

log = logging.getLogger(__name__)

CODES = {"required": "required", "null": "null", "invalid": "invalid"}
RETRY_AFTER_SECONDS = 5
# OpenAPI patterns: some character other than whitespace (a field that is trimmed and
# may not be blank), any character (one that is never trimmed but may not be empty).
NOT_BLANK = r"\S"
NOT_EMPTY = r"[\s\S]"
# The emailed 6-digit confirmation code.
CODE_PATTERN = r"^[0-9]{6}$"


class Text(fields.String):
    """A string field whose errors are codes (``blank``, ``max_length:N``...).

    Lists, numbers, booleans and objects are ``invalid``; lone surrogates and
    NUL characters, which databases refuse or mangle, are rejected here.
    """

    default_error_messages = CODES

    def __init__(self, *, blank=False, strip=True, max_length=None, pattern=None, **kwargs):
        kwargs.setdefault("error_messages", CODES)
        super().__init__(**kwargs)
        self.blank = blank
        self.strip = strip
        self.max_length = max_length
        # The OpenAPI pattern of a value this field accepts (its validator checks it).
        self.pattern = pattern

    def openapi(self) -> dict:
        """What the OpenAPI document says this field accepts (regapp/openapi.py)."""
        out: dict = {}
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        minimum = max((getattr(v, "min_length", 0) for v in self.validators), default=0)
        if minimum:
            out["minLength"] = minimum
        if self.pattern is not None:
            out["pattern"] = self.pattern
        elif not self.blank:
            out["pattern"] = NOT_BLANK if self.strip else NOT_EMPTY
        return out

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("invalid") from None
        if "\x00" in value:
            raise ValidationError("null_characters")
        if self.strip:
            value = value.strip()
        if not value and not self.blank:
            raise ValidationError("blank")
        if self.max_length is not None and len(value) > self.max_length:
            raise ValidationError(f"max_length:{self.max_length}")
        return value


class Password(Text):
    """A password: never trimmed, yet one of only whitespace is ``blank`` (nothing
    was typed), in every profile."""

    def __init__(self, **kwargs):
        kwargs.setdefault("pattern", NOT_BLANK)
        super().__init__(strip=False, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if not value.strip() and not self.blank:
            raise ValidationError("blank")
        return value


def numbers_as_strings(payload: dict, schema: Schema) -> dict:
    """DRF's ``CharField``: a JSON number (int or float) sent for a text field is
    that number's ``str()`` (``5551234567`` -> ``"5551234567"``); booleans, lists
    and objects stay as they are, for the field to refuse."""
    keys = {f.data_key or name for name, f in schema.fields.items() if isinstance(f, Text)}
    return {key: str(value) if key in keys and isinstance(value, (int, float))
            and not isinstance(value, bool) else value
            for key, value in payload.items()}


class Email(Text):
    """An email address, syntax-checked without DNS and handed on normalised (the core
    may check deliverability)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 254)
        super().__init__(**kwargs)

    def openapi(self):
        # The pattern: Django's rule as regapp enforces it (regapp.core.identity), so
        # generated addresses are mostly accepted ones and no accepted one violates it.
        return {**super().openapi(), "format": "email", "pattern": EMAIL_PATTERN}

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if value:
            try:
                value = normalize_email(value)
            except FieldErrors as exc:
                raise ValidationError(exc.errors[0].code) from None
        return value


class ProfileSchema(Schema):
    """Shape only: unknown fields ignored, no database queries."""

    class Meta:
        unknown = EXCLUDE


def parse_code(code: str) -> tuple[str, dict]:
    """Split ``"max_length:150"`` into ``("max_length", {"max_length": 150})``."""
    name, _, arg = code.partition(":")
    return (name, {name: int(arg)}) if arg else (name, {})


def lookup(catalog: dict, field: str, code: str, params: dict, default: str,
           **names) -> str:
    """A catalog's text for one field error: ``field.code``, then ``code``, then
    ``default``, formatted with the error's parameters and ``names``."""
    template = catalog.get(f"{field}.{code}") or catalog.get(code) or default
    return template.format(**names, **params)


def _field_errors(schema: Schema, messages: dict) -> list[FieldError]:
    """marshmallow's ``{wire name: [code]}`` as canonical ``FieldError``s."""
    canonical = {f.data_key or name: name for name, f in schema.fields.items()}
    out = []
    for wire_name, codes in messages.items():
        for code in codes if isinstance(codes, list) else [str(codes)]:
            name, params = parse_code(code)
            out.append(FieldError(canonical.get(wire_name, wire_name), name, params))
    return out


class Profile:
    """One wire format: how input is read and how results and errors are written."""

    name = "base"
    schema: Schema | None = None
    # canonical field name -> wire name, where they differ
    wire_names: dict[str, str] = {}
    policy = None
    account_type = "customer"
    issue_api_token = False
    # DRF's CharField semantics (numbers become strings) for every text field.
    numbers_as_strings = False

    def wire(self, field: str) -> str:
        return self.wire_names.get(field, field)

    def read(self, schema: Schema | None = None) -> dict:
        """The request body, validated against ``schema`` (see ``load``)."""
        return self.load(read_payload(), schema)

    def load(self, payload: dict, schema: Schema | None = None) -> dict:
        """Validate the shape of ``payload`` against ``schema`` (default: the
        registration schema); return canonical data or raise FieldErrors."""
        schema = schema or self.schema
        try:
            return schema.load(self.coerce(payload, schema))
        except ValidationError as exc:
            raise FieldErrors(_field_errors(schema, exc.messages)) from None

    def coerce(self, payload: dict, schema: Schema) -> dict:
        """``payload`` as the profile's framework reads it before validating."""
        return numbers_as_strings(payload, schema) if self.numbers_as_strings else payload
    # -- rendering (overridden per profile) -----------------------------------
    def json(self, body, status, headers=None):
        response = jsonify(body)
        response.status_code = status
        for key, value in (headers or {}).items():
            response.headers[key] = value
        return response

    def field_errors(self, exc: FieldErrors):
        raise NotImplementedError

    # status -> text (may use {method}, {mimetype}, {retry_after}), and its fallback
    http_texts: dict[int, str] = {}
    http_default = "Request failed."

    def http_error(self, exc: HTTPException):
        """Any HTTP-level error: the malformed-body hook, or the status's text rendered."""
        if isinstance(exc, MalformedBody):
            return self.malformed(exc)
        status = exc.code or 500
        headers = http_headers(exc)
        text = self.http_texts.get(status, self.http_default).format(
            method=request.method, mimetype=request.mimetype,
            retry_after=headers.get("Retry-After", "a few"),
        )
        return self.render_http_error(exc, status, text, headers)

    def malformed(self, exc: MalformedBody):
        """A body that is not JSON, or not a JSON object."""
        raise NotImplementedError

    def render_http_error(self, exc: HTTPException, status: int, text: str, headers: dict):
        raise NotImplementedError

    def password_text(self, err: FieldError) -> str:
        """One password-policy failure (``err``: a ``new_password`` error of a reset)
        in this profile's words; Django's unless the profile says otherwise."""
        from .django_rules import password_message  # noqa: PLC0415 - it imports this module

        return password_message(err.code, err.params)

    def registered(self, result: registration.Registration):
        raise NotImplementedError

    # -- what the OpenAPI document says (regapp/openapi.py) --------------------
    media_type = "application/json"
    # The status of field errors (bad shape, taken, password policy).
    field_error_status = 400
    # The 201 of the registration route.
    registered_reply: Reply | None = None
    # Request fields accepted in place of another when that one is absent
    # (``{"email_address": "email"}``: ``email`` stands in for ``email_address``).
    aliases: dict[str, str] = {}

    def error_schema(self, status: int) -> dict:
        """JSON Schema of this profile's body for an HTTP-level error ``status``
        (a profile that does not say is documented as answering some JSON object)."""
        return {"type": "object"}

    def field_error_schema(self) -> dict:
        """JSON Schema of this profile's field-error body."""
        return {"type": "object"}

    def malformed_schema(self) -> dict:
        """JSON Schema of this profile's answer to a body that is not a JSON object."""
        return self.error_schema(400)

    def body_schema(self, schema: dict, form: bool) -> dict:
        """The request body a route of this profile accepts, from the JSON Schema of
        its marshmallow schema (``form``: as form fields, which cannot nest). Where
        the profile takes JSON numbers for text fields (DRF's ``CharField``), the
        JSON body says so: ``"type": ["string", "number"]``."""
        if self.numbers_as_strings and not form:
            for variant in schema.get("anyOf", [schema]):
                for prop in variant.get("properties", {}).values():
                    kind = prop.get("type")
                    if kind == "string":
                        prop["type"] = ["string", "number"]
                    elif isinstance(kind, list) and "string" in kind and "number" not in kind:
                        prop["type"] = [*kind, "number"]
        return schema

    def common_replies(self, doc: RouteDoc) -> list[tuple[int, Reply]]:
        """What any route of this profile may answer besides its own ``responses``."""
        out = []
        if doc.body is not None:
            out += [
                (self.field_error_status, doc.field_errors or Reply(
                    "The input is invalid (shape, taken, password policy)",
                    self.field_error_schema())),
                (400, Reply("The body is not JSON, or not a JSON object",
                            self.malformed_schema())),
                (413, Reply("The body is too large", self.error_schema(413))),
                (415, Reply("The body is neither JSON nor form data",
                            self.error_schema(415))),
            ]
        if doc.purpose is not None:
            out.append((429, Reply("Too many requests; retry after Retry-After seconds",
                                   self.error_schema(429), headers=("Retry-After",))))
        out.append((503, Reply("The database is unavailable; retry after Retry-After seconds",
                               self.error_schema(503), headers=("Retry-After",))))
        return out

    # -- the generic view ------------------------------------------------------
    def register_view(self):
        """Parse, call the one registration core, render."""
        data = self.read()
        result = registration.register(
            data, policy=self.policy, account_type=self.account_type,
            issue_api_token=self.issue_api_token, profile=self.name,
            within=self.registering,
        )
        return self.registered(result)

    def registering(self, user):
        """Runs in the registering transaction once ``user`` has its id; what it
        returns is ``registered``'s ``result.extra``. Nothing by default."""
        return None


def account(user) -> dict:
    """Who the account is, as the profiles that show it to its owner begin its body."""
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "first_name": user.first_name or "",
        "last_name": user.last_name or "",
    }


def unavailable() -> HTTPException:
    """503 for a database that is down or locked; the client should retry."""
    exc = ServiceUnavailable()
    exc.retry_after = RETRY_AFTER_SECONDS
    return exc


def http_headers(exc: HTTPException) -> dict:
    """Headers a client needs from an HTTP error: Allow, Retry-After."""
    headers = {}
    if exc.code == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(exc.valid_methods)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(int(retry_after))
    elif exc.code in (429, 503):
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if exc.response is not None and "Retry-After" in exc.response.headers:
        headers["Retry-After"] = exc.response.headers["Retry-After"]
    return headers


def handle_exception(profile: Profile, exc: Exception):
    """Render any exception in ``profile``'s format: never HTML, never a trace."""
    if isinstance(exc, FieldErrors):
        return profile.field_errors(exc)
    if isinstance(exc, DBAPIError):
        database.log_unavailable(current_app.logger, exc)
        _rollback()
        return profile.http_error(unavailable())
    if isinstance(exc, HTTPException):  # MalformedBody included: each profile words it
        return profile.http_error(exc)
    current_app.logger.exception("unhandled error on %s %s request_id=%s", request.method,
                                 request.path, request_id())
    _rollback()
    return profile.http_error(InternalServerError())


def _rollback():
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the connection may be gone already
        pass


def register_errors(bp, profile: Profile) -> None:
    """Bind one catch-all handler to a profile blueprint (class-based, never per code)."""
    bp.register_error_handler(Exception, lambda exc: handle_exception(profile, exc))


def blueprint(profile: Profile, import_name: str, register: str | None = None,
              endpoint: str = "register", **kwargs) -> Blueprint:
    """The profile's blueprint, named after it, every error rendered in its format;
    with ``register``, the rule of its registration route (``POST``, the generic view)."""
    bp = Blueprint(profile.name, import_name, **kwargs)
    bp.regapp_profile = profile
    register_errors(bp, profile)
    if register is not None:
        def view():
            return profile.register_view()
        view.__doc__ = f"Register a user ({profile.name} profile)."
        route(bp, register, limits.REGISTRATION, endpoint=endpoint, body=profile.schema,
              responses={201: profile.registered_reply or Reply("Registered")})(view)
    return bp


@dataclass(frozen=True)
class Reply:
    """One answer a route gives, as the OpenAPI document describes it.

    ``schema``: a JSON Schema dict, a marshmallow schema, or None (no body);
    ``media_type``: default the profile's; ``headers``: names of response headers
    the answer always carries (see ``HEADER_DOCS`` in regapp/openapi.py).
    """

    description: str
    schema: object = None
    media_type: str | None = None
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouteDoc:
    """What ``route()`` records on a view for the OpenAPI document (regapp/openapi.py).

    ``body``: the marshmallow schema of the request body (JSON and both form types);
    ``query``: the marshmallow schema of the query parameters; ``responses``: the
    route's own answers by status, on top of those its profile gives every route
    (``Profile.common_replies``); ``auth``: the route reads ``Authorization``;
    ``aliases``: fields this route accepts in place of another (``Profile.aliases``);
    ``one_of``: groups of body fields of which the route needs one group, the first
    one sent deciding (``(("token",), ("email", "code"))``); ``field_errors``: the
    route's field-error answer where it is narrower than its profile's.
    """

    profile: Profile
    purpose: str | None
    body: Schema | None = None
    query: Schema | None = None
    responses: dict = None
    auth: bool = False
    aliases: dict = None
    one_of: tuple = ()
    field_errors: Reply | None = None


OPENAPI_ATTRIBUTE = "regapp_openapi"


def route(bp: Blueprint, rule: str, purpose: str | None, methods=("POST",), *, body=None,
          query=None, responses=None, auth=False, aliases=None, one_of=(),
          field_errors=None, **options):
    """``bp.route`` that also declares the route's rate-limit purpose (limits.py) and,
    for the OpenAPI document, its request schemas and its answers (``RouteDoc``).

    ``responses`` maps each status the route itself answers to a ``Reply``; the
    statuses every route of the profile shares (malformed body, field errors,
    413, 415, 429, 503) come from the profile (``Profile.common_replies``).
    """
    def add(view):
        if purpose is not None:
            limits.declare(purpose)(view)
        profile = getattr(bp, "regapp_profile", None)  # set by blueprint()
        if profile is not None:  # else undocumented: tests/test_openapi.py says so
            doc = RouteDoc(profile, purpose, body, query, dict(responses or {}), auth,
                           {**profile.aliases, **(aliases or {})}, tuple(one_of),
                           field_errors)
            setattr(view, OPENAPI_ATTRIBUTE, doc)
        return bp.route(rule, methods=list(methods), **options)(view)
    return add


@dataclass(frozen=True)
class ProfileSpec:
    """What a profile module declares about itself, as its module-level ``PROFILE``.

    ``prefixes``: the paths (under ``/api``) whose routing errors (404, 405, 413,
    415) are rendered in this profile's format. ``shared``: always mounted, never
    named in ``REGAPP_PROFILES``, and the format of routing errors no profile claims.
    """

    profile: Profile
    blueprint: Blueprint
    prefixes: tuple[str, ...] = ()
    shared: bool = False

    @property
    def name(self) -> str:
        return self.profile.name
