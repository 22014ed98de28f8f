"""A sixth profile defined here, in the test, and nowhere else: the registry, the
routing-error table and the rate limits all pick it up from its declaration."""

from __future__ import annotations

import pytest

from regapp.auth import limits
from regapp.auth.profiles.base import Email
from regapp.auth.profiles.base import Profile
from regapp.auth.profiles.base import ProfileSchema
from regapp.auth.profiles.base import ProfileSpec
from regapp.auth.profiles.base import Text
from regapp.auth.profiles.base import blueprint
from regapp.auth.profiles.base import route
from regapp.core.passwords import MinLengthPolicy

PASSWORD = "Str0ng-passphrase"


class TinySchema(ProfileSchema):
    email = Email(required=True)
    password = Text(required=True, strip=False, max_length=1024)


class TinyProfile(Profile):
    name = "tiny"
    schema = TinySchema()
    policy = MinLengthPolicy(8)
    http_texts = {404: "no such thing", 429: "slow down ({retry_after}s)"}
    http_default = "tiny failure"

    def malformed(self, exc):
        return self.json({"tiny_error": "bad body"}, 400)

    def render_http_error(self, exc, status, text, headers):
        return self.json({"tiny_error": text}, status, headers)

    def field_errors(self, exc):
        return self.json({"tiny_fields": {e.field: e.code for e in exc.errors}}, 400)

    def registered(self, result):
        return self.json({"tiny_email": result.user.email}, 201)


profile = TinyProfile()
bp = blueprint(profile, __name__, register="/tiny/join")


@route(bp, "/tiny/ping", limits.RESEND, endpoint="ping")
def ping():
    return profile.json({"tiny": "pong"}, 200)


PROFILE = ProfileSpec(profile, bp, prefixes=("/api/tiny",))

with_tiny = pytest.mark.config(REGAPP_PROFILE_MODULES=[__name__])


@with_tiny
def test_the_extra_profile_is_registered_and_enabled_by_default(app):
    assert "tiny" in app.config["REGAPP_PROFILES"]
    assert limits.limited_endpoints(app)["auth.tiny.register"] == limits.REGISTRATION
    assert limits.limited_endpoints(app)["auth.tiny.ping"] == limits.RESEND


@with_tiny
def test_its_routes_work(client):
    r = client.post("/api/tiny/join", json={"email": "Tiny@Example.org", "password": PASSWORD})
    assert (r.status_code, r.get_json()) == (201, {"tiny_email": "Tiny@example.org"})
    assert r.headers["Cache-Control"] == "no-store"
    assert client.post("/api/tiny/ping").get_json() == {"tiny": "pong"}


@with_tiny
def test_its_errors_render_in_its_format(client):
    r = client.post("/api/tiny/join", json={"email": "", "password": "short"})
    assert (r.status_code, r.get_json()) == (
        400, {"tiny_fields": {"email": "blank"}})
    r = client.post("/api/tiny/join", json={"email": "t@example.org", "password": "short"})
    assert (r.status_code, r.get_json()) == (
        400, {"tiny_fields": {"password": "password_too_short"}})
    r = client.post("/api/tiny/join", data=b"{", content_type="application/json")
    assert (r.status_code, r.get_json()) == (400, {"tiny_error": "bad body"})


@with_tiny
def test_its_routing_errors_under_its_prefix_render_in_its_format(client):
    r = client.get("/api/tiny/nope")
    assert (r.status_code, r.get_json()) == (404, {"tiny_error": "no such thing"})
    r = client.get("/api/tiny/join")
    assert (r.status_code, r.get_json()) == (405, {"tiny_error": "tiny failure"})
    assert "POST" in r.headers["Allow"]
    # Elsewhere under /api/ the other profiles keep theirs.
    assert client.get("/api/nope").get_json() == {"detail": "Not found."}


@pytest.mark.config(REGAPP_PROFILE_MODULES=[__name__], RATELIMIT_ENABLED=True,
                    RATELIMIT_REGISTRATION="2/minute")
def test_its_routes_are_throttled_by_their_declared_purpose(client):
    # One registration bucket per IP for every profile: drf's use counts here too.
    assert client.post("/api/register/", json={}).status_code == 400
    assert client.post("/api/tiny/join", json={}).status_code == 400
    r = client.post("/api/tiny/join", json={})
    assert r.status_code == 429
    seconds = r.headers["Retry-After"]
    assert r.get_json() == {"tiny_error": f"slow down ({seconds}s)"}


@pytest.mark.config(REGAPP_PROFILE_MODULES=[__name__], REGAPP_PROFILES=["drf"])
def test_it_is_switched_off_like_any_other(app, client):
    assert app.config["REGAPP_PROFILES"] == ["drf"]
    r = client.post("/api/tiny/join", json={"email": "t@example.org", "password": PASSWORD})
    assert (r.status_code, r.get_json()) == (404, {"detail": "Not found."})
