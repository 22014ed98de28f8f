"""Operator commands: ``flask users ...`` and ``flask mail ...``."""

from __future__ import annotations

from datetime import timedelta

import click
from flask.cli import AppGroup
from sqlalchemy import select

from .core import confirmation
from .core import delivery
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


def _describe(user: User) -> str:
    state = "confirmed" if user.is_email_confirmed else "unconfirmed"
    return (f"{user.id}\t{user.email}\t{user.username or '-'}\t"
            f"{user.account_type}\t{state}\t{user.created_at:%Y-%m-%d %H:%M}")


def parse_duration(value: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s`` or ``2w``; a bare number is seconds."""
    value = value.strip().lower()
    unit = value[-1] if value and value[-1] in DURATION_UNITS else "s"
    number = value[:-1] if value and value[-1] in DURATION_UNITS else value
    if not number.isascii() or not number.isdigit():
        raise click.BadParameter(f"{value!r} is not a duration like 7d or 12h")
    return timedelta(seconds=int(number) * DURATION_UNITS[unit])


@users.command("create")
@click.argument("email")
@click.option("--username", help="Login name (optional).")
@click.option("--account-type", type=click.Choice(ACCOUNT_TYPES), default="customer",
              show_default=True)
@click.option("--first-name")
@click.option("--last-name")
@click.option("--confirmed/--unconfirmed", default=False,
              help="Mark the address confirmed instead of emailing a confirmation.")
@click.password_option(help="The password (prompted when omitted).")
def create_user(email, username, account_type, first_name, last_name, confirmed, password):
    """Create an account of any type, with the same checks as the API."""
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
@click.option("--limit", type=int, default=100, show_default=True)
def list_users(unconfirmed, limit):
    """List accounts, newest last."""
    stmt = select(User).order_by(User.id).limit(limit)
    if unconfirmed:
        stmt = stmt.where(User.is_email_confirmed.is_(False))
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
        click.echo(f"{name}: {getattr(user, name)}")


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
def purge_unconfirmed(older_than, dry_run):
    """Delete unconfirmed accounts older than the given age (frees their addresses)."""
    cutoff = utcnow() - parse_duration(older_than)
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
def list_mail(status):
    """List outbox messages: id, status, attempts, to, subject, created, sent or next try,
    last error (never bodies: they hold confirmation secrets)."""
    stmt = select(OutboxMessage).order_by(OutboxMessage.id)
    if status != "all":
        stmt = stmt.where(OutboxMessage.status == status)
    for row in db.session.scalars(stmt):
        when = row.sent_at if row.status == "sent" else row.next_attempt_at
        fields = (row.id, row.status, row.attempts, row.to_addr, row.subject,
                  f"{row.created_at:%Y-%m-%d %H:%M:%S}", f"{when:%Y-%m-%d %H:%M:%S}",
                  row.last_error or "")
        click.echo("\t".join(_printable(f) for f in fields))


@mail_cli.command("retry")
@click.argument("message_id", type=int, required=False)
@click.option("--all", "all_failed", is_flag=True, help="Requeue every failed message.")
def retry_mail(message_id, all_failed):
    """Put a failed message (or all of them) back in the queue."""
    if message_id is None and not all_failed:
        _fail("give a message id or --all")
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


def init_app(app) -> None:
    """Attach the command groups to ``flask``."""
    app.cli.add_command(users)
    app.cli.add_command(mail_cli)
