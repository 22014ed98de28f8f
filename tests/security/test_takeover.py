"""Issue 10: nobody takes over an address they don't own (pre-account hijacking,
Sudhodanan & Paverd, USENIX Security 2022), driven over HTTP with a real SMTP server.

The attacker signs up with the victim's address and the attacker's password; the
victim tries to sign up and is refused (the address is taken). Either ending - the
victim confirms by the original link, or follows the duplicate-sign-up mail - leaves
the attacker's password refused everywhere and the victim's own password working.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from regapp.extensions import db
from regapp.models import User
from tests.smtp import cancel_link
from tests.smtp import confirmation
from tests.smtp import kind
from tests.smtp import reset

VICTIM = "victim@example.org"
ATTACKER_PW = "Attacker-owns-this-1"
VICTIM_PW = "Victims-own-secret-2"
NO_ACCOUNT = {"detail": "No active account found with the given credentials"}
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def mails(deliver, to=VICTIM):
    return [m for m in deliver() if m["To"].lower() == to]


def newest(deliver, what):
    found = [m for m in mails(deliver) if kind(m) == what]
    assert found, [kind(m) for m in mails(deliver)]
    return found[-1]


def attacker_signs_up(client):
    r = client.post("/api/sign-up/", json={"username": "mallory", "email": VICTIM,
                                           "password": ATTACKER_PW})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def victim_tries_to_sign_up(client):
    r = client.post("/api/register/", json={"username": "victim", "email": VICTIM,
                                            "password": VICTIM_PW})
    # The document's answer, unchanged: the address is taken.
    assert (r.status_code, r.get_json()) == (400, {"email": [
        "user with this email already exists."]})


def logins(client, password):
    """Status codes of the jwt obtain view and the shared login for ``password``."""
    token = client.post("/api/token/", json={"email": VICTIM, "password": password})
    login = client.post("/api/login/", json={"email": VICTIM, "password": password})
    if token.status_code == 401:
        assert token.get_json() == NO_ACCOUNT and login.get_json() == NO_ACCOUNT
    return token.status_code, login.status_code


def me(client, access):
    return client.get("/api/users/me", headers={"Authorization": f"Bearer {access}"})


def assert_owner_in_attacker_out(client, attacker_pair):
    assert logins(client, ATTACKER_PW) == (401, 401)
    assert me(client, attacker_pair["access"]).status_code == 401
    assert client.post("/api/token/refresh/",
                       json={"refresh": attacker_pair["refresh"]}).status_code == 401
    assert logins(client, VICTIM_PW) == (200, 200)
    access = client.post("/api/login/", json={"email": VICTIM, "password": VICTIM_PW}
                         ).get_json()["access"]
    body = me(client, access).get_json()
    assert body["email"] == VICTIM and body["is_email_confirmed"] is True


def test_victim_confirms_by_the_original_link_then_sets_a_password(app, client, deliver):
    pair = attacker_signs_up(client)
    victim_tries_to_sign_up(client)
    assert [kind(m) for m in mails(deliver)] == ["confirm", "duplicate_pending"]
    # The victim ignores the duplicate mail and confirms by the first link they got.
    _, token, _ = confirmation(newest(deliver, "confirm"))
    r = client.post("/confirm-email/", data={"token_id": token})
    assert r.status_code == 200 and "Email confirmed" in r.get_data(as_text=True)
    # The contested account's password was cleared: the attacker is out at once,
    # and the mailbox gets a set-password mail.
    assert logins(client, ATTACKER_PW) == (401, 401)
    assert me(client, pair["access"]).status_code == 401
    link, reset_token, code = reset(newest(deliver, "set_password"))
    assert code and link.startswith("http://127.0.0.1:5000/reset-password/?token=")
    # The victim sets a password on the page (CSRF-protected form).
    page = client.get("/reset-password/", query_string={"token": reset_token})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<script" not in html and 'name="new_password_again"' in html
    csrf = CSRF_RE.search(html).group(1)
    r = client.post("/reset-password/", data={"token": reset_token, "new_password": VICTIM_PW,
                                              "new_password_again": VICTIM_PW})
    assert r.status_code == 400  # no CSRF token: nothing changes
    assert logins(client, VICTIM_PW) == (401, 401)
    r = client.post("/reset-password/", data={"csrf_token": csrf, "token": reset_token,
                                              "new_password": VICTIM_PW,
                                              "new_password_again": VICTIM_PW})
    assert r.status_code == 200 and "Password changed" in r.get_data(as_text=True)
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert kind(mails(deliver)[-1]) == "password_changed"
    assert_owner_in_attacker_out(client, pair)


@pytest.mark.parametrize("secret", ["link", "code"])
def test_victim_follows_the_duplicate_signup_mail(app, client, deliver, secret):
    pair = attacker_signs_up(client)
    victim_tries_to_sign_up(client)
    _, token, code = reset(newest(deliver, "duplicate_pending"))
    body = ({"token": token} if secret == "link" else {"email": VICTIM.upper(), "code": code})
    r = client.post("/api/password-reset/confirm/", json={**body, "new_password": VICTIM_PW})
    assert (r.status_code, r.get_json()) == (
        200, {"detail": "Password has been reset with the new password."})
    assert_owner_in_attacker_out(client, pair)
    # The address is confirmed; the original confirmation link has nothing left to do.
    _, confirm_token, _ = confirmation(newest(deliver, "confirm"))
    r = client.get("/api/confirm-email/", query_string={"token_id": confirm_token})
    assert r.get_json() == {"token_id": ["Email is already confirmed."]}
    assert logins(client, ATTACKER_PW) == (401, 401)


def test_a_double_submit_contests_nothing(app, client, deliver):
    """The same person submitting twice (same password) keeps their password."""
    for _ in range(2):
        client.post("/api/register/", json={"username": "victim", "email": VICTIM,
                                            "password": VICTIM_PW})
    _, token, _ = confirmation(newest(deliver, "confirm"))
    assert client.post("/confirm-email/", data={"token_id": token}).status_code == 200
    assert logins(client, VICTIM_PW) == (200, 200)
    assert "set_password" not in [kind(m) for m in mails(deliver)]


def test_the_wasnt_me_link_frees_the_address(app, client, deliver):
    attacker_signs_up(client)
    _, token = cancel_link(newest(deliver, "confirm"))
    page = client.get("/cancel-registration/", query_string={"token": token})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<script" not in html
    csrf = CSRF_RE.search(html).group(1)
    with app.app_context():
        assert db.session.scalar(select(User.id).where(User.email_key == VICTIM))
    assert client.post("/cancel-registration/", data={"token": token}).status_code == 400
    r = client.post("/cancel-registration/", data={"token": token, "csrf_token": csrf})
    assert r.status_code == 200 and "Sign-up deleted" in r.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(User.id).where(User.email_key == VICTIM)) is None
    assert logins(client, ATTACKER_PW) == (401, 401)
    # The address is free: the owner signs up with their own password.
    r = client.post("/api/register/", json={"username": "victim", "email": VICTIM,
                                            "password": VICTIM_PW})
    assert r.status_code == 201
    # A used cancel link finds nothing; a confirmed account can't be cancelled.
    again = client.post("/cancel-registration/", data={"token": token, "csrf_token": csrf})
    assert again.status_code == 400
    _, new_cancel = cancel_link(newest(deliver, "confirm"))
    _, confirm_token, _ = confirmation(newest(deliver, "confirm"))
    assert client.post("/confirm-email/", data={"token_id": confirm_token}).status_code == 200
    r = client.post("/cancel-registration/", data={"token": new_cancel, "csrf_token": csrf})
    assert r.status_code == 409 and "confirmed" in r.get_data(as_text=True)
    assert logins(client, VICTIM_PW) == (200, 200)
