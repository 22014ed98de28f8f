"""Confirmation through HTTP: the email, the link token and the code at every endpoint."""

import re
import time
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest
import sqlalchemy as sa
from itsdangerous import TimestampSigner
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy import update

from regapp.extensions import db
from regapp.models import EmailConfirmation
from regapp.models import User
from tests.smtp import html_part
from tests.smtp import kind
from tests.smtp import text_part

PASSWORD = "Str0ng-passphrase"
DRF_ALREADY = {"token_id": ["Email is already confirmed."]}
DRF_INVALID = {"token_id": ["Invalid or expired token."]}
JSONAPI_ALREADY = {"errors": [{"user_account": "This user account has already been verified"}],
                   "jsonapi": {"version": "1.0"}}
JSONAPI_INVALID = {"errors": [{"email_token": "Invalid or expired token. Please retry "
                                              "account confirmation"}],
                   "jsonapi": {"version": "1.0"}}
TOKEN_INCORRECT = {"message": "Token is incorrect"}
ALREADY_VALIDATED = {"message": "The email is already validated"}
RESEND_BODY = {"detail": "If this address is registered and not yet confirmed, "
                         "a new confirmation email is on its way."}


def row(app, email):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email_key == email.lower()))
        db.session.expunge(user)
        return user


def confirm_link(client, token):
    return client.get("/api/confirm-email/", query_string={"token_id": token})


def verification(client, token):
    return client.get("/api/users/verification", query_string={"email_token": token})


def validation(client, email, token):
    return client.post("/api/users/validation", json={"email": email, "token": token})


def other_code(code, step=1):
    return f"{(int(code) + step) % 1_000_000:06d}"


def assert_confirmed(app, email, confirmed=True):
    user = row(app, email)
    assert user.is_email_confirmed is confirmed
    if confirmed:
        assert abs(datetime.now(timezone.utc) - user.confirmed_at) < timedelta(minutes=1)
    else:
        assert user.confirmed_at is None
    return user


# -- the email ----------------------------------------------------------------------

@pytest.mark.config(FRONTEND_URL="https://front.example/app/")
def test_one_email_with_link_from_config_and_code(app, client, deliver, make_user):
    make_user(headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example",
                              "X-Forwarded-Proto": "http", "Forwarded": "host=evil.example"})
    messages = deliver()
    assert len(messages) == 1
    msg = messages[0]
    assert msg["To"] == "alice@x.io"
    assert msg.get_content_type() == "multipart/alternative"
    text, html = text_part(msg), html_part(msg)
    link = re.search(r"https://front\.example/app/confirm-email/\?token_id=([A-Za-z0-9_.\-]+)",
                     text)
    assert link, text
    code = re.search(r"^\s*([0-9]{6})\s*$", text, re.M)
    assert code, text
    assert link.group(0) in html and code.group(1) in html
    for part in (text, html):
        assert "evil.example" not in part
        assert PASSWORD not in part
    # Delivering again sends nothing new: one email per registration.
    assert len(deliver()) == 1


def test_default_link_points_at_this_service(client, last_confirmation, make_user):
    make_user()
    link, token, code = last_confirmation()
    assert link == f"http://127.0.0.1:5000/confirm-email/?token_id={token}"
    assert re.fullmatch(r"[0-9]{6}", code)


def test_failed_registration_sends_nothing(client, deliver, make_user):
    make_user()
    client.post("/api/register/", json={"username": "b", "email": "alice@x.io",
                                        "password": PASSWORD})
    client.post("/api/register/", json={"username": "c", "email": "c@x.io", "password": "1"})
    # No confirmation for either; the taken address's owner is told of the attempt (issue 10).
    assert [(m["To"], kind(m)) for m in deliver()] == [
        ("alice@x.io", "confirm"), ("alice@x.io", "duplicate_pending")]


# -- confirming with the link token ---------------------------------------------------

ENDPOINTS = {
    "drf": (lambda c, email, t: confirm_link(c, t), 200, None),
    "jsonapi": (lambda c, email, t: verification(c, t), 200, b""),
    "laravel": (lambda c, email, t: validation(c, email, t), 201, {"message": "Validated"}),
}
ALREADY = {
    "drf": (lambda c, email, t: confirm_link(c, t), 400, DRF_ALREADY),
    "jsonapi": (lambda c, email, t: verification(c, t), 422, JSONAPI_ALREADY),
    "laravel": (lambda c, email, t: validation(c, email, t), 409, ALREADY_VALIDATED),
}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_link_token_confirms_at_every_endpoint(app, client, last_confirmation, endpoint, make_user):
    email = make_user()
    _, token, code = last_confirmation()
    call, status, body = ENDPOINTS[endpoint]
    r = call(client, email, token)
    assert r.status_code == status
    if isinstance(body, dict):
        assert r.get_json() == body
    elif body is not None:
        assert r.data == body
    first = assert_confirmed(app, email)
    # Reuse, on every endpoint: "already confirmed" in that profile's format.
    for name, (again, again_status, again_body) in ALREADY.items():
        r = again(client, email, token)
        assert (r.status_code, r.get_json()) == (again_status, again_body), name
    # The code of the same email is not "wrong" either: the address is confirmed.
    r = validation(client, email, code)
    assert (r.status_code, r.get_json()) == (409, ALREADY_VALIDATED)
    assert assert_confirmed(app, email).confirmed_at == first.confirmed_at


def test_jsonapi_success_is_empty_text_plain(client, last_confirmation, make_user):
    make_user()
    _, token, _ = last_confirmation()
    r = verification(client, token)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.data == b""


@pytest.mark.parametrize("as_int", [False, True], ids=["string", "integer"])
def test_code_confirms_at_validation(app, client, last_confirmation, as_int, make_user):
    email = make_user()
    _, _, code = last_confirmation()
    r = validation(client, email, int(code) if as_int else code)
    assert (r.status_code, r.get_json()) == (201, {"message": "Validated"})
    assert_confirmed(app, email)
    r = validation(client, email, code)
    assert (r.status_code, r.get_json()) == (409, ALREADY_VALIDATED)
    r = confirm_link(client, last_confirmation()[1])
    assert (r.status_code, r.get_json()) == (400, DRF_ALREADY)


def test_a_link_confirms_with_one_statement(app, client, last_confirmation, make_user,
                                            statements):
    """One UPDATE flips the flag and returns the account the answer is made from: no
    SELECT before it or after it."""
    email = make_user()
    _, token, _ = last_confirmation()
    statements.clear()
    r = confirm_link(client, token)
    assert r.status_code == 200 and r.get_json()["email"] == email
    assert len(statements) == 1 and statements[0].lstrip().startswith("UPDATE"), statements
    assert_confirmed(app, email)


def test_a_code_confirms_with_one_read_and_one_write_on_postgresql(
        app, client, last_confirmation, make_user, statements):
    """The account and its codes in one SELECT; the code used up and the account
    confirmed in one statement on PostgreSQL (two UPDATEs elsewhere)."""
    email = make_user()
    _, _, code = last_confirmation()
    statements.clear()
    r = validation(client, email, code)
    assert (r.status_code, r.get_json()) == (201, {"message": "Validated"})
    kinds = [s.lstrip().split(None, 1)[0] for s in statements]
    postgresql = db.engine.dialect.name == "postgresql"
    assert kinds == (["SELECT", "WITH"] if postgresql else ["SELECT", "UPDATE", "UPDATE"])
    assert_confirmed(app, email)
    with app.app_context():
        codes = db.session.execute(select(EmailConfirmation.used_at)).scalars().all()
    assert len(codes) == 1 and codes[0] is not None


@pytest.mark.postgresql_only
@pytest.mark.parametrize("meanwhile, status, body", [
    # Wrong guesses used the code up between the read and the write.
    ("UPDATE email_confirmations SET attempts = 5", 401, TOKEN_INCORRECT),
    # The link confirmed the account between the read and the write.
    ("UPDATE users SET is_email_confirmed = true", 409, ALREADY_VALIDATED),
], ids=["code-used-up", "link-won"])
def test_a_code_that_loses_a_race_confirms_nothing_twice(app, client, last_confirmation,
                                                         make_user, meanwhile, status, body):
    """Another transaction commits between the code's SELECT and its UPDATE: the one
    statement that uses the code and confirms the account changes neither, and the
    answer says why."""
    email = make_user()
    _, _, code = last_confirmation()

    def race(conn, cursor, statement, *args):
        if statement.lstrip().startswith("WITH"):
            with sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"],
                                  poolclass=sa.pool.NullPool).begin() as other:
                other.execute(sa.text(meanwhile))

    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", race)
        try:
            r = validation(client, email, code)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", race)
        used = db.session.execute(select(EmailConfirmation.used_at)).scalars().all()
    assert (r.status_code, r.get_json()) == (status, body)
    assert used == [None]


def test_code_email_is_case_insensitive(app, client, last_confirmation, make_user):
    make_user()
    _, _, code = last_confirmation()
    r = validation(client, "ALICE@X.IO", code)
    assert r.status_code == 201
    assert_confirmed(app, "alice@x.io")


# -- wrong codes ------------------------------------------------------------------------

def test_five_wrong_codes_lock_the_code_but_not_the_link(app, client, last_confirmation, make_user):
    email = make_user()
    _, token, code = last_confirmation()
    for step in range(1, 6):
        r = validation(client, email, other_code(code, step))
        assert (r.status_code, r.get_json()) == (401, TOKEN_INCORRECT)
    r = validation(client, email, code)
    # A used-up code answers exactly like a wrong code for an unknown address (issue 11).
    unknown = validation(client, "nobody@x.io", code)
    assert (r.status_code, r.get_json()) == (401, TOKEN_INCORRECT)
    assert (r.status_code, r.data) == (unknown.status_code, unknown.data)
    assert r.mimetype == "application/json"
    assert_confirmed(app, email, confirmed=False)
    # Guessing can't lock the owner out: the link still works.
    assert confirm_link(client, token).status_code == 200
    assert_confirmed(app, email)


def test_wrong_codes_count_across_case_variants(app, client, last_confirmation, make_user):
    make_user()
    _, _, code = last_confirmation()
    for step in range(1, 6):
        variant = "ALICE@X.IO" if step % 2 else "alice@x.io"
        assert validation(client, variant, other_code(code, step)).status_code == 401
    r = validation(client, "Alice@X.io", code)
    assert (r.status_code, r.get_json()) == (401, TOKEN_INCORRECT)
    assert_confirmed(app, "alice@x.io", confirmed=False)


@pytest.mark.config(CONFIRM_CODE_MAX_ATTEMPTS=3, CONFIRM_CODE_LIFETIME_CAP=6)
def test_a_new_code_does_not_reset_the_lifetime_cap(app, client, last_confirmation, make_user):
    email = make_user()
    for _ in range(2):
        _, _, code = last_confirmation()
        for step in range(1, 4):
            assert validation(client, email, other_code(code, step)).status_code == 401
        assert client.post("/api/resend-confirmation/", json={"email": email}
                           ).status_code == 202
    _, token, code = last_confirmation()
    r = validation(client, email, code)
    assert (r.status_code, r.get_json()) == (401, TOKEN_INCORRECT)
    assert_confirmed(app, email, confirmed=False)
    assert confirm_link(client, token).status_code == 200


def test_unknown_email_answers_like_a_wrong_code(client, last_confirmation, make_user):
    email = make_user()
    _, _, code = last_confirmation()
    wrong = validation(client, email, other_code(code))
    unknown = validation(client, "nobody@x.io", code)
    assert (wrong.status_code, wrong.data) == (unknown.status_code, unknown.data)
    assert unknown.get_json() == TOKEN_INCORRECT


def test_another_users_token_or_code_is_incorrect(app, client, last_confirmation, make_user):
    alice = make_user("alice")
    _, alice_token, alice_code = last_confirmation(alice)
    bob = make_user("bob")
    _, bob_token, bob_code = last_confirmation(bob)
    for token in (bob_token, bob_code):
        r = validation(client, alice, token)
        assert (r.status_code, r.get_json()) == (401, TOKEN_INCORRECT)
    r = validation(client, bob, alice_token)
    assert (r.status_code, r.get_json()) == (401, TOKEN_INCORRECT)
    assert_confirmed(app, alice, confirmed=False)
    assert_confirmed(app, bob, confirmed=False)


# -- bad tokens ----------------------------------------------------------------------

def _flip(token, index):
    char = token[index]
    return token[:index] + ("A" if char != "A" else "B") + token[index + 1:]


TAMPERINGS = {
    "payload char": lambda t: _flip(t, 2),
    "signature char": lambda t: _flip(t, -10),
    "same-length munge": lambda t: t[:-5] + "0000" + t[-1],
    "truncated by one": lambda t: t[:-1],
    "truncated to half": lambda t: t[: len(t) // 2],
    "appended": lambda t: t + "x",
    "swapped case": lambda t: t.swapcase(),
    "padding": lambda t: t + "==",
    "no signature": lambda t: t.rsplit(".", 1)[0],
}


@pytest.mark.parametrize("tamper", list(TAMPERINGS))
def test_tampered_tokens_are_refused_everywhere(app, client, last_confirmation, tamper, make_user):
    email = make_user()
    _, token, _ = last_confirmation()
    bad = TAMPERINGS[tamper](token)
    assert bad != token
    r = confirm_link(client, bad)
    assert (r.status_code, r.get_json()) == (400, DRF_INVALID)
    r = verification(client, bad)
    assert (r.status_code, r.get_json()) == (422, JSONAPI_INVALID)
    r = validation(client, email, bad)
    assert (r.status_code, r.get_json()) == (401, TOKEN_INCORRECT)
    assert_confirmed(app, email, confirmed=False)


def test_token_for_another_purpose_is_refused(app, client, last_confirmation, make_user):
    email = make_user()
    _, token, _ = last_confirmation()
    payload = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="regapp.confirm-email"
                                     ).loads(token)
    other = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="cookie-session").dumps(payload)
    assert (confirm_link(client, other).status_code, verification(client, other).status_code,
            validation(client, email, other).status_code) == (400, 422, 401)
    assert_confirmed(app, email, confirmed=False)


def test_bare_code_is_refused_where_no_email_is_given(app, client, last_confirmation, make_user):
    email = make_user()
    _, _, code = last_confirmation()
    assert confirm_link(client, code).get_json() == DRF_INVALID
    assert verification(client, code).get_json() == JSONAPI_INVALID
    assert_confirmed(app, email, confirmed=False)


def test_blank_or_missing_token(app, client, make_user):
    email = make_user()
    assert client.get("/api/confirm-email/?token_id=").status_code == 400
    r = client.get("/api/users/verification")
    assert (r.status_code, r.get_json()) == (422, JSONAPI_INVALID)
    r = client.get("/api/users/verification?email_token=")
    assert (r.status_code, r.get_json()) == (422, JSONAPI_INVALID)
    for token in ("", None, "   "):
        r = validation(client, email, token)
        assert r.status_code == 422 and list(r.get_json()["errors"]) == ["token"]
    assert_confirmed(app, email, confirmed=False)


# -- expiry ----------------------------------------------------------------------------

def _mint_at(monkeypatch, offset):
    """Make the signer stamp tokens ``offset`` seconds from now."""
    monkeypatch.setattr(TimestampSigner, "get_timestamp",
                        lambda self: int(time.time()) + offset)


@pytest.mark.parametrize(("offset", "valid"), [
    (-(86400 + 10), False),  # older than CONFIRM_TOKEN_MAX_AGE
    (-(86400 - 10), True),   # just inside it
    (3600, False),           # from the future (a clock moved back)
])
def test_token_lifetime(app, client, last_confirmation, monkeypatch, offset, valid, make_user):
    email = register_with_stamp(make_user, monkeypatch, offset)
    _, token, _ = last_confirmation()
    if valid:
        assert confirm_link(client, token).status_code == 200
        return
    assert confirm_link(client, token).get_json() == DRF_INVALID
    assert verification(client, token).get_json() == JSONAPI_INVALID
    assert validation(client, email, token).get_json() == TOKEN_INCORRECT
    page = client.get("/confirm-email/", query_string={"token_id": token})
    assert page.status_code == 400 and b"expired" in page.data
    assert_confirmed(app, email, confirmed=False)


def register_with_stamp(make_user, monkeypatch, offset):
    _mint_at(monkeypatch, offset)
    email = make_user()
    monkeypatch.undo()
    return email


@pytest.mark.config(CONFIRM_TOKEN_MAX_AGE=0)
def test_expired_code_is_incorrect(app, client, last_confirmation, make_user):
    email = make_user()
    _, _, code = last_confirmation()
    r = validation(client, email, code)
    assert (r.status_code, r.get_json()) == (401, TOKEN_INCORRECT)
    assert_confirmed(app, email, confirmed=False)


# -- HEAD never confirms --------------------------------------------------------------------

def test_head_never_confirms(app, client, last_confirmation, make_user):
    email = make_user()
    _, token, _ = last_confirmation()
    for url in (f"/api/confirm-email/?token_id={token}",
                f"/api/users/verification?email_token={token}",
                f"/confirm-email/?token_id={token}"):
        assert client.head(url).status_code == 200
    assert_confirmed(app, email, confirmed=False)
    assert confirm_link(client, token).status_code == 200


# -- resend -----------------------------------------------------------------------------------

def test_resend_answers_the_same_for_everyone(app, client, deliver, last_confirmation, smtp,
                                              make_user):
    pending = make_user("pending")
    done = make_user("done")
    confirm_link(client, last_confirmation(done)[1])
    deliver()
    smtp.clear()
    answers = []
    for email in ("nobody@x.io", pending, done):
        r = client.post("/api/resend-confirmation/", json={"email": email})
        answers.append((r.status_code, r.headers.get("Content-Type"), r.data))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 202
    assert client.post("/api/resend-confirmation/", json={"email": pending}
                       ).get_json() == RESEND_BODY
    messages = deliver()
    assert [m["To"] for m in messages] == [pending, pending]


def test_resend_mails_the_stored_address(client, deliver, smtp, make_user):
    make_user(email="Alice@x.io")
    deliver()
    smtp.clear()
    assert client.post("/api/resend-confirmation/", data={"email": "ALICE@X.IO"}
                       ).status_code == 202
    assert [m["To"] for m in deliver()] == ["Alice@x.io"]


def test_resend_replaces_the_code(app, client, last_confirmation, make_user):
    email = make_user()
    _, _, old_code = last_confirmation()
    client.post("/api/resend-confirmation/", json={"email": email})
    _, _, new_code = last_confirmation()
    if old_code != new_code:  # one chance in a million that they are equal
        r = validation(client, email, old_code)
        assert (r.status_code, r.get_json()) == (401, TOKEN_INCORRECT)
    assert validation(client, email, new_code).status_code == 201


def test_earlier_link_still_works_after_a_resend(app, client, last_confirmation, make_user):
    email = make_user()
    _, old_token, _ = last_confirmation()
    client.post("/api/resend-confirmation/", json={"email": email})
    _, new_token, _ = last_confirmation()
    assert confirm_link(client, old_token).status_code == 200
    assert confirm_link(client, new_token).get_json() == DRF_ALREADY


@pytest.mark.config(RESEND_COOLDOWN=60)
def test_resend_cooldown_allows_one_email_per_period(app, client, deliver, make_user):
    email = make_user()
    for _ in range(3):
        assert client.post("/api/resend-confirmation/", json={"email": email}
                           ).status_code == 202
    assert len(deliver()) == 1  # the registration's own email started the period
    with app.app_context():  # let the period pass
        db.session.execute(update(User).values(
            confirmation_sent_at=datetime.now(timezone.utc) - timedelta(seconds=61)))
        db.session.commit()
    for _ in range(3):
        assert client.post("/api/resend-confirmation/", json={"email": email}
                           ).status_code == 202
    assert len(deliver()) == 2


@pytest.mark.parametrize(("payload", "body"), [
    ({}, {"email": ["This field is required."]}),
    ({"email": ""}, {"email": ["This field may not be blank."]}),
    ({"email": "nope"}, {"email": ["Enter a valid email address."]}),
    ({"email": ["a@x.io"]}, {"email": ["Enter a valid email address."]}),
    ({"email": None}, {"email": ["This field may not be null."]}),
])
def test_resend_bad_input(client, deliver, payload, body):
    r = client.post("/api/resend-confirmation/", json=payload)
    assert (r.status_code, r.get_json()) == (400, body)
    assert deliver() == []
