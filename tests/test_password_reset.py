"""Issue 10: password reset by link or code, and the attacks on it."""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from itsdangerous import TimestampSigner
from itsdangerous import URLSafeTimedSerializer

from regapp.core import tokens
from regapp.extensions import db
from regapp.models import PasswordResetCode
from regapp.models import User
from regapp.models import utcnow
from tests.conftest import PASSWORD
from tests.smtp import confirmation
from tests.smtp import kind
from tests.smtp import reset
from tests.smtp import text_part

ACCEPTED = {"detail": "If this address has an account, a password reset email is on its way."}
DONE = {"detail": "Password has been reset with the new password."}
BAD_TOKEN = {"token": ["Invalid token for given user."]}
BAD_CODE = {"code": ["Invalid or expired code."]}
NEW = "Brand-new-secret-3"


def ask(client, email):
    return client.post("/api/password-reset/", json={"email": email})


def with_token(client, token, password=NEW):
    return client.post("/api/password-reset/confirm/",
                       json={"token": token, "new_password": password})


def with_code(client, email, code, password=NEW):
    return client.post("/api/password-reset/confirm/",
                       json={"email": email, "code": code, "new_password": password})


def logs_in(client, email, password):
    return client.post("/api/login/", json={"email": email, "password": password}
                       ).status_code == 200


def reset_mail(deliver, to="alice@x.io"):
    found = [m for m in deliver() if m["To"] == to and kind(m) == "reset"]
    assert found
    return reset(found[-1])


def other(code, step=1):
    return f"{(int(code) + step) % 1_000_000:06d}"


def test_same_answer_whether_or_not_the_address_exists(client, make_user, deliver):
    make_user("alice")
    before = len(deliver())
    answers = {(r.status_code, r.get_data()) for r in
               (ask(client, e) for e in ("alice@x.io", "nobody@x.io"))}
    assert answers == {(202, b'{"detail":"%s"}\n' % ACCEPTED["detail"].encode())}
    sent = deliver()[before:]
    assert [(m["To"], kind(m)) for m in sent] == [("alice@x.io", "reset")]
    link, token, code = reset(sent[0])
    assert link == f"http://127.0.0.1:5000/reset-password/?token={token}" and code
    assert "1 hour" in text_part(sent[0])
    r = ask(client, "not an address")
    assert (r.status_code, r.get_json()) == (400, {"email": ["Enter a valid email address."]})


@pytest.mark.config(CONFIRM_CODE_MIN_SECONDS=0.05)
def test_never_sooner_than_the_floor(client, make_user):
    make_user("alice")
    for email in ("alice@x.io", "nobody@x.io"):
        started = time.monotonic()
        assert ask(client, email).status_code == 202
        assert time.monotonic() - started >= 0.05
        started = time.monotonic()
        assert with_code(client, email, "123456").status_code == 400
        assert time.monotonic() - started >= 0.05


@pytest.mark.parametrize("secret", ["token", "code"])
def test_reset_sets_confirms_revokes_and_notifies(app, client, deliver, secret):
    r = client.post("/api/v1/user/register", json={
        "username": "alice", "email_address": "alice@x.io", "password": PASSWORD})
    api_token = r.get_json()["results"]["api_token"]
    pair = client.post("/api/login/", json={"email": "alice@x.io", "password": PASSWORD}
                       ).get_json()
    assert ask(client, "alice@x.io").status_code == 202
    _, token, code = reset_mail(deliver)
    r = with_token(client, token) if secret == "token" else with_code(client, "Alice@X.io",
                                                                      code)
    assert (r.status_code, r.get_json()) == (200, DONE)
    assert logs_in(client, "alice@x.io", NEW) and not logs_in(client, "alice@x.io", PASSWORD)
    # Every earlier credential is dead: JWT access and refresh, the api_token.
    for auth in (f"Bearer {pair['access']}", f"Token {api_token}"):
        assert client.get("/api/users/me", headers={"Authorization": auth}).status_code == 401
    assert client.post("/api/token/refresh/",
                       json={"refresh": pair["refresh"]}).status_code == 401
    with app.app_context():
        user = db.session.scalar(sa.select(User))
        assert user.is_email_confirmed and user.confirmed_at is not None
    notice = deliver()[-1]
    assert kind(notice) == "password_changed"
    _, notice_token, notice_code = reset(notice)
    assert notice_code is None
    # The notice's own "not you?" link works (and is now the only live one).
    assert with_token(client, token).get_json() == BAD_TOKEN
    assert with_token(client, notice_token, "Third-secret-4").status_code == 200


@pytest.mark.config(RESET_MAIL_COOLDOWN=0)
def test_replay_and_a_second_reset(client, make_user, deliver):
    make_user("alice")
    ask(client, "alice@x.io")
    _, first_token, first_code = reset_mail(deliver)
    ask(client, "alice@x.io")  # no cooldown in tests: a second reset kills the first
    _, token, code = reset_mail(deliver)
    assert token != first_token
    assert with_token(client, first_token).get_json() == BAD_TOKEN
    assert with_code(client, "alice@x.io", first_code).get_json() == BAD_CODE
    assert with_token(client, token).status_code == 200
    # Single use: neither the link nor the code of the same mail works again.
    assert (with_token(client, token).status_code, with_token(client, token).get_json()) \
        == (400, BAD_TOKEN)
    assert with_code(client, "alice@x.io", code).get_json() == BAD_CODE


def test_a_password_change_in_between_kills_the_other_secret(client, make_user, deliver):
    make_user("alice")
    ask(client, "alice@x.io")
    _, token, code = reset_mail(deliver)
    assert with_code(client, "alice@x.io", code).status_code == 200
    assert with_token(client, token).get_json() == BAD_TOKEN


def test_another_users_token_or_code(client, make_user, deliver):
    make_user("alice")
    make_user("bob")
    ask(client, "alice@x.io")
    ask(client, "bob@x.io")
    _, _, alice_code = reset_mail(deliver, "alice@x.io")
    _, bob_token, bob_code = reset_mail(deliver, "bob@x.io")
    if bob_code != alice_code:
        assert with_code(client, "alice@x.io", bob_code).get_json() == BAD_CODE
    # A token names its own account: Bob's link resets Bob, never Alice.
    assert with_token(client, bob_token).status_code == 200
    assert logs_in(client, "alice@x.io", PASSWORD) and logs_in(client, "bob@x.io", NEW)


def test_expired_token_and_code(app, client, make_user, deliver):
    make_user("alice")
    ask(client, "alice@x.io")
    _, token, code = reset_mail(deliver)

    class Past(TimestampSigner):
        def get_timestamp(self):
            return int(time.time()) - app.config["PASSWORD_RESET_MAX_AGE"] - 5

    payload = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=tokens.RESET_SALT
                                     ).loads(token)
    old = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=tokens.RESET_SALT,
                                 signer=Past).dumps(payload)
    assert old != token
    assert with_token(client, old).get_json() == BAD_TOKEN
    assert client.get("/reset-password/", query_string={"token": old}).status_code == 400
    with app.app_context():
        db.session.execute(sa.update(PasswordResetCode).values(
            expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert with_code(client, "alice@x.io", code).get_json() == BAD_CODE
    assert with_token(client, token).status_code == 200  # the fresh link still works


def test_wrong_purpose(client, make_user, deliver, last_confirmation):
    make_user("alice")
    _, confirm_token, confirm_code = last_confirmation()
    ask(client, "alice@x.io")
    _, reset_token, _ = reset_mail(deliver)
    assert with_token(client, confirm_token).get_json() == BAD_TOKEN
    assert with_code(client, "alice@x.io", confirm_code).get_json() == BAD_CODE
    r = client.get("/api/confirm-email/", query_string={"token_id": reset_token})
    assert r.get_json() == {"token_id": ["Invalid or expired token."]}
    assert client.post("/confirm-email/", data={"token_id": reset_token}).status_code == 400
    assert with_token(client, reset_token).status_code == 200


@pytest.mark.config(RESET_MAIL_COOLDOWN=0, SECURITY_MAIL_DAILY_CAP=10)
def test_code_caps_per_code_and_per_account(app, client, make_user, deliver):
    assert (app.config["RESET_CODE_MAX_ATTEMPTS"], app.config["RESET_CODE_LIFETIME_CAP"]) \
        == (5, 20)
    make_user("alice")
    ask(client, "alice@x.io")
    _, token, code = reset_mail(deliver)
    for step in range(1, 6):
        assert with_code(client, "alice@x.io", other(code, step)).get_json() == BAD_CODE
    assert with_code(client, "alice@x.io", code).get_json() == BAD_CODE  # used up
    for _ in range(3):  # 20 wrong codes over four resets use the account up
        ask(client, "alice@x.io")
        _, token, code = reset_mail(deliver)
        for step in range(1, 6):
            with_code(client, "alice@x.io", other(code, step))
    ask(client, "alice@x.io")
    _, token, code = reset_mail(deliver)
    assert with_code(client, "alice@x.io", code).get_json() == BAD_CODE
    assert with_token(client, token).status_code == 200  # the link is never locked
    ask(client, "alice@x.io")  # a successful reset clears the account's count
    _, token, code = reset_mail(deliver)
    r = with_code(client, "alice@x.io", code, "Third-secret-4")
    assert r.status_code == 200, r.get_json()


@pytest.mark.config(RESET_CODE_GLOBAL_CEILING=3)
def test_service_wide_ceiling_refuses_codes_keeps_links(client, make_user, deliver, caplog):
    make_user("alice")
    make_user("bob")
    ask(client, "alice@x.io")
    _, token, code = reset_mail(deliver, "alice@x.io")
    for email in ("bob@x.io", "nobody@x.io", "bob@x.io"):  # spread over accounts
        with_code(client, email, "000000")
    with caplog.at_level(logging.ERROR):
        assert with_code(client, "alice@x.io", code).get_json() == BAD_CODE
    assert "password reset codes refused" in caplog.text
    assert "alice" not in caplog.text and code not in caplog.text
    assert with_token(client, token).status_code == 200


def test_password_errors_follow_the_accounts_profile(app, client, runner, deliver):
    numeric = "98765432109"  # Django refuses entirely numeric passwords; Rails' rule does not
    client.post("/api/register/", json={"username": "dj", "email": "dj@x.io",
                                        "password": PASSWORD})
    assert client.post("/api/users/registration", json={
        "email": "rb@x.io", "password": PASSWORD, "password_confirmation": PASSWORD}
    ).status_code == 201
    assert runner.invoke(args=["users", "create", "cli@x.io", "--password",
                               PASSWORD]).exit_code == 0
    with app.app_context():
        profiles = dict(db.session.execute(sa.select(User.email, User.profile)).all())
    assert profiles == {"dj@x.io": "drf", "rb@x.io": "jsonapi", "cli@x.io": None}
    for email in ("dj@x.io", "cli@x.io"):
        ask(client, email)
        _, token, _ = reset_mail(deliver, email)
        r = with_token(client, token, numeric)
        assert (r.status_code, r.get_json()) == (
            400, {"new_password": ["This password is entirely numeric."]})
        r = with_token(client, token, "short")
        assert r.get_json()["new_password"][0].startswith("This password is too short.")
    ask(client, "rb@x.io")
    _, token, _ = reset_mail(deliver, "rb@x.io")
    assert with_token(client, token, numeric).status_code == 200


def test_password_errors_are_worded_by_the_accounts_profile(client, deliver):
    """DRF's format (under new_password), the words of the profile the account signed
    up with: Rails' for jsonapi, Laravel's for laravel (issue 10)."""
    assert client.post("/api/users/registration", json={
        "email": "rb@x.io", "password": PASSWORD, "password_confirmation": PASSWORD}
    ).status_code == 201
    assert client.post("/api/users/register", json={
        "first_name": "La", "last_name": "Ra", "email": "lv@x.io", "postal_code": "1234 AB",
        "password": PASSWORD}).status_code == 201
    cases = {
        "rb@x.io": {"short": ["New password is too short (minimum is 6 characters)"],
                    "password": ["New password is too common"]},
        "lv@x.io": {"short": ["The new password must be at least 8 characters."],
                    "password": ["The given new password has appeared in a data leak. "
                                 "Please choose a different new password."]},
    }
    for email, answers in cases.items():
        ask(client, email)
        _, token, _ = reset_mail(deliver, email)
        for password, words in answers.items():
            r = with_token(client, token, password)
            assert (r.status_code, r.get_json()) == (400, {"new_password": words})


def test_a_password_of_only_whitespace_is_blank(client, make_user, deliver):
    make_user(email="alice@x.io")
    ask(client, "alice@x.io")
    _, token, code = reset_mail(deliver)
    for blank in ("        ", "\t\t\t\t\t\t\t\t"):
        r = with_token(client, token, blank)
        assert (r.status_code, r.get_json()) == (
            400, {"new_password": ["This field may not be blank."]})
        r = with_code(client, "alice@x.io", code, blank)
        assert (r.status_code, r.get_json()) == (
            400, {"new_password": ["This field may not be blank."]})
    page = client.get("/reset-password/", query_string={"token": token})
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    r = client.post("/reset-password/", data={"csrf_token": csrf.group(1), "token": token,
                                              "new_password": "        ",
                                              "new_password_again": "        "})
    assert r.status_code == 400 and "Enter a new password." in r.get_data(as_text=True)
    assert not logs_in(client, "alice@x.io", "        ")
    assert with_token(client, token).status_code == 200  # the link still works after


def test_field_errors(client):
    for body, errors in (
        ({}, {"new_password": ["This field is required."]}),
        ({"new_password": NEW}, {"non_field_errors": [
            'Must include "token", or "email" and "code".']}),
        ({"code": "123456", "new_password": NEW}, {"email": ["This field is required."]}),
        # A number would be its str() (DRF's CharField); a boolean is the wrong type.
        ({"token": True, "new_password": NEW}, {"token": ["Not a valid string."]}),
    ):
        r = client.post("/api/password-reset/confirm/", json=body)
        assert (r.status_code, r.get_json()) == (400, errors), body


@pytest.mark.config(RESET_MAIL_COOLDOWN=60, DUPLICATE_MAIL_COOLDOWN=60)
def test_cooldowns(client, make_user, deliver):
    make_user("alice")
    for _ in range(3):
        ask(client, "alice@x.io")
        client.post("/api/register/", json={"username": "x", "email": "alice@x.io",
                                            "password": PASSWORD})
    assert sorted(kind(m) for m in deliver()) == ["confirm", "duplicate_pending", "reset"]


def test_daily_caps(app, client, make_user, deliver):
    assert app.config["SECURITY_MAIL_DAILY_CAP"] == 5
    app.config.update(RESET_MAIL_COOLDOWN=0, DUPLICATE_MAIL_COOLDOWN=0)
    make_user("alice")
    for i in range(7):
        ask(client, "alice@x.io")
        client.post("/api/register/", json={"username": f"x{i}", "email": "alice@x.io",
                                            "password": PASSWORD})
    kinds = [kind(m) for m in deliver()]
    assert (kinds.count("reset"), kinds.count("duplicate_pending")) == (5, 5)
    # The confirmation mail has its own limits: still available.
    assert client.post("/api/resend-confirmation/", json={"email": "alice@x.io"}
                       ).status_code == 202
    assert confirmation([m for m in deliver() if kind(m) == "confirm"][-1])


def test_reset_page_without_token_offers_the_request_form(client, make_user, deliver):
    make_user("alice")
    page = client.get("/reset-password/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Email me a reset link" in html
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    assert client.post("/reset-password/request", data={"email": "alice@x.io"}
                       ).status_code == 400  # no CSRF token
    for email in ("alice@x.io", "nobody@x.io"):
        r = client.post("/reset-password/request", data={"email": email, "csrf_token": csrf})
        assert r.status_code == 202 and "Check your inbox" in r.get_data(as_text=True)
    assert [kind(m) for m in deliver()].count("reset") == 1
    # The API needs no CSRF token.
    assert ask(client, "alice@x.io").status_code == 202
