"""Operator commands: ``flask users ...`` and ``flask mail ...``."""

from __future__ import annotations

import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy import select

from .core import confirmation
from .core import delivery
from .core import mail
from .core import operators
from .core import outbox
from .core import registration
from .core.errors import AlreadyConfirmed
from .core.errors import FieldErrors
from .core.errors import UnknownAccount
from .extensions import db
from .models import OutboxMessage
from .models import User
from .models import utcnow

users = AppGroup("users", help="Manage accounts.")
mail_cli = AppGroup("mail", help="Inspect and deliver the mail outbox.")

ACCOUNT_TYPES = ("customer", "guest", "driver", "admin")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Durations are ages of rows: ten years is more than any of them, and far from where
# dates overflow (a cutoff before year 1).
MAX_DURATION = "3650d (about ten years)"
MAX_DURATION_SECONDS = 3650 * 86400
# purge-unconfirmed refuses a younger cutoff without --force: a typo (`--older-than 2`
# meant as days) would otherwise delete every sign-up still waiting for its email.
PURGE_MINIMUM = timedelta(hours=1)
USER_COLUMNS = ("id", "email", "username", "account_type", "state", "created")
MAIL_COLUMNS = ("id", "status", "attempts", "to", "subject", "created", "sent_or_next_try",
                "last_error")
EMPTY = "-"  # what a list shows for a missing value (never "None")


# Operator-facing text for the core's error codes.
MESSAGES = {
    "unique": "an account with this {field} already exists",
    "invalid": "{field} is not valid",
    "undeliverable": "{field} has a domain that does not accept mail",
    "max_length": "{field} is longer than {max_length} characters",
    "invalid_chars": "{field} may contain only letters, digits and @/./+/-/_",
    "password_too_short": "password is too short (at least {min_length} characters)",
    "password_too_long": "password is too long (at most {max_length} characters)",
    "password_too_common": "password is too common",
    "password_breached": "password has appeared in a data breach",
    "password_entirely_numeric": "password is entirely numeric",
    "password_too_similar": "password is too similar to the {verbose_name}",
}


def _fail(message: str) -> None:
    raise click.ClickException(message)


def _explain(exc: FieldErrors) -> str:
    """Every problem on one line, e.g. ``password is too common``."""
    parts = []
    for err in exc.errors:
        params = {"verbose_name": "account details", **err.params, "field": err.field}
        try:
            parts.append(MESSAGES[err.code].format(**params))
        except (KeyError, IndexError):  # a code (or parameter) this catalog doesn't know
            parts.append(f"{err.field}: {err.code.replace('_', ' ')}")
    return "; ".join(parts)


def _printable(value) -> str:
    """Operator output stays on one line: control characters are escaped, never echoed."""
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _lookup(identifier: str) -> User:
    try:
        return operators.find_user(identifier)
    except UnknownAccount:
        _fail(f"no account matches {identifier!r}")


def _row(values) -> str:
    """One tab-separated line; a missing value is ``-``, never ``None``."""
    return "\t".join(EMPTY if v is None or v == "" else _printable(v) for v in values)


def _when(value) -> str | None:
    return None if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def _describe(user: User) -> str:
    state = "confirmed" if user.is_email_confirmed else "unconfirmed"
    return _row((user.id, user.email, user.username, user.account_type, state,
                 None if user.created_at is None else f"{user.created_at:%Y-%m-%d %H:%M}"))


def parse_duration(value: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s`` or ``2w``: the unit is required (a bare
    ``2`` could mean seconds or days)."""
    text = value.strip().lower()
    number, unit = text[:-1], text[-1:]
    if unit not in DURATION_UNITS or not number.isascii() or not number.isdigit():
        raise click.BadParameter(
            f"{value!r} is not a duration: give a number and a unit "
            f"(s, m, h, d or w), e.g. 30m, 12h or 2d")
    # Length first: int() refuses numbers of more than 4300 digits with a ValueError.
    if len(number) > 12 or int(number) * DURATION_UNITS[unit] > MAX_DURATION_SECONDS:
        raise click.BadParameter(
            f"{value[:40]!r} is too long a duration: at most {MAX_DURATION}, "
            "e.g. 30m, 12h or 2d")
    return timedelta(seconds=int(number) * DURATION_UNITS[unit])


def _human(seconds: int | None) -> str:
    """``3725`` -> ``1h 2m 5s``."""
    if seconds is None:
        return EMPTY
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return " ".join(parts)


@users.command("create")
@click.argument("email")
@click.option("--username", help="Login name (optional).")
@click.option("--account-type", type=click.Choice(ACCOUNT_TYPES), default="customer",
              show_default=True)
@click.option("--first-name")
@click.option("--last-name")
@click.option("--confirmed/--unconfirmed", default=False,
              help="Mark the address confirmed instead of emailing a confirmation.")
@click.option("--password", help="The password. Visible to other users of this machine "
              "(process list, shell history): prefer the prompt or --password-stdin.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input (scripts).")
def create_user(email, username, account_type, first_name, last_name, confirmed, password,
                password_stdin):
    """Create an account of any type, with the same checks as the API.

    Without --password or --password-stdin the password is prompted for, twice,
    without echo.
    """
    if password is not None and password_stdin:
        raise click.UsageError("give --password or --password-stdin, not both")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("--password-stdin read an empty line")
    elif password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    data = {"email": email, "username": username, "password": password,
            "first_name": first_name, "last_name": last_name}
    try:
        user = registration.create_account(data, account_type=account_type, confirmed=confirmed)
    except FieldErrors as exc:
        _fail(f"account not created: {_explain(exc)}")
    state = "confirmed" if confirmed else "confirmation email queued"
    click.echo(f"created account {user.id} ({user.email}, {account_type}, {state})")


@users.command("list")
@click.option("--unconfirmed", is_flag=True, help="Only unconfirmed accounts.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--no-header", is_flag=True, help="Leave out the header row.")
def list_users(unconfirmed, limit, no_header):
    """List accounts, newest last: a header row, then one tab-separated row each."""
    stmt = select(User).order_by(User.id).limit(limit)
    if unconfirmed:
        stmt = stmt.where(User.is_email_confirmed.is_(False))
    if not no_header:
        click.echo("\t".join(USER_COLUMNS))
    for user in db.session.scalars(stmt):
        click.echo(_describe(user))


@users.command("show")
@click.argument("identifier")
def show_user(identifier):
    """Show one account (by id, email or username)."""
    user = _lookup(identifier)
    for name in ("id", "email", "username", "account_type", "first_name", "insertion",
                 "last_name", "postal_code", "phone", "is_email_confirmed",
                 "confirmed_at", "created_at"):
        value = getattr(user, name)
        click.echo(f"{name}: {EMPTY if value is None or value == '' else _printable(value)}")


@users.command("confirm")
@click.argument("identifier")
def confirm_user(identifier):
    """Mark an address confirmed by hand."""
    user = _lookup(identifier)
    try:
        operators.mark_confirmed(user)
    except AlreadyConfirmed:
        _fail(f"account {user.id} is already confirmed")
    click.echo(f"confirmed account {user.id} ({user.email})")


@users.command("delete")
@click.argument("identifier")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_user(identifier, yes):
    """Delete an account."""
    user = _lookup(identifier)
    if not yes:
        click.confirm(f"Delete account {user.id} ({user.email})?", abort=True)
    described = f"{user.id} ({user.email})"
    operators.delete_user(user)
    click.echo(f"deleted account {described}")


@users.command("purge-unconfirmed")
@click.option("--older-than", "older_than", default="2d", show_default=True,
              help="Age such as 2d, 12h, 90m.")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@click.option("--force", is_flag=True, help="Allow an age under one hour.")
def purge_unconfirmed(older_than, dry_run, force):
    """Delete unconfirmed accounts older than the given age (frees their addresses).

    The age needs a unit (30m, 12h, 2d); under one hour is refused without --force.
    """
    age = parse_duration(older_than)
    if age < PURGE_MINIMUM and not force:
        raise click.UsageError(
            f"--older-than {older_than} would delete sign-ups younger than an hour, "
            "whose confirmation email may still be on its way; add --force if you mean it")
    cutoff = utcnow() - age
    purged = operators.purge_unconfirmed(cutoff, dry_run=dry_run)
    for user in purged:
        click.echo(_describe(user))
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {len(purged)} unconfirmed account(s)")


@users.command("resend-confirmation")
@click.argument("identifier")
def resend(identifier):
    """Queue a new confirmation email (ignores nothing: says why when it can't)."""
    user = _lookup(identifier)
    if user.is_email_confirmed:
        _fail(f"account {user.id} is already confirmed")
    if not confirmation.resend_confirmation(user.email):
        _fail("a confirmation was sent moments ago; try again after the cooldown")
    click.echo(f"queued a new confirmation for {user.email}")


@mail_cli.command("list")
@click.option("--status", type=click.Choice(["pending", "sending", "sent", "failed", "all"]),
              default="all", show_default=True)
@click.option("--no-header", is_flag=True, help="Leave out the header row.")
def list_mail(status, no_header):
    """List outbox messages after a header row: id, status, attempts, to, subject,
    created, sent or next try, last error (never bodies: they hold confirmation secrets)."""
    stmt = select(OutboxMessage).order_by(OutboxMessage.id)
    if status != "all":
        stmt = stmt.where(OutboxMessage.status == status)
    if not no_header:
        click.echo("\t".join(MAIL_COLUMNS))
    for row in db.session.scalars(stmt):
        when = row.sent_at if row.status == "sent" else row.next_attempt_at
        click.echo(_row((row.id, row.status, row.attempts, row.to_addr, row.subject,
                         _when(row.created_at), _when(when), row.last_error)))


@mail_cli.command("retry")
@click.argument("message_id", type=int, required=False)
@click.option("--all", "all_failed", is_flag=True, help="Requeue every failed message.")
def retry_mail(message_id, all_failed):
    """Put a failed message (or all of them) back in the queue."""
    if message_id is None and not all_failed:
        _fail("give a message id or --all")
    if message_id is not None and all_failed:
        raise click.UsageError("give a message id or --all, not both")
    count = outbox.retry(None if all_failed else message_id)
    if count == 0:
        _fail("no failed message matched")
    click.echo(f"requeued {count} message(s)")


@mail_cli.command("send-queued")
def send_queued():
    """Deliver every message that is due now, in this process."""
    counts = delivery.send_all_due()
    click.echo(f"sent {counts['sent']}, will retry {counts['retry']}, "
               f"failed {counts['failed']}")
    if counts["retry"] or counts["failed"]:
        raise SystemExit(1)


@mail_cli.command("status")
def mail_status():
    """Backlog (waiting or being sent), failed messages and the oldest waiting one's age."""
    stats = outbox.stats()
    click.echo(f"backlog: {stats['backlog']}")
    click.echo(f"failed: {stats['failed']}")
    click.echo(f"oldest_pending: {_human(stats['oldest_pending_seconds'])}")


@mail_cli.command("preview")
@click.option("--html", "with_html", is_flag=True, help="Also write each HTML part.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the files (default: a new temporary folder).")
def preview_mail(with_html, out_dir):
    """Render every email template with sample data to files and print their paths."""
    if out_dir is None:
        out_dir = Path(tempfile.mkdtemp(prefix="regapp-mail-preview-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in mail.templates():
        subject, text, html = mail.sample(name)
        text_path = out_dir / f"{name}.txt"
        text_path.write_text(f"Subject: {subject}\n\n{text}", encoding="utf-8")
        click.echo(str(text_path))
        if with_html:
            html_path = out_dir / f"{name}.html"
            html_path.write_text(html, encoding="utf-8")
            click.echo(str(html_path))


def init_app(app) -> None:
    """Attach the command groups to ``flask``."""
    app.cli.add_command(users)
    app.cli.add_command(mail_cli)
