"""GET /api/openapi.json and /api/docs: the document is generated from the routes'
declarations and lists exactly the operations the URL map serves."""

from __future__ import annotations

import re

import pytest

from regapp.auth.profiles.base import OPENAPI_ATTRIBUTE
from regapp.openapi import AUTOMATIC_METHODS
from regapp.openapi import openapi_path

FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def served_operations(app) -> set[tuple[str, str]]:
    """``(METHOD, path)`` of every /api/ route but the document and its viewer."""
    return {(method, openapi_path(rule.rule)) for rule in app.url_map.iter_rules()
            if rule.rule.startswith("/api/") and not rule.endpoint.startswith("docs.")
            for method in rule.methods - AUTOMATIC_METHODS}


def listed_operations(doc) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


def operation(doc, method, path) -> dict:
    return doc["paths"][path][method]


def body_schema(op, media="application/json") -> dict:
    return op["requestBody"]["content"][media]["schema"]


def test_url_map_and_document_list_the_same_operations(app, client):
    r = client.get("/api/openapi.json")
    assert r.status_code == 200
    assert r.mimetype == "application/json"
    doc = r.get_json()
    assert doc["openapi"] == "3.1.0"
    assert listed_operations(doc) == served_operations(app)
    assert ("POST", "/api/register/") in served_operations(app)  # the probe itself works


def test_every_api_route_declares_itself(app):
    undeclared = [rule.rule for rule in app.url_map.iter_rules()
                  if rule.rule.startswith("/api/") and not rule.endpoint.startswith("docs.")
                  and not hasattr(app.view_functions[rule.endpoint], OPENAPI_ATTRIBUTE)]
    assert not undeclared, f"routes not declared with route(): {undeclared}"


@pytest.mark.config(REGAPP_PROFILES=["drf"])
def test_only_enabled_profiles_are_described(app, client):
    doc = client.get("/api/openapi.json").get_json()
    assert listed_operations(doc) == served_operations(app)
    tags = {tag for ops in doc["paths"].values() for op in ops.values() for tag in op["tags"]}
    assert tags == {"drf", "common"}
    assert "/api/users/registration" not in doc["paths"]


def test_operations_are_tagged_by_profile(client):
    doc = client.get("/api/openapi.json").get_json()
    assert {t["name"] for t in doc["tags"]} == {"drf", "envelope", "laravel", "jsonapi",
                                                 "jwt", "common"}
    assert operation(doc, "post", "/api/users/register")["tags"] == ["laravel"]
    assert operation(doc, "post", "/api/v1/user/register")["tags"] == ["envelope"]
    assert operation(doc, "get", "/api/users/me")["tags"] == ["common"]


def test_bodies_in_all_three_media_types_with_limits(client):
    doc = client.get("/api/openapi.json").get_json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method == "post":
                assert set(op["requestBody"]["content"]) == {"application/json", *FORMS}, path
    drf = body_schema(operation(doc, "post", "/api/register/"))
    assert drf["required"] == sorted(["username", "email", "password"])
    assert drf["properties"]["username"]["maxLength"] == 150
    assert re.search(drf["properties"]["username"]["pattern"], " bob.smith+1@x ")
    assert drf["properties"]["email"]["format"] == "email"
    laravel = body_schema(operation(doc, "post", "/api/users/register"))
    assert laravel["properties"]["password"]["minLength"] == 8
    assert laravel["properties"]["insertion"]["type"] == ["string", "null"]
    assert laravel["properties"]["postal_code"]["maxLength"] == 191


def test_the_six_digit_code_has_its_pattern(client):
    doc = client.get("/api/openapi.json").get_json()
    token = body_schema(operation(doc, "post", "/api/users/validation"))["properties"]["token"]
    patterns = [choice.get("pattern") for choice in token["anyOf"]]
    assert "^[0-9]{6}$" in patterns
    number = next(choice for choice in token["anyOf"] if choice["type"] == "integer")
    assert (number["minimum"], number["maximum"]) == (0, 999999)


def test_every_status_a_route_answers_is_listed(client):
    doc = client.get("/api/openapi.json").get_json()
    assert set(operation(doc, "post", "/api/users/validation")["responses"]) == {
        "201", "401", "409", "413", "415", "400", "422", "429", "503"}
    assert set(operation(doc, "post", "/api/register/")["responses"]) == {
        "201", "400", "413", "415", "429", "503"}
    assert set(operation(doc, "get", "/api/users/me")["responses"]) == {"200", "401", "503"}
    retry = operation(doc, "post", "/api/register/")["responses"]["429"]["headers"]
    assert retry["Retry-After"]["required"] is True


def test_jsonapi_errors_are_json_api_documents_with_source(client):
    doc = client.get("/api/openapi.json").get_json()
    responses = operation(doc, "post", "/api/users/registration")["responses"]
    assert set(responses["422"]["content"]) == {"application/vnd.api+json"}
    item = responses["422"]["content"]["application/vnd.api+json"]["schema"]["properties"][
        "errors"]["items"]
    assert "source" in item["required"]
    # Seed 003's verification errors are {name: text}, with no source.
    verification = operation(doc, "get", "/api/users/verification")["responses"]["422"]
    choices = verification["content"]["application/vnd.api+json"]["schema"]["properties"][
        "errors"]["items"]["anyOf"]
    assert all("source" not in c["properties"] for c in choices)
    assert {name for c in choices for name in c["required"]} == {"email_token", "user_account"}


def test_envelope_error_codes_are_an_enum_with_meanings(client):
    doc = client.get("/api/openapi.json").get_json()
    responses = operation(doc, "post", "/api/v1/user/register")["responses"]
    schemas = responses["400"]["content"]["application/json"]["schema"]["anyOf"]
    codes = {c for s in schemas for c in s["properties"]["error_code"]["enum"]}
    assert codes == {-1, -2, -3, -4, -5, -6}
    field = next(s for s in schemas if -1 in s["properties"]["error_code"]["enum"])
    meanings = field["properties"]["error_code"]["x-enum-descriptions"]
    assert "username already exists" in meanings["-1"]
    assert responses["201"]["content"]["application/json"]["schema"]["properties"][
        "error_code"]["enum"] == [0]
    assert responses["415"]["content"]["application/json"]["schema"]["properties"][
        "error_code"]["enum"] == [-415]


def test_envelope_email_alias_is_described(client):
    doc = client.get("/api/openapi.json").get_json()
    for media in ("application/json", *FORMS):
        variants = body_schema(operation(doc, "post", "/api/v1/user/register"), media)["anyOf"]
        assert [v["required"] for v in variants] == [
            ["email_address", "password", "username"], ["email", "password", "username"]]


def test_me_declares_both_credential_schemes(client):
    doc = client.get("/api/openapi.json").get_json()
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "token"}
    assert operation(doc, "get", "/api/users/me")["security"] == [{"bearer": []},
                                                                  {"token": []}]


def test_document_loads_in_schemathesis(app):
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    labels = {op.ok().label for op in schema.get_all_operations()}
    assert "POST /api/register/" in labels
    assert len(labels) == len(listed_operations(app.extensions["regapp.openapi"]))


def test_docs_page_is_swagger_ui_served_locally(client):
    r = client.get("/api/docs")
    assert r.status_code == 200
    assert r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/api/docs/") for s in sources), sources
    assert "<script>" not in html  # no inline script: the CSP allows 'self' only
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "default-src 'none'" in csp
    for source in sources:
        asset = client.get(source)
        asset.close()  # file responses hold the file open until closed
        assert asset.status_code == 200, source
        assert asset.headers["Content-Security-Policy"] == csp
    bundle = client.get("/api/docs/swagger-ui-bundle.js")
    assert bundle.mimetype == "text/javascript"
    assert b"SwaggerUIBundle" in bundle.data
    bundle.close()
    assert client.get("/api/docs/..%2Fopenapi.py").status_code == 404
    assert client.get("/api/docs/LICENSE").status_code == 404


@pytest.mark.config(REGAPP_PROFILE_MODULES=["tests.test_extra_profile"])
def test_a_profile_added_by_module_is_described_from_its_declarations(app, client):
    doc = client.get("/api/openapi.json").get_json()
    assert listed_operations(doc) == served_operations(app)
    assert operation(doc, "post", "/api/tiny/join")["tags"] == ["tiny"]
    assert "429" in operation(doc, "post", "/api/tiny/ping")["responses"]
