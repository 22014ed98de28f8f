"""Email a product team can ship: a responsive HTML document with inline styles and a
real button, branding from config, a code that always has a page to go to, and a
development sink that shows both parts."""

from __future__ import annotations

import re
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pytest
import sqlalchemy as sa

from regapp.extensions import db
from regapp.models import User
from tests.smtp import confirmation
from tests.smtp import free_port
from tests.smtp import html_part
from tests.smtp import text_part

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Str0ng-passphrase"
PAGE = "/confirm-email/"
BRAND = {"MAIL_PRODUCT_NAME": "Acme Accounts",
         "MAIL_SUPPORT_ADDRESS": "Acme Help <help@acme.example>",
         "MAIL_LOGO_URL": "https://cdn.acme.example/logo.png"}


class Tags(HTMLParser):
    def __init__(self, html):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def is_confirmed(app, email):
    with app.app_context():
        return db.session.scalar(sa.select(User.is_email_confirmed).where(User.email == email))


@pytest.mark.config(**BRAND)
def test_html_part_is_a_responsive_branded_document(client, deliver, make_user):
    make_user("des")
    [msg] = deliver()
    html = html_part(msg)
    assert html.startswith("<!doctype html>")
    tags = Tags(html).tags
    names = [name for name, _ in tags]
    assert ("html", {"lang": "en"}) in tags
    assert ("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}) \
        in tags
    assert "head" in names and "title" in names
    # Inline styles only: no <style>, no stylesheet, no class names to style.
    assert "style" not in names and "link" not in names and "script" not in names
    assert not [attrs for _, attrs in tags if "class" in attrs]
    widths = [attrs.get("style", "") for name, attrs in tags if name == "table"]
    assert any("max-width:600px" in style for style in widths)
    # A real button: a link styled as one, inside a coloured cell, with the link's URL.
    _, token, code = confirmation(msg)
    buttons = [attrs for name, attrs in tags if name == "a" and "padding" in attrs.get("style", "")
               and token in attrs.get("href", "")]
    assert buttons and "background:#2563eb" in html
    # Branding from config.
    assert ("img", {"src": "https://cdn.acme.example/logo.png", "alt": "Acme Accounts",
                    "height": "40",
                    "style": "display:block;height:40px;width:auto;max-width:100%;border:0"}) \
        in tags
    assert "mailto:help@acme.example" in html and "Acme Accounts" in html
    text = text_part(msg)
    assert "Acme Accounts" in text and "Questions? Write to help@acme.example." in text
    assert code in html


def test_without_branding_the_product_is_regapp_and_there_is_no_logo(client, deliver,
                                                                     make_user):
    make_user("plain")
    [msg] = deliver()
    html = html_part(msg)
    assert "<img" not in html and "mailto:" not in html
    assert "regapp" in html and "Questions?" not in text_part(msg)


@pytest.mark.config(REGAPP_PROFILES=["drf"])
def test_the_code_works_on_the_page_with_only_drf_enabled(app, client, deliver, make_user):
    email = make_user("dee")
    [msg] = deliver()
    _, _, code = confirmation(msg)
    assert client.post("/api/users/validation", json={"email": email, "token": code}) \
        .status_code == 404  # no profile of this deployment takes the code...
    text = text_part(msg)
    page = re.search(r"address, at\s+(\S+):", text).group(1)
    assert page == "http://127.0.0.1:5000/confirm-email/"  # ...the email points here
    r = client.get(PAGE)
    assert r.status_code == 200
    form = r.get_data(as_text=True)
    assert 'name="email"' in form and 'name="code"' in form
    r = client.post(PAGE, data={"email": email, "code": code})
    assert r.status_code == 200 and "Email confirmed" in r.get_data(as_text=True)
    assert is_confirmed(app, email)
    r = client.post(PAGE, data={"email": email, "code": code})
    assert r.status_code == 200 and "Already confirmed" in r.get_data(as_text=True)


def test_wrong_codes_on_the_page(app, client, last_confirmation, make_user):
    email = make_user("wes")
    _, _, code = last_confirmation()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for data in ({"email": email, "code": wrong}, {"email": "nobody@x.io", "code": code},
                 {"email": email, "code": "12ab56"}, {"email": "", "code": code},
                 {"code": code}):
        r = client.post(PAGE, data=data)
        assert r.status_code == 400
        html = r.get_data(as_text=True)
        assert "does not match" in html and code not in html
    assert not is_confirmed(app, email)
    for _ in range(5):
        client.post(PAGE, data={"email": email, "code": wrong})
    r = client.post(PAGE, data={"email": email, "code": code})
    assert r.status_code == 400 and "Too many wrong codes" in r.get_data(as_text=True)
    assert 'action="/confirm-email/resend"' in r.get_data(as_text=True)
    assert not is_confirmed(app, email)


@pytest.mark.config(RATELIMIT_ENABLED=True, RATELIMIT_CONFIRMATION_PER_EMAIL="3/minute",
                    RATELIMIT_CONFIRMATION="100/minute")
def test_the_page_form_counts_against_the_address(client, make_user):
    email = make_user("lim")
    codes = [client.post(PAGE, data={"email": email, "code": "000000"}).status_code
             for _ in range(4)]
    assert codes == [400, 400, 400, 429]


def test_mail_preview_matches_what_is_sent(app):
    from regapp.core import mail  # noqa: PLC0415

    with app.test_request_context():
        subject, text, html = mail.sample("confirm")
    assert subject == "Confirm your email address"
    assert "SAMPLE-TOKEN" in text and "123456" in text and html.startswith("<!doctype html>")


def test_mailsink_prints_the_text_and_saves_the_html(tmp_path):
    port = free_port()
    sink = subprocess.Popen([sys.executable, str(ROOT / "devtools" / "mailsink.py"), str(port),
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        assert "listening" in sink.stdout.readline()
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "a@x.io", "b@x.io", "Confirm your email"
        msg.set_content("the text part 123456")
        msg.add_alternative("<!doctype html><p>the html part</p>", subtype="html")
        deadline = time.monotonic() + 10
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
                    smtp.send_message(msg)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        lines = []
        while not lines or not lines[-1].startswith("HTML part saved to"):
            lines.append(sink.stdout.readline().rstrip("\n"))
    finally:
        sink.terminate()
        sink.communicate(timeout=10)
    assert "Subject: Confirm your email" in lines and "the text part 123456" in lines
    path = Path(lines[-1].removeprefix("HTML part saved to "))
    assert path.parent == tmp_path and path.suffix == ".html"
    assert path.read_text() == "<!doctype html><p>the html part</p>\n"
