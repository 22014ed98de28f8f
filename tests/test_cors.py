"""CORS_ORIGINS: exact origins may call /api/ from a browser; nobody else, nothing else."""

from __future__ import annotations

import pytest

from regapp import create_app

APP_ORIGIN = "http://localhost:3000"
PREFLIGHT = {"Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type"}
cors = pytest.mark.config(CORS_ORIGINS=[APP_ORIGIN, "https://app.example.org"])


@cors
def test_preflight_from_an_allowed_origin(client):
    r = client.options("/api/register/", headers=PREFLIGHT)
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert r.headers["Access-Control-Allow-Headers"].lower() == "content-type"
    assert r.headers["Access-Control-Max-Age"] == "600"
    assert "Access-Control-Allow-Credentials" not in r.headers
    assert "Origin" in r.headers["Vary"]


@cors
def test_preflight_for_the_authorization_header(client):
    r = client.options("/api/users/me", headers={
        "Origin": APP_ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert r.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert r.headers["Access-Control-Allow-Headers"].lower() == "authorization"


@cors
@pytest.mark.parametrize("origin", [
    "http://localhost:3001", "https://localhost:3000", "http://evil.example.org",
    "http://localhost:3000.evil.example.org", "null", "https://app.example.org.evil.io"])
def test_preflight_from_another_origin_gets_no_cors_headers(client, origin):
    r = client.options("/api/register/", headers={**PREFLIGHT, "Origin": origin})
    assert not [h for h in r.headers.keys() if h.startswith("Access-Control-")]


@cors
def test_actual_response_exposes_retry_after_and_request_id(client):
    r = client.post("/api/register/", json={}, headers={"Origin": APP_ORIGIN})
    assert r.status_code == 400
    assert r.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    exposed = {h.strip().lower() for h in r.headers["Access-Control-Expose-Headers"].split(",")}
    assert exposed == {"retry-after", "x-request-id"}
    assert "Access-Control-Allow-Credentials" not in r.headers


@cors
def test_origin_matching_ignores_case_of_scheme_and_host(client):
    r = client.get("/api/users/me", headers={"Origin": "HTTP://LocalHost:3000"})
    assert r.status_code == 401
    assert "Access-Control-Allow-Origin" in r.headers


@cors
def test_pages_outside_api_get_no_cors_headers(client):
    r = client.get("/confirm-email/", headers={"Origin": APP_ORIGIN})
    assert "Access-Control-Allow-Origin" not in r.headers
    r = client.options("/confirm-email/", headers=PREFLIGHT)
    assert "Access-Control-Allow-Origin" not in r.headers


def test_cors_is_off_by_default(client):
    r = client.options("/api/register/", headers=PREFLIGHT)
    assert not [h for h in r.headers.keys() if h.startswith("Access-Control-")]
    r = client.post("/api/register/", json={}, headers={"Origin": APP_ORIGIN})
    assert not [h for h in r.headers.keys() if h.startswith("Access-Control-")]


@pytest.mark.parametrize("value", [
    "localhost:3000", "http://localhost:3000/", "http://localhost:3000/app", "*",
    "ftp://localhost", "http://user@localhost", "http://localhost:abc", "http://",
    "http://localhost:3000?x", "https://a.example.org#f", "http://local host"])
def test_a_bad_origin_refuses_to_start(value, monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", f"http://ok.example.org,{value}")
    with pytest.raises(RuntimeError, match="CORS_ORIGINS"):
        create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_origins_from_the_environment(monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", " http://localhost:3000 , https://[::1]:8443,")
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert app.config["CORS_ORIGINS"] == ["http://localhost:3000", "https://[::1]:8443"]
    r = app.test_client().options("/api/register/", headers={**PREFLIGHT,
                                                             "Origin": "https://[::1]:8443"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://[::1]:8443"
