"""The HTML page behind the emailed link: GET shows a button, only its POST confirms."""

import re
import time
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from flask import request
from itsdangerous import TimestampSigner
from sqlalchemy import select

from regapp.extensions import db
from regapp.models import User
from tests.smtp import html_part
from tests.smtp import text_part

PASSWORD = "Str0ng-passphrase"
PAGE = "/confirm-email/"


class Forms(HTMLParser):
    """Collect each <form>'s method, action and input values; and every URL-ish attribute."""

    def __init__(self, html):
        super().__init__()
        self.forms, self.urls, self.tags = [], [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.urls += [v for k, v in attrs.items() if k in ("href", "src", "action") and v]
        if tag == "form":
            self.forms.append({"method": attrs.get("method", "get").lower(),
                               "action": attrs.get("action"), "inputs": {}, "buttons": []})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"][attrs.get("name")] = attrs.get("value", "")

    def handle_data(self, data):
        if self.tags and self.tags[-1] == "button" and self.forms and data.strip():
            self.forms[-1]["buttons"].append(data.strip())


def is_confirmed(app, email):
    with app.app_context():
        return db.session.scalar(select(User.is_email_confirmed).where(User.email == email))


def assert_safe_page(response):
    """HTML with no script, nothing loaded from elsewhere, and no-leak headers."""
    assert response.mimetype == "text/html"
    headers = response.headers
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    html = response.get_data(as_text=True)
    assert "<script" not in html.lower()
    page = Forms(html)
    for url in page.urls:
        assert not urlsplit(url).scheme and not urlsplit(url).netloc, url
    assert not re.search(r"https?://", html)
    return page


def test_emailed_link_opens_the_page(client, last_confirmation, make_user):
    make_user()
    link, token, _ = last_confirmation()
    parts = urlsplit(link)
    assert parts.path == PAGE
    r = client.get(f"{parts.path}?{parts.query}")
    assert r.status_code == 200
    assert "Confirm my email" in r.get_data(as_text=True)


def test_get_shows_a_button_and_does_not_confirm(app, client, last_confirmation, make_user):
    email = make_user()
    _, token, _ = last_confirmation()
    r = client.get(PAGE, query_string={"token_id": token})
    assert r.status_code == 200
    page = assert_safe_page(r)
    [form] = page.forms
    assert form["method"] == "post" and form["action"] == PAGE
    assert form["inputs"] == {"token_id": token}
    assert form["buttons"] == ["Confirm my email"]
    # A scanner that fetches (or HEADs) the link many times confirms nothing.
    client.get(PAGE, query_string={"token_id": token})
    client.head(PAGE, query_string={"token_id": token})
    assert is_confirmed(app, email) is False


def test_posting_the_form_confirms_then_already_confirmed(app, client, last_confirmation,
                                                          make_user):
    email = make_user()
    _, token, _ = last_confirmation()
    [form] = Forms(client.get(PAGE, query_string={"token_id": token}).get_data(as_text=True)
                   ).forms
    r = client.post(form["action"], data=form["inputs"])
    assert r.status_code == 200
    assert_safe_page(r)
    assert "Email confirmed" in r.get_data(as_text=True)
    assert is_confirmed(app, email) is True
    for again in (client.get(PAGE, query_string={"token_id": token}),
                  client.post(form["action"], data=form["inputs"])):
        assert again.status_code == 200
        page = assert_safe_page(again)
        assert "already confirmed" in again.get_data(as_text=True)
        assert page.forms == []


@pytest.mark.parametrize("query", [
    "?token_id=", "?token_id=nonsense", "?token_id=123456", "?token_id=%00",
    "?token_id=%ED%A0%80", "?token_id=" + "a" * 5000,
])
def test_bad_link_says_so_and_offers_the_resend_form(client, query):
    r = client.get(PAGE + query)
    assert r.status_code == 400
    page = assert_safe_page(r)
    assert "This link is not valid" in r.get_data(as_text=True)
    [form] = page.forms
    assert form["method"] == "post" and form["action"] == "/confirm-email/resend"
    assert "email" in form["inputs"]


def test_repeated_or_missing_token_in_the_form_confirms_nothing(app, client,
                                                                last_confirmation, make_user):
    email = make_user()
    _, token, _ = last_confirmation()
    for data in ({}, {"token_id": ""}, {"token_id": [token, token]}):
        r = client.post(PAGE, data=data)
        assert r.status_code == 400
        assert_safe_page(r)
    assert client.post(PAGE, json={"token_id": token}).status_code == 400
    assert is_confirmed(app, email) is False


def test_expired_link_offers_a_resend_that_works(app, client, last_confirmation,
                                                 monkeypatch, make_user):
    monkeypatch.setattr(TimestampSigner, "get_timestamp",
                        lambda self: int(time.time()) - 2 * 86400)
    email = make_user()
    monkeypatch.undo()
    _, old_token, _ = last_confirmation()
    r = client.get(PAGE, query_string={"token_id": old_token})
    assert r.status_code == 400
    [form] = assert_safe_page(r).forms
    assert "This link has expired" in r.get_data(as_text=True)
    # The old token can't confirm through the form either.
    assert client.post(PAGE, data={"token_id": old_token}).status_code == 400
    r = client.post(form["action"], data={**form["inputs"], "email": email})
    assert r.status_code == 202
    assert_safe_page(r)
    assert "Check your inbox" in r.get_data(as_text=True)
    _, new_token, _ = last_confirmation()
    assert new_token != old_token
    assert client.post(PAGE, data={"token_id": new_token}).status_code == 200
    assert is_confirmed(app, email) is True


def test_resend_page_answers_the_same_for_unknown_addresses(client, deliver, smtp, make_user):
    make_user()
    deliver()
    smtp.clear()
    known = client.post("/confirm-email/resend", data={"email": "alice@x.io"})
    unknown = client.post("/confirm-email/resend", data={"email": "nobody@x.io"})
    assert (known.status_code, known.data) == (unknown.status_code, unknown.data)
    assert [m["To"] for m in deliver()] == ["alice@x.io"]


@pytest.mark.parametrize("data", [{}, {"email": "nope"}, {"email": "a\x00@x.io"},
                                  {"email": ["a@x.io", "b@x.io"]}])
def test_resend_page_with_a_bad_address(client, deliver, data):
    r = client.post("/confirm-email/resend", data=data)
    assert r.status_code == 400
    assert_safe_page(r)
    assert "Please check the address" in r.get_data(as_text=True)
    assert deliver() == []


def test_token_in_the_url_is_never_reflected_unescaped(client):
    evil = '"><script>alert(1)</script><img src=x onerror=alert(1)>'
    r = client.get(PAGE, query_string={"token_id": evil})
    html = r.get_data(as_text=True)
    assert r.status_code == 400
    assert "<script" not in html and "onerror" not in html and "<img" not in html


def test_email_carries_no_text_from_the_request(app, deliver, make_core_user):
    # A name is attacker-written text ("your account is LOCKED, unlock it at ..."),
    # and a username like www.unlock-now.example becomes a link: mail greets nobody.
    with app.app_context():
        make_core_user("eve@x.io", "www.unlock-now.example", PASSWORD,
                       first_name="LOCKED: unlock at http://evil.example <b>now</b>")
    [msg] = deliver()
    for part in (html_part(msg), text_part(msg)):
        assert "Hello," in part
        assert "LOCKED" not in part and "evil.example" not in part and "unlock-now" not in part


def test_the_session_cookie_is_read_only_when_sent(app, client):
    """No session cookie: an empty session, none set. The pages' forms still put their
    CSRF token in a signed session cookie, which the next request reads back; a
    forged one is an empty session, as in Flask."""
    interface = app.session_interface
    with app.test_request_context("/api/sign-up/"):
        session = interface.open_session(app, request)
        assert dict(session) == {} and not session.modified
    assert "Set-Cookie" not in client.get("/healthz").headers
    page = client.get("/reset-password/")
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None and "csrf_token" in page.get_data(as_text=True)
    with app.test_request_context(
            "/", headers={"Cookie": f"{cookie.key}={cookie.value}"}):
        assert "csrf_token" in interface.open_session(app, request)
    with app.test_request_context(
            "/", headers={"Cookie": f"{cookie.key}=forged.{cookie.value[7:]}"}):
        assert dict(interface.open_session(app, request)) == {}
