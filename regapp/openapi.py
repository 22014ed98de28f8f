"""The OpenAPI 3.1 document, generated from the routes' own declarations.

Every API route is declared with ``route()`` (regapp/auth/profiles/base.py), which
records a ``RouteDoc`` on its view: the profile it belongs to, its marshmallow request
schemas and the answers it gives. This module walks the app's URL map, so a route
appears in the document exactly when it is mounted (``REGAPP_PROFILES``), and turns
the declarations into OpenAPI with apispec and its marshmallow plugin: request bodies
in the three media types every profile reads, field limits (``maxLength``,
``pattern``), every status with that profile's error body and content type, one tag
per profile. Nothing here lists routes by hand.

``GET /api/openapi.json`` serves the document; ``GET /api/docs`` renders it with
Swagger UI, whose files come from the flask-swagger-ui package and are served from
here (no CDN).
"""

from __future__ import annotations

import copy
import inspect
import re
import sys
from importlib.resources import files

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import render_template
from flask import send_from_directory
from marshmallow import Schema

from .auth.profiles.base import OPENAPI_ATTRIBUTE
from .auth.profiles.base import Reply
from .auth.profiles.base import RouteDoc

EXTENSION = "regapp.openapi"
TITLE = "regapp"
API_VERSION = "1"
DESCRIPTION = (
    "One registration core behind five registration API contracts (the profiles, one "
    "tag each) and the shared routes. Every profile reads JSON and form data and "
    "answers errors in its own format.")
REQUEST_MEDIA_TYPES = ("application/json", "application/x-www-form-urlencoded",
                       "multipart/form-data")
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}  # Flask adds them to every rule
HEADER_DOCS = {
    "Retry-After": {"description": "Seconds to wait before retrying",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "WWW-Authenticate": {"description": "The authentication schemes accepted",
                         "schema": {"type": "string"}},
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "An access token (jwt profile, POST /api/token/)"},
    "token": {"type": "apiKey", "in": "header", "name": "Authorization",
              "description": "`Token <api_token>` (the envelope profile's api_token)"},
}
SWAGGER_DIST = files("flask_swagger_ui") / "dist"
ASSETS = ("swagger-ui.css", "index.css", "swagger-ui-bundle.js",
          "swagger-ui-standalone-preset.js", "favicon-32x32.png", "favicon-16x16.png")
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
            "form-action 'none'; frame-ancestors 'none'; base-uri 'none'")

bp = Blueprint("docs", __name__)


def _field_openapi(self, field, ret, **kwargs) -> dict:
    """apispec attribute function: a field's own ``openapi()`` (base.Text) has the last word."""
    hook = getattr(field, "openapi", None)
    return hook() if callable(hook) else {}


class _Builder:
    def __init__(self):
        self.plugin = MarshmallowPlugin()
        self.spec = APISpec(TITLE, API_VERSION, "3.1.0", plugins=[self.plugin],
                            info={"description": DESCRIPTION})
        self.plugin.converter.add_attribute_function(_field_openapi)
        self.tags: dict[str, str] = {}

    def json_schema(self, schema) -> dict | None:
        if schema is None:
            return None
        if isinstance(schema, type) and issubclass(schema, Schema):
            schema = schema()
        if isinstance(schema, Schema):
            return _clean(self.plugin.converter.schema2jsonschema(schema))
        return copy.deepcopy(schema)

    def operation(self, endpoint: str, view, doc: RouteDoc) -> dict:
        profile = doc.profile
        self.tags.setdefault(profile.name, _first_line(sys.modules[type(profile).__module__]))
        summary, _, description = (inspect.getdoc(view) or endpoint).partition("\n")
        op = {"tags": [profile.name], "operationId": endpoint.replace(".", "_"),
              "summary": summary.strip()}
        if description.strip():
            op["description"] = description.strip()
        if doc.query is not None:
            op["parameters"] = [_clean(p) for p in self.plugin.converter.schema2parameters(
                doc.query, location="query")]
        if doc.body is not None:
            body = _variants(self.json_schema(doc.body), doc.one_of, doc.aliases or {})
            op["requestBody"] = {"required": True, "content": {
                media: {"schema": profile.body_schema(copy.deepcopy(body),
                                                      form=media != "application/json")}
                for media in REQUEST_MEDIA_TYPES}}
        if doc.auth:
            op["security"] = [{name: []} for name in SECURITY_SCHEMES]
        op["responses"] = self.responses(doc)
        return op

    def responses(self, doc: RouteDoc) -> dict:
        merged: dict[int, list[Reply]] = {}
        for status, reply in [*doc.profile.common_replies(doc), *doc.responses.items()]:
            merged.setdefault(status, []).append(reply)
        return {str(status): self.response(doc, replies)
                for status, replies in sorted(merged.items())}

    def response(self, doc: RouteDoc, replies: list[Reply]) -> dict:
        out: dict = {"description": "; ".join(dict.fromkeys(r.description for r in replies))}
        content: dict[str, list] = {}
        # A header is documented when every answer with this status carries it.
        common = set.intersection(*(set(r.headers) for r in replies))
        headers = {name: {**HEADER_DOCS[name], "required": True} for name in sorted(common)}
        for reply in replies:
            schema = self.json_schema(reply.schema)
            if schema is not None:
                media = reply.media_type or doc.profile.media_type
                if schema not in content.setdefault(media, []):
                    content[media].append(schema)
        if content:
            out["content"] = {media: {"schema": schemas[0] if len(schemas) == 1
                                      else {"anyOf": schemas}}
                              for media, schemas in content.items()}
        if headers:
            out["headers"] = headers
        return out

    def build(self, app) -> dict:
        paths: dict[str, dict] = {}
        for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
            view = app.view_functions[rule.endpoint]
            doc = getattr(view, OPENAPI_ATTRIBUTE, None)
            if doc is None:
                continue
            for method in sorted(rule.methods - AUTOMATIC_METHODS):
                paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = (
                    self.operation(rule.endpoint, view, doc))
        for path, operations in paths.items():
            self.spec.path(path=path, operations=operations)
        for name, scheme in SECURITY_SCHEMES.items():
            self.spec.components.security_scheme(name, scheme)
        for name, text in self.tags.items():
            self.spec.tag({"name": name, "description": text})
        return self.spec.to_dict()


def openapi_path(rule: str) -> str:
    """``/a/<int:id>/`` as ``/a/{id}/``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _first_line(module) -> str:
    return (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""


def _variants(schema: dict, one_of: tuple, aliases: dict) -> dict:
    """The bodies a route accepts: one per group of ``one_of`` (that group required,
    the fields of the groups before it absent, since those would decide), and for
    each, one where ``alias`` stands in for a required ``field`` that is absent."""
    required = list(schema.get("required", ()))
    groups = [(sorted({*required, *fields}),
               [f for earlier in one_of[:i] for f in earlier if f not in fields])
              for i, fields in enumerate(one_of)] or [(required, [])]
    variants = []
    for names, absent in groups:
        variants.append(_variant(schema, names, absent))
        for field, alias in aliases.items():
            if field in names:
                variant = _variant(schema, [alias if n == field else n for n in names],
                                   [*absent, field])
                variant["properties"][alias] = copy.deepcopy(schema["properties"][field])
                variants.append(variant)
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def _variant(schema: dict, required: list, absent: list) -> dict:
    variant = copy.deepcopy(schema)
    if required:
        variant["required"] = required
    if absent:
        variant["not"] = ({"required": absent} if len(absent) == 1
                          else {"anyOf": [{"required": [name]} for name in absent]})
    return variant


def _clean(value):
    """Drop the ``None`` values a field's ``openapi()`` uses to remove a key."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def document(app=None) -> dict:
    """The app's OpenAPI document, built once from its URL map."""
    app = app or current_app
    if EXTENSION not in app.extensions:
        app.extensions[EXTENSION] = _Builder().build(app)
    return app.extensions[EXTENSION]


def documented_operations(app) -> set[tuple[str, str]]:
    """``{(METHOD, path)}`` of the document."""
    return {(method.upper(), path) for path, ops in document(app)["paths"].items()
            for method in ops}


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI 3.1 document of every mounted API route."""
    return jsonify(document())


@bp.get("/docs")
def docs():
    """Swagger UI over /api/openapi.json."""
    return render_template("docs/swagger.html")


@bp.get("/docs/<name>")
def docs_asset(name):
    """Swagger UI's files (from the flask-swagger-ui package) and our start-up script."""
    if name == "init.js":
        return send_from_directory(files("regapp") / "templates" / "docs", "init.js",
                                   mimetype="text/javascript")
    if name not in ASSETS:
        return current_app.response_class("Not found", 404, mimetype="text/plain")
    return send_from_directory(SWAGGER_DIST, name)


@bp.after_request
def docs_policy(response):
    """The viewer runs Swagger UI's own scripts and styles, from this origin only."""
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


def init_app(app) -> None:
    """Serve the document and its viewer under /api."""
    app.register_blueprint(bp, url_prefix="/api")
