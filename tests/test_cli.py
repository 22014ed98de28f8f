"""Operator commands: ``flask users ...`` and ``flask mail ...`` through the CLI runner."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from regapp.core import operators
from regapp.core import outbox
from regapp.extensions import db
from regapp.models import OutboxMessage
from regapp.models import User
from regapp.models import utcnow
from tests.smtp import free_port

PASSWORD = "Str0ng-passphrase"


def cli(runner, *args, **kwargs):
    return runner.invoke(args=[str(a) for a in args], **kwargs)


def create(runner, email, *extra, password=PASSWORD):
    return cli(runner, "users", "create", email, "--password", password, *extra)


def users(app) -> dict[str, User]:
    with app.app_context():
        found = db.session.scalars(sa.select(User)).all()
        db.session.expunge_all()
        return {u.email: u for u in found}


def mail_rows(app) -> list[OutboxMessage]:
    with app.app_context():
        found = db.session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).all()
        db.session.expunge_all()
        return found


def api_register(client, email, username):
    return client.post("/api/register/", json={"username": username, "email": email,
                                               "password": PASSWORD})


# -- users create ------------------------------------------------------------------------

def test_create_queues_a_confirmation(app, runner, deliver):
    r = create(runner, "Driver@Example.com", "--username", "driver1",
               "--account-type", "driver", "--first-name", "Dee")
    assert r.exit_code == 0, r.output
    assert "created account 1 (Driver@example.com, driver, confirmation email queued)" in r.output
    user = users(app)["Driver@example.com"]
    assert (user.username, user.account_type, user.first_name) == ("driver1", "driver", "Dee")
    assert not user.is_email_confirmed
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    [msg] = deliver()
    assert msg["To"] == "Driver@example.com"


def test_create_confirmed_admin_sends_no_email(app, runner):
    r = create(runner, "root@example.com", "--account-type", "admin", "--confirmed")
    assert r.exit_code == 0, r.output
    user = users(app)["root@example.com"]
    assert user.account_type == "admin" and user.is_email_confirmed and user.confirmed_at
    assert mail_rows(app) == []


@pytest.mark.parametrize(("email", "password", "message"), [
    ("a@example.com", "sunshine", "password is too common"),
    ("a@example.com", "x7", "password is too short (at least 8 characters)"),
    ("a@example.com", "83749201937", "password is entirely numeric"),
    ("not-an-address", PASSWORD, "email is not valid"),
])
def test_create_rejects_what_the_api_rejects(app, runner, email, password, message):
    r = create(runner, email, password=password)
    assert r.exit_code == 1
    assert f"Error: account not created: {message}" in r.output
    assert password not in r.output
    assert users(app) == {} and mail_rows(app) == []


def test_create_duplicate_email_and_username(app, runner, client):
    assert api_register(client, "taken@example.com", "taken").status_code == 201
    r = create(runner, "TAKEN@example.com", "--username", "TAKEN")
    assert r.exit_code == 1
    assert "an account with this username already exists" in r.output
    assert "an account with this email already exists" in r.output
    # The taken address's owner gets the duplicate-sign-up mail (issue 10), nothing else.
    assert len(users(app)) == 1
    assert [(m.to_addr, m.kind) for m in mail_rows(app)] == [
        ("taken@example.com", "confirm"), ("taken@example.com", "duplicate")]


def test_create_unknown_account_type_is_a_usage_error(app, runner):
    r = create(runner, "a@example.com", "--account-type", "wizard")
    assert r.exit_code == 2 and "wizard" in r.output
    assert users(app) == {}


# -- users list / show / confirm / delete ------------------------------------------------

def test_list_and_show(app, runner):
    create(runner, "one@example.com", "--username", "one", "--confirmed")
    create(runner, "two@example.com", "--username", "two")
    r = cli(runner, "users", "list")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert [line.split("\t")[:5] for line in lines] == [
        ["id", "email", "username", "account_type", "state"],
        ["1", "one@example.com", "one", "customer", "confirmed"],
        ["2", "two@example.com", "two", "customer", "unconfirmed"]]
    r = cli(runner, "users", "list", "--unconfirmed")
    assert [line.split("\t")[1] for line in r.output.splitlines()] == ["email",
                                                                      "two@example.com"]
    for identifier in ("2", "TWO@example.com", "Two"):
        r = cli(runner, "users", "show", identifier)
        assert r.exit_code == 0
        assert "email: two@example.com" in r.output and "is_email_confirmed: False" in r.output
        assert "argon2" not in r.output and "hash" not in r.output
    r = cli(runner, "users", "show", "nobody@example.com")
    assert r.exit_code == 1 and "no account matches 'nobody@example.com'" in r.output


def test_confirm_and_confirm_again(app, runner):
    create(runner, "c@example.com")
    r = cli(runner, "users", "confirm", "c@example.com")
    assert r.exit_code == 0 and "confirmed account 1 (c@example.com)" in r.output
    assert users(app)["c@example.com"].is_email_confirmed
    r = cli(runner, "users", "confirm", "c@example.com")
    assert r.exit_code == 1 and "account 1 is already confirmed" in r.output


def test_delete_frees_the_address(app, runner, client):
    assert api_register(client, "d@example.com", "dee").status_code == 201
    r = cli(runner, "users", "delete", "d@example.com", input="n\n")
    assert r.exit_code == 1 and "Aborted" in r.output
    assert "d@example.com" in users(app)
    r = cli(runner, "users", "delete", "dee", "--yes")
    assert r.exit_code == 0 and "deleted account 1 (d@example.com)" in r.output
    assert users(app) == {}
    assert api_register(client, "d@example.com", "dee").status_code == 201
    r = cli(runner, "users", "delete", "ghost@example.com", "--yes")
    assert r.exit_code == 1 and "no account matches" in r.output


# -- users purge-unconfirmed ----------------------------------------------------------------

def test_purge_unconfirmed(app, runner, client):
    for email in ("old@example.com", "new@example.com", "done@example.com"):
        assert api_register(client, email, email.split("@")[0]).status_code == 201
    cli(runner, "users", "confirm", "done@example.com")
    with app.app_context():
        db.session.execute(sa.update(User).where(User.email != "new@example.com")
                           .values(created_at=utcnow() - timedelta(days=3)))
        db.session.commit()
    r = cli(runner, "users", "purge-unconfirmed", "--older-than", "2d", "--dry-run")
    assert r.exit_code == 0
    assert "old@example.com" in r.output and "would delete 1 unconfirmed account(s)" in r.output
    assert "new@example.com" not in r.output and "done@example.com" not in r.output
    assert len(users(app)) == 3
    r = cli(runner, "users", "purge-unconfirmed", "--older-than", "2d")
    assert r.exit_code == 0 and "deleted 1 unconfirmed account(s)" in r.output
    assert sorted(users(app)) == ["done@example.com", "new@example.com"]
    assert api_register(client, "old@example.com", "old").status_code == 201
    r = cli(runner, "users", "purge-unconfirmed", "--older-than", "2 days")
    assert r.exit_code == 2 and "is not a duration" in r.output


# -- users resend-confirmation ---------------------------------------------------------------

def test_resend_confirmation(app, runner, client, deliver):
    assert api_register(client, "r@example.com", "arr").status_code == 201
    r = cli(runner, "users", "resend-confirmation", "r@example.com")
    assert r.exit_code == 0 and "queued a new confirmation for r@example.com" in r.output
    messages = deliver()
    assert [m["To"] for m in messages] == ["r@example.com"] * 2
    assert len({m["Message-ID"] for m in messages}) == 2
    cli(runner, "users", "confirm", "r@example.com")
    r = cli(runner, "users", "resend-confirmation", "r@example.com")
    assert r.exit_code == 1 and "already confirmed" in r.output
    assert len(mail_rows(app)) == 2


@pytest.mark.config(RESEND_COOLDOWN=3600)
def test_resend_confirmation_inside_the_cooldown(app, runner, client):
    assert api_register(client, "r@example.com", "arr").status_code == 201
    r = cli(runner, "users", "resend-confirmation", "arr")
    assert r.exit_code == 1 and "cooldown" in r.output
    assert len(mail_rows(app)) == 1


# -- mail list / retry / send-queued ----------------------------------------------------------

def test_mail_list_never_prints_bodies(app, runner, client):
    assert api_register(client, "m@example.com", "em").status_code == 201
    [row] = mail_rows(app)
    r = cli(runner, "mail", "list")
    assert r.exit_code == 0
    header, line = r.output.rstrip("\n").split("\n")
    assert header.split("\t")[:5] == ["id", "status", "attempts", "to", "subject"]
    fields = line.split("\t")
    assert fields[:5] == [str(row.id), "pending", "0", "m@example.com",
                          "Confirm your email address"]
    token = row.body_text.split("token_id=")[1].split()[0]
    code = [w for w in row.body_text.split() if w.isdigit() and len(w) == 6][0]
    assert token not in r.output and code not in r.output and "confirm-email" not in r.output
    assert cli(runner, "mail", "list", "--status", "sent").output == header + "\n"
    assert cli(runner, "mail", "list", "--status", "pending").output == r.output


def test_mail_list_escapes_control_characters(app, runner):
    with app.app_context():
        outbox.enqueue(to="x@example.com", subject="a\r\nBcc: v@evil.example\x1b[31m",
                       body_text="x", body_html=None)
        db.session.commit()
    r = cli(runner, "mail", "list", "--no-header")
    assert len(r.output.splitlines()) == 1
    assert "a\\x0d\\x0aBcc: v@evil.example\\x1b[31m" in r.output


@pytest.mark.config(MAIL_PORT=free_port(), MAIL_MAX_ATTEMPTS=2)
def test_send_queued_and_retry(app, runner, client, smtp):
    for i in range(2):
        assert api_register(client, f"q{i}@example.com", f"q{i}").status_code == 201
    r = cli(runner, "mail", "send-queued")  # SMTP is down
    assert r.exit_code == 1 and "sent 0, will retry 2, failed 2" in r.output
    r = cli(runner, "mail", "list", "--status", "failed", "--no-header")
    assert len(r.output.splitlines()) == 2 and "ConnectionRefusedError" in r.output
    assert cli(runner, "mail", "retry").exit_code == 1  # neither an id nor --all
    app.config["MAIL_PORT"] = smtp.port
    first = mail_rows(app)[0].id
    r = cli(runner, "mail", "retry", first)
    assert r.exit_code == 0 and "requeued 1 message(s)" in r.output
    r = cli(runner, "mail", "retry", first)
    assert r.exit_code == 1 and "no failed message matched" in r.output
    r = cli(runner, "mail", "send-queued")
    assert r.exit_code == 0 and "sent 1, will retry 0, failed 0" in r.output
    assert [m["To"] for m in smtp.messages] == ["q0@example.com"]
    r = cli(runner, "mail", "retry", "--all")
    assert r.exit_code == 0 and "requeued 1 message(s)" in r.output
    assert cli(runner, "mail", "send-queued").exit_code == 0
    assert sorted(m["To"] for m in smtp.messages) == ["q0@example.com", "q1@example.com"]
    assert {row.status for row in mail_rows(app)} == {"sent"}


@pytest.mark.parametrize("username", ["bad name", "a\u202eb", "x\r\ny", "<b>hi</b>"])
def test_create_applies_the_username_rule_of_the_api(app, runner, username):
    r = create(runner, "rule@example.com", "--username", username)
    assert r.exit_code != 0
    assert "username may contain only letters, digits and @/./+/-/_" in r.output
    assert users(app) == {}


def test_delete_drops_the_unsent_confirmation_mail(app, runner, deliver):
    assert create(runner, "gone@example.com").exit_code == 0
    assert [m.status for m in mail_rows(app)] == ["pending"]
    assert cli(runner, "users", "delete", "gone@example.com", "--yes").exit_code == 0
    assert mail_rows(app) == [] and deliver() == []


def test_purge_keeps_an_account_confirmed_after_the_listing(app, runner, monkeypatch):
    assert create(runner, "late@example.com").exit_code == 0
    listed = operators.unconfirmed_before

    def listing_then_confirmation(cutoff):
        found = listed(cutoff)
        db.session.execute(sa.update(User).values(is_email_confirmed=True))
        db.session.commit()
        return found

    monkeypatch.setattr(operators, "unconfirmed_before", listing_then_confirmation)
    r = cli(runner, "users", "purge-unconfirmed", "--older-than", "0s", "--force")
    assert r.exit_code == 0, r.output
    assert "deleted 0 unconfirmed account(s)" in r.output
    assert list(users(app)) == ["late@example.com"]
