"""Races: many requests at once for one username, one address, one token, one code."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from regapp.core import confirmation
from regapp.core.errors import RegappError
from regapp.extensions import db
from regapp.models import EmailConfirmation
from regapp.models import OutboxMessage
from regapp.models import User
from regapp.models import utcnow
from tests.serverkit import in_parallel as run_in_parallel

PASSWORD = "Str0ng-passphrase"
LOGIN_TAKEN = {"username": ["user with this login already exists."]}
EMAIL_TAKEN = {"email": ["user with this email already exists."]}
ALREADY_CONFIRMED = {"token_id": ["Email is already confirmed."]}


def in_parallel(count, work):
    """Run ``work(i)`` in ``count`` threads released together; return results in order."""
    return run_in_parallel(count, work, timeout=120)


def http(app, method, url, **kwargs):
    """One request on the thread's own test client; what a client sees."""
    response = app.test_client().open(url, method=method, **kwargs)
    return response.status_code, response.get_json(silent=True), dict(response.headers)


def counts(app):
    with app.app_context():
        return tuple(db.session.scalar(select(func.count()).select_from(model))
                     for model in (User, EmailConfirmation, OutboxMessage))


def assert_one_winner(results, success, loser_body, backend):
    statuses = Counter(status for status, _, _ in results)
    assert statuses[success] == 1, statuses
    assert 500 not in statuses, statuses
    for status, body, headers in results:
        if status == 503:
            # Tolerated on SQLite only: "database is locked" must be a retryable JSON 503.
            assert backend == "sqlite", body
            assert body is not None and headers.get("Retry-After"), headers
        elif status != success:
            assert (status, body) == (400, loser_body)


def register_in_core(app, make_core_user, email="race@example.org"):
    with app.app_context():
        return make_core_user(email, "racer").id


def core_outcome(app, call):
    """Call a core service in its own app context; name the outcome."""
    with app.app_context():
        try:
            call()
        except RegappError as exc:
            return type(exc).__name__
        return "ok"


def test_same_username_at_once(app, backend):
    results = in_parallel(30, lambda i: http(app, "POST", "/api/register/", json={
        "username": "racer" if i % 2 else "RACER", "email": f"racer{i}@example.org",
        "password": PASSWORD}))
    assert_one_winner(results, 201, LOGIN_TAKEN, backend)
    assert counts(app) == (1, 1, 1)


def case_variant(text, i):
    return "".join(c.upper() if (i >> k) & 1 else c for k, c in enumerate(text))


def test_same_email_in_mixed_case_at_once(app, backend):
    results = in_parallel(30, lambda i: http(app, "POST", "/api/register/", json={
        "username": f"racer{i}", "email": case_variant("racer@example.org", i),
        "password": PASSWORD}))
    assert_one_winner(results, 201, EMAIL_TAKEN, backend)
    # One user, one confirmation; the 29 refused sign-ups sent the owner one
    # duplicate-sign-up mail between them (issue 10; its cooldown holds the rest).
    assert counts(app) == (1, 1, 2)
    with app.app_context():
        assert db.session.scalar(select(User.email_key)) == "racer@example.org"
        assert sorted(db.session.scalars(select(OutboxMessage.kind))) == ["confirm", "duplicate"]


def test_one_token_confirmed_at_once(app, backend, last_confirmation, make_core_user):
    user_id = register_in_core(app, make_core_user)
    _, token, _ = last_confirmation()
    results = in_parallel(20, lambda i: http(
        app, "GET", "/api/confirm-email/", query_string={"token_id": token}))
    assert_one_winner(results, 200, ALREADY_CONFIRMED, backend)
    with app.app_context():
        assert db.session.get(User, user_id).is_email_confirmed is True


def test_one_code_confirmed_at_once(app, last_confirmation, make_core_user):
    user_id = register_in_core(app, make_core_user)
    _, _, code = last_confirmation()
    outcomes = Counter(in_parallel(20, lambda i: core_outcome(
        app, lambda: confirmation.confirm_code("RACE@example.org" if i % 2 else "race@example.org",
                                           code))))
    assert outcomes == {"ok": 1, "AlreadyConfirmed": 19}
    with app.app_context():
        assert db.session.get(User, user_id).is_email_confirmed is True


def test_wrong_codes_at_once_are_all_counted(app, last_confirmation, make_core_user):
    user_id = register_in_core(app, make_core_user)
    _, token, code = last_confirmation()
    max_attempts = app.config["CONFIRM_CODE_MAX_ATTEMPTS"]
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    outcomes = Counter(in_parallel(30, lambda i: core_outcome(
        app, lambda: confirmation.confirm_code("race@example.org", wrong))))
    # Exactly max_attempts guesses were compared; every other one was refused unseen.
    assert outcomes == {"CodeMismatch": max_attempts, "TooManyAttempts": 30 - max_attempts}
    with app.app_context():
        row = db.session.scalar(select(EmailConfirmation))
        user = db.session.get(User, user_id)
        assert (row.attempts, row.used_at) == (max_attempts, None)
        assert max_attempts <= user.code_failures <= 30
        assert user.is_email_confirmed is False
    assert core_outcome(app, lambda: confirmation.confirm_code("race@example.org", code)) == (
        "TooManyAttempts")
    assert core_outcome(app, lambda: confirmation.confirm(token)) == "ok"


@pytest.mark.config(RESEND_COOLDOWN=60)
def test_resends_at_once_send_one_message(app, make_core_user):
    register_in_core(app, make_core_user)
    with app.app_context():
        db.session.execute(update(User).values(
            confirmation_sent_at=utcnow() - timedelta(seconds=61)))
        db.session.commit()

    def resend(i):
        with app.app_context():
            email = "RACE@example.org" if i % 2 else "race@example.org"
            return confirmation.resend_confirmation(email)

    assert Counter(in_parallel(20, resend)) == {True: 1, False: 19}
    assert counts(app) == (1, 2, 2)
