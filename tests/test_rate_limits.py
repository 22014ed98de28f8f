"""Abuse throttling (SECURITY.md C3-C7, E7, F9): what a client sees when it is limited."""

import logging
import os
import time
import uuid
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest
import redis
import sqlalchemy as sa

from config import Config
from regapp import create_app
from regapp.auth import limits
from regapp.extensions import db
from regapp.models import User
from tests.smtp import confirmation
from tests.smtp import free_port
from tests.smtp import kind as mail_kind

PASSWORD = "Str0ng-passphrase"
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(not TEST_REDIS_URL, reason="TEST_REDIS_URL is not set")
RESEND_API = ("If this address is registered and not yet confirmed, "
              "a new confirmation email is on its way.")
# POST routes under /api that are deliberately not throttled (none so far).
UNTHROTTLED_POSTS: set[str] = set()


def on(**limits_):
    """Config marker: rate limiting on, with these limit strings."""
    return pytest.mark.config(RATELIMIT_ENABLED=True, **limits_)


def validation(client, email, token, ip="127.0.0.1"):
    return client.post("/api/users/validation", json={"email": email, "token": token},
                       environ_base={"REMOTE_ADDR": ip})


def retry_after(response) -> int:
    value = response.headers.get("Retry-After", "")
    assert value.isdigit(), response.headers
    return int(value)


def assert_throttled_json(response, window=60):
    assert response.status_code == 429
    assert 1 <= retry_after(response) <= window
    assert response.mimetype in ("application/json", "application/vnd.api+json")
    assert response.get_json() is not None


def routes(app, kind):
    """``[(method, path, endpoint)]`` of the throttled routes of one purpose."""
    out = []
    for rule in app.url_map.iter_rules():
        if limits.purpose(rule.endpoint, app) == kind and not rule.arguments:
            method = "POST" if "POST" in rule.methods else "GET"
            out.append((method, rule.rule, rule.endpoint))
    return sorted(out)


def call(client, method, path, **kwargs):
    if method == "POST":
        return client.post(path, json={}, **kwargs)
    return client.get(path, **kwargs)


def sent_back(app, seconds=61):
    """Pretend the last confirmation email went out ``seconds`` ago."""
    with app.app_context():
        db.session.execute(sa.update(User).values(
            confirmation_sent_at=datetime.now(timezone.utc) - timedelta(seconds=seconds)))
        db.session.commit()


# -- which endpoints are throttled -------------------------------------------------------

@pytest.mark.parametrize(("endpoint", "kind"), [
    ("auth.drf.register", "registration"),
    ("auth.envelope.register", "registration"),
    ("auth.laravel.register", "registration"),
    ("auth.jsonapi.registration", "registration"),
    ("auth.jwt.sign_up", "registration"),
    ("auth.drf.confirm_email", "confirmation"),
    ("auth.jsonapi.verification", "confirmation"),
    ("auth.laravel.validation", "confirmation"),
    ("pages.confirm_submit", "confirmation"),
    ("auth.common.resend_confirmation", "resend"),
    ("pages.resend", "resend"),
    ("auth.jwt.token_obtain_pair", "token"),
    ("auth.common.token_refresh", "token"),
    ("auth.common.login", "token"),
    ("auth.common.logout", "token"),
    ("auth.envelope.login", "token"),
    ("auth.common.password_reset", "reset"),
    ("auth.common.password_reset_confirm", "reset"),
    ("pages.reset_submit", "reset"),
    ("pages.reset_request", "reset"),
    ("pages.cancel_submit", "confirmation"),
    ("pages.reset_page", None),
    ("pages.cancel_page", None),
    ("pages.confirm_page", None),
    ("auth.common.me", None),
    ("static", None),
    (None, None),
])
def test_endpoints_declare_their_purpose(app, endpoint, kind):
    assert limits.purpose(endpoint, app) == kind


def test_every_api_post_route_is_throttled(app):
    for rule in app.url_map.iter_rules():
        if "POST" in rule.methods and rule.rule.startswith("/api/"):
            assert limits.purpose(rule.endpoint, app) or rule.endpoint in UNTHROTTLED_POSTS, (
                f"{rule.endpoint} ({rule.rule}) declares no rate-limit purpose; add "
                "@limits.declare(...) or list it in UNTHROTTLED_POSTS")
    assert limits.limited_endpoints(app)["pages.confirm_submit"] == "confirmation"


def test_off_in_tests_by_default_on_in_the_config(app, client, monkeypatch):
    monkeypatch.delenv("RATELIMIT_ENABLED", raising=False)
    monkeypatch.delenv("RATELIMIT_STORAGE_URI", raising=False)
    assert Config.RATELIMIT_ENABLED is True
    assert Config.RATELIMIT_STORAGE_URI == "memory://"
    assert app.config["RATELIMIT_ENABLED"] is False
    for _ in range(15):
        assert client.post("/api/register/", json={}).status_code == 400


def test_limits_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("REGAPP_CONFIG", "development")
    monkeypatch.setenv("RATELIMIT_REGISTRATION", "7/hour")
    monkeypatch.setenv("TRUSTED_PROXY_COUNT", "2")
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert app.config["RATELIMIT_REGISTRATION"] == "7/hour"
    assert app.config["TRUSTED_PROXY_COUNT"] == 2


def test_a_malformed_limit_fails_at_start_up():
    with pytest.raises(ValueError):
        create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://",
                    "RATELIMIT_ENABLED": True, "RATELIMIT_REGISTRATION": "ten a minute"})


def test_production_with_memory_storage_warns(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("SECRET_KEY", "p" * 40)
    monkeypatch.setenv("FRONTEND_URL", "https://example.org")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///" + str(tmp_path / "p.sqlite"))
    monkeypatch.setenv("MAIL_SERVER", "localhost")
    monkeypatch.setenv("MAIL_DEFAULT_SENDER", "accounts@example.org")
    monkeypatch.delenv("RATELIMIT_STORAGE_URI", raising=False)
    monkeypatch.delenv("RATELIMIT_ENABLED", raising=False)
    with caplog.at_level(logging.WARNING):
        app = create_app("production")
    assert app.config["RATELIMIT_ENABLED"] is True
    assert "memory:// counts per worker process" in caplog.text


# -- registration (C3) ---------------------------------------------------------------------

@on(RATELIMIT_REGISTRATION="3/minute")
def test_registration_per_ip(app, client, deliver, sign_up):
    assert sign_up("ada").status_code == 201
    assert client.post("/api/register/", json={}).status_code == 400
    assert sign_up("ada").status_code == 400  # failures count too
    r = sign_up("bob")
    assert_throttled_json(r)
    assert r.get_json() == {
        "detail": f"Request was throttled. Expected available in {retry_after(r)} seconds."}
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(User.id))) == 1
    # One confirmation; the refused duplicate told the owner (issue 10).
    assert [mail_kind(m) for m in deliver()] == ["confirm", "duplicate_pending"]
    # Another address is a fresh bucket.
    assert sign_up("bob", environ_base={"REMOTE_ADDR": "192.0.2.77"}).status_code == 201


@on(RATELIMIT_REGISTRATION="2/minute")
def test_one_registration_bucket_for_every_profile(app, client):
    paths = routes(app, "registration")
    assert len(paths) >= 2, paths
    for method, path, _ in paths[:2]:
        assert call(client, method, path).status_code != 429
    for method, path, endpoint in paths:
        r = call(client, method, path)
        assert_throttled_json(r)
        assert b"<html" not in r.data.lower(), endpoint


@on(RATELIMIT_REGISTRATION="1/second")
def test_allowed_again_after_the_window(client):
    assert client.post("/api/register/", json={}).status_code == 400
    r = client.post("/api/register/", json={})
    assert r.status_code == 429 and retry_after(r) == 1
    time.sleep(retry_after(r) + 0.05)
    assert client.post("/api/register/", json={}).status_code == 400


# -- 429 in each profile's format -----------------------------------------------------------

@on(RATELIMIT_REGISTRATION="1/minute", RATELIMIT_CONFIRMATION="1/minute",
    RATELIMIT_RESEND="1/minute", RATELIMIT_TOKEN="1/minute", RATELIMIT_RESET="1/minute")
def test_every_throttled_route_answers_in_its_own_format(app, client):
    seen = 0
    for kind in ("registration", "confirmation", "resend", "token", "reset"):
        for i, (method, path, endpoint) in enumerate(routes(app, kind)):
            if i == 0:
                assert call(client, method, path).status_code != 429
            r = call(client, method, path)
            assert r.status_code == 429, endpoint
            if path.startswith("/api/"):
                assert_throttled_json(r)
            else:
                assert r.mimetype == "text/html" and 1 <= retry_after(r) <= 60
            seen += 1
    assert seen >= 7


@on(RATELIMIT_CONFIRMATION="1/minute", RATELIMIT_RESEND="1/minute")
def test_429_bodies_per_profile(client):
    validation(client, "a@x.io", "123456")
    r = validation(client, "a@x.io", "123456")
    assert_throttled_json(r)
    assert r.get_json() == {"message": "Too Many Attempts."}

    r = client.get("/api/users/verification", query_string={"email_token": "x"})
    assert_throttled_json(r)
    assert r.headers["Content-Type"] == "application/vnd.api+json; charset=utf-8"
    seconds = retry_after(r)
    assert r.get_json() == {"errors": [{
        "status": "429", "title": "Too many requests",
        "detail": f"Too many requests. Retry after {seconds} seconds.", "source": {}}],
        "jsonapi": {"version": "1.0"}}

    r = client.get("/api/confirm-email/", query_string={"token_id": "x"})
    assert_throttled_json(r)
    assert r.get_json() == {
        "detail": f"Request was throttled. Expected available in {retry_after(r)} seconds."}

    r = client.post("/confirm-email/", data={"token_id": "x"})
    assert r.status_code == 429 and r.mimetype == "text/html"
    assert f"Retry after {retry_after(r)} seconds" in r.get_data(as_text=True)
    assert r.headers["Cache-Control"] == "no-store"

    client.post("/api/resend-confirmation/", json={"email": "a@x.io"})
    r = client.post("/api/resend-confirmation/", json={"email": "a@x.io"})
    assert_throttled_json(r)
    assert r.get_json() == {
        "detail": f"Request was throttled. Expected available in {retry_after(r)} seconds."}
    r = client.post("/confirm-email/resend", data={"email": "a@x.io"})
    assert r.status_code == 429 and r.mimetype == "text/html" and retry_after(r) >= 1


@on(RATELIMIT_CONFIRMATION="1/minute")
def test_head_and_options_are_not_counted(client):
    for _ in range(5):
        assert client.head("/api/confirm-email/?token_id=x").status_code == 200
        assert client.options("/api/users/validation").status_code == 200
    assert client.get("/api/confirm-email/?token_id=x").status_code == 400
    assert client.get("/api/confirm-email/?token_id=x").status_code == 429


# -- confirmation attempts: per IP and per email (C3, C7) ------------------------------------

@on(RATELIMIT_CONFIRMATION="3/minute", RATELIMIT_CONFIRMATION_PER_EMAIL="100/minute")
def test_one_confirmation_bucket_per_ip_across_endpoints(client):
    assert validation(client, "a@x.io", "123456").status_code == 401
    assert client.get("/api/confirm-email/?token_id=x").status_code == 400
    assert client.get("/api/users/verification?email_token=x").status_code == 422
    assert client.post("/confirm-email/", data={"token_id": "x"}).status_code == 429
    assert_throttled_json(validation(client, "b@x.io", "123456"))
    assert validation(client, "b@x.io", "123456", ip="192.0.2.9").status_code == 401


@on(RATELIMIT_CONFIRMATION="100/minute", RATELIMIT_CONFIRMATION_PER_EMAIL="2/minute")
def test_code_attempts_per_email_share_a_bucket_across_case_and_ips(client, caplog):
    assert validation(client, "victim@x.io", "111111", ip="192.0.2.1").status_code == 401
    assert validation(client, "Victim@X.io", "222222", ip="192.0.2.2").status_code == 401
    with caplog.at_level(logging.DEBUG):
        r = validation(client, "VICTIM@X.IO", "333333", ip="192.0.2.3")
        assert_throttled_json(r)
        assert validation(client, " victim@x.io ", "444444", ip="192.0.2.4").status_code == 429
    assert "victim" not in caplog.text.lower()
    assert validation(client, "other@x.io", "555555", ip="192.0.2.3").status_code == 401


@on(RATELIMIT_CONFIRMATION="100/minute", RATELIMIT_CONFIRMATION_PER_EMAIL="3/minute")
def test_exhausted_code_attempts_never_lock_the_link(app, client, last_confirmation, sign_up):
    assert sign_up("victim").status_code == 201
    link, token, code = last_confirmation()
    for i in range(8):  # the attacker burns the per-email bucket and the code's attempts
        validation(client, "victim@x.io", f"{(int(code) + 1 + i) % 1_000_000:06d}",
                   ip=f"198.51.100.{i}")
    assert validation(client, "victim@x.io", code, ip="192.0.2.50").status_code == 429
    # The owner's link still works: through the page, and through the API links.
    page = client.post("/confirm-email/", data={"token_id": token},
                       environ_base={"REMOTE_ADDR": "192.0.2.50"})
    assert page.status_code == 200
    assert "Email confirmed" in page.get_data(as_text=True)
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email_key == "victim@x.io"))
        assert user.is_email_confirmed is True


@on(RATELIMIT_CONFIRMATION="100/minute", RATELIMIT_CONFIRMATION_PER_EMAIL="1/minute")
def test_link_endpoints_have_no_email_bucket(app, client, last_confirmation, sign_up):
    assert sign_up("victim").status_code == 201
    _, token, _ = last_confirmation()
    validation(client, "victim@x.io", "000000")
    assert validation(client, "victim@x.io", "000000").status_code == 429
    r = client.get("/api/confirm-email/", query_string={"token_id": token})
    assert r.status_code == 200 and r.get_json()["is_email_confirmed"] is True


# -- client IP (C4) ------------------------------------------------------------------------

SPOOF_HEADERS = ("X-Forwarded-For", "X-Real-IP", "Forwarded", "True-Client-IP",
                 "CF-Connecting-IP")


@on(RATELIMIT_REGISTRATION="2/minute")
def test_spoofed_forwarding_headers_never_bypass_the_limit(client):
    statuses = []
    for i in range(5):
        fake = f"203.0.113.{i}"
        headers = {name: fake for name in SPOOF_HEADERS}
        headers["Forwarded"] = f"for={fake}"
        statuses.append(client.post("/api/register/", json={}, headers=headers).status_code)
    assert statuses == [400, 400, 429, 429, 429]


@on(RATELIMIT_REGISTRATION="2/minute", TRUSTED_PROXY_COUNT=1)
def test_one_trusted_proxy_keys_on_the_hop_it_appended(client):
    def post(xff, peer="10.0.0.1"):
        return client.post("/api/register/", json={}, headers={"X-Forwarded-For": xff},
                           environ_base={"REMOTE_ADDR": peer}).status_code

    # The client rotates what it claims; the proxy always appends the real address.
    assert [post(f"203.0.113.{i}, 198.51.100.7") for i in range(4)] == [400, 400, 429, 429]
    # Another real client behind the same proxy has its own bucket.
    assert post("203.0.113.1, 198.51.100.8") == 400
    assert post("198.51.100.8", peer="10.0.0.2") == 400
    assert post("198.51.100.8") == 429


# -- resend: one email per address per cooldown, whatever path (C6) --------------------------

@pytest.mark.config(RESEND_COOLDOWN=60)
def test_one_confirmation_email_per_cooldown_across_paths(app, client, runner, deliver, smtp,
                                                          sign_up):
    assert sign_up("pending").status_code == 201
    assert sign_up("done").status_code == 201
    _, token, _ = confirmation(deliver()[-1])
    assert client.get("/api/confirm-email/", query_string={"token_id": token}).status_code == 200
    smtp.clear()
    sent_back(app)  # both accounts are out of their cooldown

    def api(email):
        r = client.post("/api/resend-confirmation/", json={"email": email})
        return r.status_code, r.headers["Content-Type"], r.data

    def page(email):
        r = client.post("/confirm-email/resend", data={"email": email})
        return r.status_code, r.headers["Content-Type"], r.data

    def cli():
        return runner.invoke(args=["users", "resend-confirmation", "pending@x.io"])

    first = api("pending@x.io")  # sends, and starts the cooldown
    assert first[0] == 202 and first[2] == (b'{"detail":"%s"}\n' % RESEND_API.encode())
    # Nothing else sends inside the cooldown, and nothing tells the cases apart.
    for email in ("PENDING@X.IO", "nobody@x.io", "done@x.io", "pending@x.io"):
        assert api(email) == first
    pages = {page(email) for email in ("pending@x.io", "Pending@x.io", "nobody@x.io",
                                       "done@x.io")}
    assert len(pages) == 1 and next(iter(pages))[0] == 202
    result = cli()
    assert result.exit_code != 0 and "cooldown" in result.output
    assert sign_up("again", email="pending@x.io").status_code == 400
    # One confirmation email; the refused sign-up sent the owner its own mail (issue 10),
    # which is not a confirmation and has its own cooldown.
    assert [(m["To"], mail_kind(m)) for m in deliver()] == [
        ("pending@x.io", "confirm"), ("pending@x.io", "duplicate_pending")]

    sent_back(app)  # the page sends the next one, then nothing else does
    assert page("pending@x.io") == next(iter(pages))
    assert api("pending@x.io") == first
    assert cli().exit_code != 0
    assert [m["To"] for m in deliver() if mail_kind(m) == "confirm"] == ["pending@x.io"] * 2

    sent_back(app)  # and the operator's command the one after
    assert cli().exit_code == 0
    assert api("pending@x.io") == first and page("pending@x.io") == next(iter(pages))
    assert [m["To"] for m in deliver() if mail_kind(m) == "confirm"] == ["pending@x.io"] * 3


@on(RATELIMIT_RESEND="2/minute")
def test_resend_paths_share_one_bucket_per_ip(client, deliver):
    assert client.post("/api/resend-confirmation/", json={"email": "a@x.io"}).status_code == 202
    assert client.post("/confirm-email/resend", data={"email": "b@x.io"}).status_code == 202
    assert_throttled_json(client.post("/api/resend-confirmation/", json={"email": "c@x.io"}))
    assert client.post("/confirm-email/resend", data={"email": "d@x.io"}).status_code == 429


# -- token endpoints (the jwt profile's) -------------------------------------------------------

@on(RATELIMIT_TOKEN="100/minute")
def test_no_token_bucket_per_identifier(app, client, make_user):
    """Issue 10: the per-identifier bucket let anyone lock the owner out (429 on the right
    password); it is gone, and wrong passwords are counted per account in the core."""
    make_user("victim", "victim@x.io")
    assert "RATELIMIT_TOKEN_PER_IDENTIFIER" not in app.config
    for path, name in (("/api/token/", "username"), ("/api/login/", "email")):
        for i in range(12):  # more than the old bucket's 10/minute, each from its own IP
            r = client.post(path, json={name: "victim" if name == "username" else
                                        "Victim@x.io", "password": "wrong-password"},
                            environ_base={"REMOTE_ADDR": f"192.0.2.{i}"})
            assert r.status_code == 401
        r = client.post(path, json={name: "VICTIM" if name == "username" else "victim@X.io",
                                    "password": PASSWORD},
                        environ_base={"REMOTE_ADDR": "198.51.100.7"})
        assert r.status_code == 200, r.get_json()


@on(RATELIMIT_TOKEN="2/minute")
def test_token_endpoints_per_ip(app, client):
    posts = [path for method, path, _ in routes(app, "token") if method == "POST"]
    assert posts, "the jwt profile serves its token endpoints, throttled as 'token'"
    codes = [client.post(posts[i % len(posts)], json={"refresh": "x"}).status_code
             for i in range(3)]
    assert 429 not in codes[:2] and codes[2] == 429


# -- shared counters in Redis (C5) and Redis down (E7) ---------------------------------------

@pytest.fixture
def redis_prefix():
    """A key prefix unique to this test; its keys are deleted afterwards."""
    prefix = f"regapp-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    conn = redis.Redis.from_url(TEST_REDIS_URL)
    keys = list(conn.scan_iter(match=f"*{prefix}*"))
    if keys:
        conn.delete(*keys)
    conn.close()


def twin(app, **config):
    """A second app instance (another worker) with the same settings."""
    keys = ("TESTING", "SQLALCHEMY_DATABASE_URI", "MAIL_SERVER", "MAIL_PORT",
            "RATELIMIT_ENABLED", "RATELIMIT_STORAGE_URI", "RATELIMIT_KEY_PREFIX",
            "RATELIMIT_REGISTRATION")
    return create_app({**{k: app.config[k] for k in keys}, **config})


@needs_redis
@on(RATELIMIT_REGISTRATION="4/minute", RATELIMIT_STORAGE_URI=TEST_REDIS_URL or "memory://")
def test_two_instances_share_counters_in_redis(app, redis_prefix, sign_up):
    first = twin(app, RATELIMIT_KEY_PREFIX=redis_prefix)
    second = twin(app, RATELIMIT_KEY_PREFIX=redis_prefix)
    other_run = twin(app, RATELIMIT_KEY_PREFIX=redis_prefix + "-other")
    try:
        clients = [first.test_client(), second.test_client()]
        codes = [sign_up(f"user{i}", client=clients[i % 2]).status_code for i in range(6)]
        assert codes == [201, 201, 201, 201, 429, 429]
        assert_throttled_json(sign_up("late", client=clients[1]))
        assert sign_up("fresh", client=other_run.test_client()).status_code == 201
    finally:
        for instance in (first, second, other_run):
            with instance.app_context():
                db.engine.dispose()


@on(RATELIMIT_REGISTRATION="2/minute")
def test_redis_down_fails_open_to_per_process_limits(app, client, deliver, caplog, sign_up):
    down = create_app({**{k: app.config[k] for k in (
        "TESTING", "SQLALCHEMY_DATABASE_URI", "MAIL_SERVER", "MAIL_PORT",
        "RATELIMIT_ENABLED", "RATELIMIT_REGISTRATION")},
        "RATELIMIT_STORAGE_URI": f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"})
    try:
        c = down.test_client()
        with caplog.at_level(logging.INFO):
            assert sign_up("ada", client=c).status_code == 201
            assert sign_up("bob", client=c).status_code == 201
            r = sign_up("cyd", client=c)  # limits still hold, in this process's memory
        assert_throttled_json(r)
        assert "rate limiter degraded" in caplog.text
        assert [rec.levelname for rec in caplog.records
                if "rate limiter degraded" in rec.getMessage()] == ["ERROR"]
        assert "s3cret-pw" not in caplog.text
        assert len(deliver()) == 2
    finally:
        with down.app_context():
            db.engine.dispose()


@on(RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=False,
    RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0")
def test_redis_down_without_fallback_still_answers(client, caplog, sign_up):
    with caplog.at_level(logging.ERROR):
        assert sign_up("ada").status_code == 201
        assert client.get("/api/confirm-email/?token_id=x").status_code == 400
    assert "Failed to rate limit" in caplog.text
