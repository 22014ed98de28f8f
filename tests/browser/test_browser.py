"""A real browser (Debian's headless Chromium, driven by Selenium) against a real
gunicorn server: a page on another origin uses the API through CORS, and the
confirmation page and email work where people see them.

Skipped with a reason where Chromium, its driver or Selenium is missing; with
``REGAPP_REQUIRE_BROWSER=1`` (set by .ci/run) the skip is a failure instead.
"""

from __future__ import annotations

import functools
import json
import os
import struct
import threading
import time
import urllib.parse
from http.server import SimpleHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from unittest import mock

import pytest
import sqlalchemy as sa

from tests.serverkit import Server
from tests.serverkit import request
from tests.smtp import confirmation
from tests.smtp import html_part

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
HERE = Path(__file__).resolve().parent
PASSWORD = "Str0ng-passphrase"
PHONE_WIDTH = 375


def missing() -> list[str]:
    reasons = []
    try:
        import selenium  # noqa: F401, PLC0415 - only to know whether it is there
    except ImportError:
        reasons.append("selenium is not installed (requirements-dev.txt)")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            reasons.append(f"{path} is missing (apt-get install chromium chromium-driver)")
    return reasons


@pytest.fixture(scope="module")
def browser():
    reasons = missing()
    if reasons:
        if os.environ.get("REGAPP_REQUIRE_BROWSER") == "1":
            pytest.fail("REGAPP_REQUIRE_BROWSER=1 but " + "; ".join(reasons))
        pytest.skip("; ".join(reasons))
    from selenium import webdriver  # noqa: PLC0415 - optional dependency
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1024,768", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


class PageOrigin:
    """This directory served on its own loopback port: an origin of its own."""

    def __init__(self):
        handler = functools.partial(_QuietHandler, directory=str(HERE))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def origins():
    allowed, other = PageOrigin(), PageOrigin()
    yield allowed, other
    allowed.close()
    other.close()


@pytest.fixture
def api(tmp_path, mailbox, origins):
    """gunicorn with CORS_ORIGINS naming only the first page origin (no resend
    cooldown: the expired-link walk resends right after signing up)."""
    url = "sqlite:///" + str(tmp_path / "browser.sqlite")
    server = Server(url, mail_port=mailbox.port, log_dir=tmp_path,
                    env={"CORS_ORIGINS": origins[0].origin, "RESEND_COOLDOWN": "0"})
    server.start()
    yield server
    server.stop()


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def body_data(driver, name):
    return driver.execute_script(f"return document.body.dataset.{name} || null")


def spa_url(origin: PageOrigin, api: Server, name: str) -> str:
    return f"{origin.origin}/spa.html?" + urllib.parse.urlencode({
        "api": api.base, "username": name, "email": f"{name}@example.org",
        "password": PASSWORD})


def users_named(api: Server, email: str) -> int:
    engine = sa.create_engine(api.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM users WHERE email = :e"),
                                {"e": email}).scalar_one()
    finally:
        engine.dispose()


def test_a_page_on_an_allowed_origin_signs_up_confirms_and_calls_me(
        browser, api, origins, mailbox):
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    allowed, other = origins
    browser.get(spa_url(allowed, api, "alice"))
    assert wait_for(lambda: body_data(browser, "signup")) == "201"
    [message] = mailbox.wait_for(1, timeout=20)
    _, _, code = confirmation(message)  # the code from the real email
    browser.find_element(By.ID, "code").send_keys(code)
    browser.find_element(By.ID, "confirm").click()
    me = json.loads(wait_for(lambda: body_data(browser, "me")))
    assert me["email"] == "alice@example.org"
    assert me["username"] == "alice"
    assert me["is_email_confirmed"] is True
    log = browser.find_element(By.ID, "log").text
    assert "request-id readable" in log  # X-Request-ID is exposed
    assert "confirm 201" in log and "login 200" in log and "me 200" in log

    # The same page from an origin CORS_ORIGINS does not name: the browser blocks it.
    browser.get(spa_url(other, api, "bob"))
    assert wait_for(lambda: body_data(browser, "signup")) == "blocked"
    assert users_named(api, "bob@example.org") == 0  # the preflight stopped the POST
    assert len(mailbox.messages) == 1


def expired_token(api: Server, email: str) -> str:
    """A genuine confirmation token for ``email``, signed three days ago."""
    from itsdangerous.timed import TimestampSigner  # noqa: PLC0415

    from regapp import create_app  # noqa: PLC0415
    from regapp.core import tokens  # noqa: PLC0415
    from regapp.extensions import db  # noqa: PLC0415
    from regapp.models import User  # noqa: PLC0415

    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": api.database_url,
                      "SECRET_KEY": api.env["SECRET_KEY"]})
    past = int(time.time()) - 3 * 86400
    with app.app_context(), mock.patch.object(TimestampSigner, "get_timestamp",
                                              lambda self: past):
        user = db.session.scalar(sa.select(User).where(User.email == email))
        token = tokens.make_confirm_token(user)
        db.engine.dispose()
    return token


def heading(driver) -> str:
    """The page's <h1>; "" while a submitted form is still navigating."""
    from selenium.common.exceptions import NoSuchElementException  # noqa: PLC0415
    from selenium.common.exceptions import StaleElementReferenceException  # noqa: PLC0415
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    try:
        return driver.find_element(By.TAG_NAME, "h1").text
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def test_confirmation_page_and_email_in_the_browser(browser, api, mailbox, tmp_path):
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    for name in ("carol", "dave"):
        r = request("POST", api.url("/api/register/"), {
            "username": name, "email": f"{name}@example.org", "password": PASSWORD})
        assert r.status == 201, r.text
    messages = mailbox.wait_for(2, timeout=20)
    carol = next(m for m in messages if m["To"] == "carol@example.org")
    link, _, _ = confirmation(carol)

    browser.get(link)  # the GET shows a button and changes nothing
    assert heading(browser) == "Confirm your email"
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert wait_for(lambda: heading(browser) == "Email confirmed")
    browser.get(link)
    assert heading(browser) == "Already confirmed"

    browser.get(api.url("/confirm-email/?token_id=" + expired_token(api, "dave@example.org")))
    assert heading(browser) == "This link has expired"
    browser.find_element(By.ID, "email").send_keys("dave@example.org")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert wait_for(lambda: heading(browser) == "Check your inbox")
    mailbox.wait_for(3, timeout=20)
    assert mailbox.messages[-1]["To"] == "dave@example.org"

    # The email's HTML part on a 375 px phone: nothing wider than the screen.
    page = tmp_path / "confirmation-email.html"
    page.write_text(html_part(carol), encoding="utf-8")
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": PHONE_WIDTH, "height": 812, "deviceScaleFactor": 1, "mobile": True})
    try:
        browser.get(page.as_uri())
        assert browser.execute_script("return window.innerWidth") == PHONE_WIDTH
        width = browser.execute_script(
            "return Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
        png = browser.get_screenshot_as_png()
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    (tmp_path / "confirmation-email-375.png").write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">I", png[16:20])[0] == PHONE_WIDTH  # the screenshot's width
    assert width <= PHONE_WIDTH, f"the email is {width}px wide on a {PHONE_WIDTH}px screen"
