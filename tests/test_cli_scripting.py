"""The CLI is safe to script: units required, short purges refused, headers, no None,
contradictory flags refused, passwords without the process list, mail status/preview."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from regapp.extensions import db
from regapp.models import OutboxMessage
from regapp.models import User
from regapp.models import utcnow

PASSWORD = "Str0ng-passphrase"


def cli(runner, *args, **kwargs):
    return runner.invoke(args=[str(a) for a in args], **kwargs)


def emails(app) -> list[str]:
    with app.app_context():
        return sorted(db.session.scalars(sa.select(User.email)).all())


def age_everyone(app, delta):
    with app.app_context():
        db.session.execute(sa.update(User).values(created_at=utcnow() - delta))
        db.session.commit()


@pytest.mark.parametrize("value", ["2", "48", "2 d", "2days", "d", "-1h", "1.5h", "٣d"])
def test_durations_need_a_unit(app, runner, value):
    r = cli(runner, "users", "purge-unconfirmed", "--older-than", value)
    assert r.exit_code == 2
    assert "is not a duration" in r.output and "30m, 12h or 2d" in r.output


def test_purge_under_an_hour_needs_force(app, runner):
    for name in ("a", "b"):
        assert cli(runner, "users", "create", f"{name}@example.com",
                   "--password", PASSWORD).exit_code == 0
    age_everyone(app, timedelta(minutes=40))
    for value in ("30m", "59m", "3599s"):
        r = cli(runner, "users", "purge-unconfirmed", "--older-than", value)
        assert r.exit_code == 2 and "--force" in r.output
        assert emails(app) == ["a@example.com", "b@example.com"]
    r = cli(runner, "users", "purge-unconfirmed", "--older-than", "1h")
    assert r.exit_code == 0 and "deleted 0 unconfirmed account(s)" in r.output
    r = cli(runner, "users", "purge-unconfirmed", "--older-than", "30m", "--force")
    assert r.exit_code == 0 and "deleted 2 unconfirmed account(s)" in r.output
    assert emails(app) == []


def test_lists_have_a_header_and_never_none(app, runner):
    assert cli(runner, "users", "create", "n@example.com", "--password", PASSWORD).exit_code == 0
    r = cli(runner, "users", "list")
    header, row = r.output.splitlines()
    assert header == "id\temail\tusername\taccount_type\tstate\tcreated"
    assert row.split("\t")[:5] == ["1", "n@example.com", "-", "customer", "unconfirmed"]
    assert cli(runner, "users", "list", "--no-header").output.splitlines() == [row]
    r = cli(runner, "mail", "list")
    header, row = r.output.splitlines()
    assert header.split("\t") == ["id", "status", "attempts", "to", "subject", "created",
                                  "sent_or_next_try", "last_error"]
    assert row.split("\t")[-1] == "-"
    r = cli(runner, "users", "show", "n@example.com")
    assert "username: -" in r.output and "confirmed_at: -" in r.output
    for output in (cli(runner, "users", "list").output, cli(runner, "mail", "list").output,
                   r.output):
        assert "None" not in output


def test_retry_refuses_an_id_with_all(app, runner):
    r = cli(runner, "mail", "retry", "1", "--all")
    # A usage error (exit 2, with the usage line), as click reports contradictory flags.
    assert r.exit_code == 2 and "not both" in r.output
    assert "Usage:" in r.output


@pytest.mark.parametrize("value", ["99999999999999999999w", "3651d", "522w", "87601h",
                                   "9" * 5000 + "s"])
def test_durations_are_range_checked(app, runner, value):
    assert cli(runner, "users", "create", "r@example.com", "--password",
               PASSWORD).exit_code == 0
    age_everyone(app, timedelta(days=30))
    r = cli(runner, "users", "purge-unconfirmed", "--older-than", value, "--force")
    assert r.exit_code == 2, r.output
    assert "too long a duration: at most 3650d" in r.output
    assert isinstance(r.exception, SystemExit)  # click's exit, not an OverflowError
    assert emails(app) == ["r@example.com"]


def test_the_longest_duration_is_accepted(app, runner):
    r = cli(runner, "users", "purge-unconfirmed", "--older-than", "3650d")
    assert r.exit_code == 0 and "deleted 0 unconfirmed account(s)" in r.output


def test_mail_list_counts_the_delivered_attempt(app, runner, smtp, sign_up):
    assert sign_up("drf", email="sent@example.com").status_code == 201
    r = cli(runner, "mail", "send-queued")
    assert r.exit_code == 0 and "sent 1" in r.output
    header, row = cli(runner, "mail", "list").output.splitlines()
    assert row.split("\t")[1:4] == ["sent", "1", "sent@example.com"]


def test_create_reads_the_password_from_stdin(app, runner):
    r = cli(runner, "users", "create", "s@example.com", "--password-stdin",
            input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    assert PASSWORD not in r.output
    r = cli(runner, "users", "create", "t@example.com", "--password-stdin",
            "--password", PASSWORD, input=PASSWORD + "\n")
    assert r.exit_code == 2 and "not both" in r.output
    r = cli(runner, "users", "create", "u@example.com", "--password-stdin", input="\n")
    assert r.exit_code == 2 and "empty" in r.output
    assert emails(app) == ["s@example.com"]
    r = cli(runner, "users", "create", "v@example.com", "--password-stdin", input="sunshine\n")
    assert r.exit_code == 1 and "password is too common" in r.output


def test_create_prompts_twice_without_echo(app, runner):
    r = cli(runner, "users", "create", "p@example.com", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert r.exit_code == 0, r.output
    assert "Password:" in r.output and "Repeat for confirmation:" in r.output
    assert PASSWORD not in r.output
    assert emails(app) == ["p@example.com"]
    help_text = cli(runner, "users", "create", "--help").output
    assert "prompted for, twice" in help_text and "--password-stdin" in help_text


def test_mail_status(app, runner):
    r = cli(runner, "mail", "status")
    assert r.exit_code == 0
    assert r.output.splitlines() == ["backlog: 0", "failed: 0", "oldest_pending: -"]
    for name in ("a", "b", "c"):
        cli(runner, "users", "create", f"{name}@example.com", "--password", PASSWORD)
    with app.app_context():
        first = db.session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).first()
        first.created_at = utcnow() - timedelta(minutes=5, seconds=3)
        db.session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == 3)
                           .values(status="failed"))
        db.session.commit()
    lines = cli(runner, "mail", "status").output.splitlines()
    assert lines[:2] == ["backlog: 2", "failed: 1"]
    assert re.fullmatch(r"oldest_pending: 5m [345]s", lines[2]), lines[2]


def test_mail_preview_writes_every_template(app, runner, tmp_path):
    r = cli(runner, "mail", "preview", "--out", tmp_path)
    assert r.exit_code == 0
    paths = [Path(line) for line in r.output.splitlines()]
    assert {p.suffix for p in paths} == {".txt"}
    names = {p.stem for p in paths}
    assert {"confirm", "reset", "password_changed"} <= names
    confirm = (tmp_path / "confirm.txt").read_text()
    assert confirm.startswith("Subject: Confirm your email address")
    assert "123456" in confirm and "/confirm-email/" in confirm
    r = cli(runner, "mail", "preview", "--html", "--out", tmp_path / "html")
    html_paths = [Path(line) for line in r.output.splitlines() if line.endswith(".html")]
    assert {p.stem for p in html_paths} == names
    for path in html_paths:
        html = path.read_text()
        assert html.startswith("<!doctype html>") and 'name="viewport"' in html
    # Without --out: a fresh temporary folder.
    r = cli(runner, "mail", "preview")
    made = [Path(line) for line in r.output.splitlines()]
    assert made and all(p.is_file() for p in made)
    shutil.rmtree(made[0].parent)
