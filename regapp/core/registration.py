"""Registration: create an account and queue its confirmation, shared by every profile
and the CLI."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import signals
from ..extensions import db
from ..logs import event
from ..models import EmailConfirmation
from ..models import User
from ..models import utcnow
from . import passwords
from . import reset
from . import rows
from . import tokens
from .errors import FieldError
from .errors import FieldErrors
from .identity import NormalizedEmail
from .identity import check_deliverable
from .identity import check_username
from .identity import email_key
from .identity import normalize_email
from .identity import username_key
from .login import api_token_hash
from .passwords import DjangoPolicy

log = logging.getLogger(__name__)

PROFILE_FIELDS = ("first_name", "insertion", "last_name", "postal_code", "phone", "avatar")


@dataclass
class Registration:
    """What ``register`` made: the user, and the api_token when one was asked for."""

    user: User
    api_token: str | None = None
    # What the caller's ``within`` hook returned (made in the same transaction).
    extra: object = None


def register(data: dict, *, policy, account_type: str = "customer",
             issue_api_token: bool = False, confirmed: bool = False,
             resolver=None, profile: str | None = None, within=None) -> Registration:
    """Create an account and queue its confirmation email in the same transaction.

    ``data`` holds canonical fields (``email``, ``password``, optional
    ``username`` and profile fields), already shape-checked by the caller. An ``email``
    the profile's field already normalised is not normalised again. ``profile`` is
    stored on the account: its password policy applies to later resets.

    A sign-up refused because the address is taken mails the address's owner
    (reset.on_duplicate_signup); the answer stays the profile's duplicate error.

    :raises FieldErrors: codes ``invalid``/``undeliverable`` (email),
        ``unique`` (email, username), the policy's password codes.
    """
    email = _checked_email(data["email"], resolver)
    username = data.get("username") or None
    ukey = check_username(username) if username else None
    ekey = email_key(email)

    attrs = {"username": username, "email": email,
             "first_name": data.get("first_name"), "last_name": data.get("last_name")}
    errors = passwords.check(policy, data["password"], attrs)
    if errors:
        # A taken address or username is what the answer reports, as before.
        _refuse_taken(ekey, ukey, data)
        raise FieldErrors(errors)
    # The hash comes before the first query: no transaction (or pooled connection)
    # is held while it runs, and what follows is one checkout and one transaction:
    # the inserts and the commit. The unique constraints answer for duplicates (the
    # INSERT's IntegrityError, then one SELECT names every field that is taken).
    password_hash = passwords.hash_password(data["password"])

    now = utcnow()
    api_token = secrets.token_hex(16) if issue_api_token else None
    extra = None
    try:
        user = rows.insert(
            User,
            username=username, username_key=ukey, email=email, email_key=ekey,
            password_hash=password_hash, account_type=account_type,
            profile=profile,
            is_email_confirmed=confirmed, confirmed_at=now if confirmed else None,
            # Written with the INSERT, not by an UPDATE when the mail is queued.
            confirmation_sent_at=None if confirmed else now,
            code_failures=0,
            api_token_hash=api_token_hash(api_token) if api_token else None,
            **{name: data.get(name) for name in PROFILE_FIELDS},
        )
        with rows.together():  # the code, the mail and what ``within`` adds
            if not confirmed:
                send_confirmation(user, now)
            if within is not None:
                extra = within(user)
        rows.commit()
    except IntegrityError as exc:
        # Taken, perhaps by a concurrent registration: the constraint is the arbiter.
        db.session.rollback()
        _refused([err.field for err in _duplicate_fields(exc, ekey, ukey)], ekey, data)
    except Exception:
        db.session.rollback()
        raise
    event(log, "registered", "account registered", account_id=user.id, profile=profile,
          account_type=None if account_type == "customer" else account_type)
    signals.send(signals.user_registered, user=user, profile=profile)
    if not confirmed:
        signals.send(signals.confirmation_sent, user=user, resend=False)
    return Registration(user=user, api_token=api_token, extra=extra)


def _refuse_taken(ekey: str, ukey: str | None, data: dict) -> None:
    """Raise the duplicate errors if the address or username is in use."""
    taken = _taken_fields(ekey, ukey)
    if taken:
        _refused(taken, ekey, data)


def _refused(taken: list[str], ekey: str, data: dict):
    """Raise the duplicate errors; a taken address first gets its owner's mail."""
    if "email" in taken:
        reset.on_duplicate_signup(ekey, data.get("password"))
    raise FieldErrors([FieldError(name, "unique") for name in taken])


def create_account(data: dict, *, account_type: str, confirmed: bool = False,
                   policy=None) -> User:
    """The operator path: the same checks as the API, any account type."""
    return register(data, policy=policy or DjangoPolicy(), account_type=account_type,
                    confirmed=confirmed).user


def taken(data: dict) -> list[FieldError]:
    """``unique`` errors for the ``username``/``email`` in ``data`` that are in use.

    Lets a profile report duplicates together with shape errors, as DRF does;
    ``register`` still decides (the unique constraints are the arbiter).
    """
    username, email = data.get("username"), data.get("email")
    ukey = username_key(username) if isinstance(username, str) and username else None
    ekey = None
    if isinstance(email, str) and email:
        try:
            ekey = email_key(_normalized(email))
        except FieldErrors:
            pass
    return [FieldError(name, "unique") for name in _taken_fields(ekey, ukey)]


def send_confirmation(user: User, now=None) -> None:
    """Create a fresh code, queue the email with link and code (caller commits).
    ``now``: the time the caller already recorded as ``confirmation_sent_at``."""
    code = tokens.new_code()
    now = now or utcnow()
    rows.add(
        EmailConfirmation,
        # Bound to the address too: a code dies when the address changes (SECURITY B6).
        user_id=user.id, code_hash=tokens.hash_code(tokens.code_subject(user), code),
        attempts=0,
        expires_at=now + timedelta(seconds=current_app.config["CONFIRM_TOKEN_MAX_AGE"]),
    )
    if user.confirmation_sent_at != now:  # register wrote it with the INSERT
        user.confirmation_sent_at = now
    from .mail import queue_confirmation  # noqa: PLC0415 - mail imports templates

    queue_confirmation(user, tokens.make_confirm_token(user), code)


def _normalized(email: str) -> NormalizedEmail:
    """The address as stored: the email field hands it over normalised, else normalise it."""
    return email if isinstance(email, NormalizedEmail) else normalize_email(email)


def _checked_email(raw: str, resolver=None) -> str:
    email = _normalized(raw)
    if current_app.config["EMAIL_CHECK_DELIVERABILITY"]:
        if resolver is None:
            # An app-injected dnspython-style resolver (tests use a fake: no network).
            resolver = current_app.extensions.get("regapp.dns_resolver")
        check_deliverable(email, resolver=resolver)
    return str(email)  # a plain str for the model


def _taken_fields(ekey: str | None, ukey: str | None) -> list[str]:
    """``username`` and/or ``email`` when in use, answered by one SELECT over both
    unique indexes (so both duplicates are reported at once)."""
    conditions = [column == key for column, key in ((User.username_key, ukey),
                                                    (User.email_key, ekey)) if key is not None]
    if not conditions:
        return []
    found = db.session.execute(
        select(User.username_key, User.email_key).where(or_(*conditions))).all()
    return [name for name, key, index in (("username", ukey, 0), ("email", ekey, 1))
            if key is not None and any(row[index] == key for row in found)]


def _duplicate_fields(exc: IntegrityError, ekey: str, ukey: str | None):
    # The database names one violated constraint; asking it names both fields when
    # both are taken. A row gone meanwhile is still named by the message.
    fields = _taken_fields(ekey, ukey)
    if not fields:
        text = str(exc.orig)
        fields = [name for name in ("username", "email") if f"{name}_key" in text]
    if not fields:  # not a duplicate at all: a real error, not the client's fault
        raise exc
    return [FieldError(name, "unique") for name in fields]
