"""The registration core without HTTP: rows written, races, confirmation rules."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from regapp.core import confirmation
from regapp.core import operators
from regapp.core import outbox
from regapp.core import passwords
from regapp.core import registration
from regapp.core import tokens
from regapp.core.errors import AlreadyConfirmed
from regapp.core.errors import CodeMismatch
from regapp.core.errors import FieldErrors
from regapp.core.errors import TokenExpired
from regapp.core.errors import TokenInvalid
from regapp.core.errors import TooManyAttempts
from regapp.extensions import db
from regapp.models import EmailConfirmation
from regapp.models import OutboxMessage
from regapp.models import User
from regapp.models import utcnow

PASSWORD = "Str0ng-passphrase"
EMAIL = "alice@example.org"
RIGHT = "the emailed code"


def count(model):
    """Rows of ``model``; for the outbox, confirmation emails only (a refused
    duplicate sign-up also mails the address's owner, kind ``duplicate``)."""
    stmt = select(func.count()).select_from(model)
    if model is OutboxMessage:
        stmt = stmt.where(OutboxMessage.kind == "confirm")
    return db.session.scalar(stmt)


def confirmation_row(user_id):
    db.session.expire_all()
    return db.session.scalars(select(EmailConfirmation).where(
        EmailConfirmation.user_id == user_id).order_by(EmailConfirmation.id.desc())).first()


def wrong(code):
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_register_writes_user_confirmation_and_outbox(app, last_confirmation, make_core_user):
    with app.app_context():
        user = make_core_user(first_name="Alice", last_name="Liddell", username="alice")
        user_id = user.id
        assert user.email == EMAIL and user.email_key == EMAIL
        assert user.username == "alice" and user.username_key == "alice"
        assert user.account_type == "customer" and user.is_email_confirmed is False
        assert user.password_hash.startswith("$argon2id$")
        assert (count(User), count(EmailConfirmation), count(OutboxMessage)) == (1, 1, 1)
        mail = db.session.scalar(select(OutboxMessage))
        assert (mail.to_addr, mail.status) == (EMAIL, "pending")
    link, token, code = last_confirmation()
    with app.app_context():
        row = confirmation_row(user_id)
        assert (row.attempts, row.used_at) == (0, None)
        expected_expiry = utcnow() + timedelta(seconds=app.config["CONFIRM_TOKEN_MAX_AGE"])
        assert abs((row.expires_at - expected_expiry).total_seconds()) < 60
        # The code is stored only as a keyed hash; the password nowhere in clear.
        subject = tokens.code_subject(db.session.get(User, user_id))  # id and address
        assert row.code_hash == tokens.hash_code(subject, code) and code not in row.code_hash
        with db.engine.connect() as conn:
            for table in ("users", "email_confirmations"):
                for values in conn.execute(sa.text(f"SELECT * FROM {table}")):
                    assert not any(code in str(v) or PASSWORD in str(v) for v in values)
            body = conn.execute(sa.text("SELECT body_text FROM outbox_messages")).scalar()
        assert PASSWORD not in body
        assert confirmation.user_for_token(token).id == user_id


def test_register_is_one_transaction(app, monkeypatch, make_core_user):
    def enqueue_then_fail(**kwargs):
        real_enqueue(**kwargs)
        raise RuntimeError("template or outbox failure")

    real_enqueue = outbox.enqueue
    monkeypatch.setattr(outbox, "enqueue", enqueue_then_fail)
    with app.app_context():
        with pytest.raises(RuntimeError):
            make_core_user(username="alice")
        assert (count(User), count(EmailConfirmation), count(OutboxMessage)) == (0, 0, 0)


def test_policy_failures_write_nothing(app, make_core_user):
    with app.app_context():
        with pytest.raises(FieldErrors) as exc:
            make_core_user(password="Alice1990", username="alice")
        assert exc.value.codes() == {"password": ["password_too_similar"]}
        with pytest.raises(FieldErrors) as exc:
            make_core_user(password="12345678", username="alice")
        assert exc.value.codes() == {
            "password": ["password_too_common", "password_entirely_numeric"]}
        assert (count(User), count(OutboxMessage)) == (0, 0)


def test_fast_path_reports_both_duplicates(app, make_core_user):
    with app.app_context():
        make_core_user(username="alice")
        with pytest.raises(FieldErrors) as exc:
            make_core_user(email="ALICE@example.org", username="ALICE")
        assert exc.value.codes() == {"username": ["unique"], "email": ["unique"]}


@pytest.mark.parametrize(("field", "conflict"), [
    ("username", {"username": "ALICE", "username_key": "alice",
                  "email": "other@example.org", "email_key": "other@example.org"}),
    ("email", {"username": "other", "username_key": "other",
               "email": "Alice@example.org", "email_key": EMAIL}),
])
def test_lost_race_becomes_a_unique_error(app, monkeypatch, field, conflict, make_core_user):
    """Another request commits the same key while this one hashes, before its INSERT."""
    real_hash = passwords.hash_password

    def hash_then_raced(password):
        result = real_hash(password)
        with db.engine.begin() as conn:  # a concurrent registration commits meanwhile
            conn.execute(sa.insert(User.__table__).values(
                password_hash="x", account_type="customer", is_email_confirmed=False,
                code_failures=0, created_at=utcnow(), **conflict))
        return result

    monkeypatch.setattr(passwords, "hash_password", hash_then_raced)
    with app.app_context():
        with pytest.raises(FieldErrors) as exc:
            make_core_user(username="alice")
        assert exc.value.codes() == {field: ["unique"]}
        db.session.rollback()
        assert (count(User), count(EmailConfirmation), count(OutboxMessage)) == (1, 0, 0)


def test_confirm_with_token_once(app, last_confirmation, make_core_user):
    with app.app_context():
        user_id = make_core_user(username="alice").id
    _, token, _ = last_confirmation()
    with app.app_context():
        user = confirmation.confirm(token)
        assert user.id == user_id and user.is_email_confirmed is True
        confirmed_at = user.confirmed_at
        assert confirmed_at is not None
        with pytest.raises(AlreadyConfirmed):
            confirmation.confirm(token)
        db.session.expire_all()
        assert db.session.get(User, user_id).confirmed_at == confirmed_at


def test_confirm_with_email_takes_the_code_or_a_token_for_that_address(app, last_confirmation,
                                                                      make_core_user):
    with app.app_context():
        make_core_user(username="alice")
        make_core_user(email="bob@example.org", username="bob")
    _, alice_token, alice_code = last_confirmation(EMAIL)
    _, bob_token, _ = last_confirmation("bob@example.org")
    with app.app_context():
        with pytest.raises(TokenInvalid):           # bob's token is not alice's
            confirmation.confirm(bob_token, email=EMAIL)
        with pytest.raises(TokenInvalid):           # a code without the address is no token
            confirmation.confirm(alice_code)
        assert confirmation.confirm(bob_token, email="BOB@example.org").is_email_confirmed
        assert confirmation.confirm(alice_code, email=EMAIL).is_email_confirmed is True
        with pytest.raises(AlreadyConfirmed):
            confirmation.confirm(alice_token, email=EMAIL)


def test_confirm_code_once(app, last_confirmation, make_core_user):
    with app.app_context():
        make_core_user(username="alice")
    _, _, code = last_confirmation()
    with app.app_context():
        assert confirmation.confirm_code("Alice@Example.ORG", code).is_email_confirmed is True
        with pytest.raises(AlreadyConfirmed):       # the code that confirmed
            confirmation.confirm_code(EMAIL, code)
        with pytest.raises(CodeMismatch):           # a code never sent: no oracle
            confirmation.confirm_code(EMAIL, wrong(code))


@pytest.mark.parametrize(("email", "code"), [
    ("nobody@example.org", RIGHT), (None, RIGHT), ("", RIGHT), (42, RIGHT), ("x" * 400, RIGHT),
    (EMAIL, "12345"), (EMAIL, "1234567"), (EMAIL, 123456), (EMAIL, None), (EMAIL, True),
    (EMAIL, "\uff11\uff12\uff13\uff14\uff15\uff16"), (EMAIL, " 123456"),
])
def test_unknown_email_or_malformed_code_is_a_mismatch(app, last_confirmation, email, code,
                                                       make_core_user):
    with app.app_context():
        make_core_user(username="alice")
    _, _, right = last_confirmation()
    with app.app_context():
        with pytest.raises(CodeMismatch):
            confirmation.confirm_code(email, right if code is RIGHT else code)
        assert db.session.scalar(select(User.is_email_confirmed)) is False


def test_link_confirmed_account_rejects_unsent_codes(app, last_confirmation, make_core_user):
    with app.app_context():
        make_core_user(username="alice")
    _, token, code = last_confirmation()
    with app.app_context():
        confirmation.confirm(token)
        with pytest.raises(CodeMismatch):
            confirmation.confirm_code(EMAIL, wrong(code))


def test_five_wrong_guesses_kill_the_code_but_not_the_link(app, last_confirmation, make_core_user):
    with app.app_context():
        user_id = make_core_user(username="alice").id
    _, token, code = last_confirmation()
    with app.app_context():
        # Case variants of the address share one counter.
        for spelling in ["alice@example.org", "ALICE@EXAMPLE.ORG", "Alice@example.org",
                         "alice@EXAMPLE.org", "aLiCe@example.org"]:
            with pytest.raises(CodeMismatch):
                confirmation.confirm_code(spelling, wrong(code))
        with pytest.raises(TooManyAttempts):
            confirmation.confirm_code(EMAIL, code)
        with pytest.raises(TooManyAttempts):
            confirmation.confirm_code(EMAIL, wrong(code))
        row = confirmation_row(user_id)
        assert (row.attempts, row.used_at) == (5, None)
        assert db.session.get(User, user_id).code_failures == 5
        assert confirmation.confirm(token).is_email_confirmed is True


def test_lifetime_cap_survives_resends(app, last_confirmation, make_core_user):
    cap = app.config["CONFIRM_CODE_LIFETIME_CAP"]
    per_code = app.config["CONFIRM_CODE_MAX_ATTEMPTS"]
    assert (cap, per_code) == (20, 5)
    with app.app_context():
        user_id = make_core_user(username="alice").id
    _, first_token, first_code = last_confirmation()
    code = first_code
    for _ in range(cap // per_code):
        with app.app_context():
            for _ in range(per_code):
                with pytest.raises(CodeMismatch):
                    confirmation.confirm_code(EMAIL, wrong(code))
            with pytest.raises(TooManyAttempts):
                confirmation.confirm_code(EMAIL, code)
            assert confirmation.resend_confirmation(EMAIL) is True
        _, token, code = last_confirmation()
    with app.app_context():
        # A new code does not reset the account's counter.
        assert db.session.get(User, user_id).code_failures == cap
        assert confirmation_row(user_id).attempts == 0
        with pytest.raises(TooManyAttempts):
            confirmation.confirm_code(EMAIL, code)
        # The owner is never locked out: every emailed link still works.
        assert confirmation.confirm(first_token).is_email_confirmed is True
        with pytest.raises(AlreadyConfirmed):
            confirmation.confirm(token)


def test_resent_code_replaces_the_old_one(app, last_confirmation, make_core_user):
    with app.app_context():
        make_core_user(username="alice")
    _, old_token, old_code = last_confirmation()
    with app.app_context():
        assert confirmation.resend_confirmation(EMAIL) is True
    _, new_token, new_code = last_confirmation()
    assert new_token != old_token or new_code != old_code
    with app.app_context():
        if old_code != new_code:
            with pytest.raises(CodeMismatch):
                confirmation.confirm_code(EMAIL, old_code)
        assert confirmation.confirm_code(EMAIL, new_code).is_email_confirmed is True


def test_expired_code_is_refused(app, last_confirmation, make_core_user):
    with app.app_context():
        user_id = make_core_user(username="alice").id
    _, _, code = last_confirmation()
    with app.app_context():
        db.session.execute(update(EmailConfirmation).values(
            expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        with pytest.raises(TokenExpired):
            confirmation.confirm_code(EMAIL, code)
        assert db.session.get(User, user_id).is_email_confirmed is False


@pytest.mark.config(RESEND_COOLDOWN=60)
def test_resend_cooldown(app, last_confirmation, make_core_user):
    with app.app_context():
        user_id = make_core_user(username="alice").id
        assert confirmation.resend_confirmation(EMAIL) is False      # just sent at registration
        assert confirmation.resend_confirmation("ALICE@example.org") is False
        assert count(OutboxMessage) == 1
        db.session.execute(update(User).values(
            confirmation_sent_at=utcnow() - timedelta(seconds=61)))
        db.session.commit()
        assert confirmation.resend_confirmation("ALICE@example.org") is True
        assert confirmation.resend_confirmation(EMAIL) is False      # the cooldown restarted
        assert (count(OutboxMessage), count(EmailConfirmation)) == (2, 2)
    _, token, _ = last_confirmation()
    with app.app_context():
        assert confirmation.confirm(token).id == user_id
        assert confirmation.resend_confirmation(EMAIL) is False      # confirmed: nothing to send


@pytest.mark.parametrize("email", [None, "", 5, ["a@b.c"], "x" * 400, "nobody@example.org"])
def test_resend_for_nobody_sends_nothing(app, email, make_core_user):
    with app.app_context():
        make_core_user(username="alice")
        assert confirmation.resend_confirmation(email) is False
        assert count(OutboxMessage) == 1


def test_purge_unconfirmed_frees_the_address(app, last_confirmation, make_core_user):
    with app.app_context():
        stale = make_core_user(username="alice")
        stale_id = stale.id
        kept = registration.create_account({"email": "bob@example.org", "password": PASSWORD},
                                       account_type="customer", confirmed=True)
        kept_id = kept.id
    _, token, _ = last_confirmation()
    with app.app_context():
        assert operators.purge_unconfirmed(utcnow() - timedelta(hours=1)) == []
        later = utcnow() + timedelta(seconds=1)
        assert [u.id for u in operators.purge_unconfirmed(later, dry_run=True)] == [stale_id]
        assert count(User) == 2
        assert [u.id for u in operators.purge_unconfirmed(later)] == [stale_id]
        assert db.session.scalars(select(User.id)).all() == [kept_id]
        assert count(EmailConfirmation) == 0
        with pytest.raises(TokenInvalid):
            confirmation.confirm(token)
        again = make_core_user(username="alice")
        assert again.id not in (stale_id, kept_id)


def test_deleted_users_token_is_dead_and_its_id_never_reused(app, last_confirmation,
                                                             make_core_user):
    with app.app_context():
        first_id = make_core_user(username="alice").id
    _, token, code = last_confirmation()
    with app.app_context():
        operators.delete_user(db.session.get(User, first_id))
        # Same address again: without AUTOINCREMENT SQLite would hand out the same id
        # and the old token, bound to (id, address), would confirm the new account.
        second = make_core_user(username="alice")
        second_id = second.id
        assert second_id > first_id
        with pytest.raises(TokenInvalid):
            confirmation.confirm(token)
        with pytest.raises(CodeMismatch):
            confirmation.confirm_code(EMAIL, code)
        assert db.session.get(User, second_id).is_email_confirmed is False
