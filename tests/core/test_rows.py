"""rows.insert / rows.add write what a flush of the same object would have written, on
the session's own transaction, and reading the inserted object back costs no query."""

from __future__ import annotations

from datetime import timedelta
from datetime import timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from regapp.core import rows
from regapp.extensions import db
from regapp.models import EmailConfirmation
from regapp.models import OutboxMessage
from regapp.models import RefreshFamily
from regapp.models import User
from regapp.models import utcnow


def _user(n: int, **extra) -> dict:
    fields = {"username": f"u{n}", "username_key": f"u{n}", "email": f"u{n}@x.io",
              "email_key": f"u{n}@x.io", "password_hash": "h"}
    return {**fields, **extra}


def _row(table: str, id_: int) -> dict:
    with db.engine.connect() as conn:
        return dict(conn.execute(sa.text(f"SELECT * FROM {table} WHERE id = :id"),
                                 {"id": id_}).mappings().one())


def test_insert_writes_the_same_row_as_a_flush(app):
    with app.app_context():
        flushed = User(**_user(1))
        db.session.add(flushed)
        db.session.commit()
        inserted = rows.insert(User, **_user(2))
        rows.commit()
        a, b = _row("users", flushed.id), _row("users", inserted.id)
    differ = {k for k in a if k not in {"id", "username", "username_key", "email", "email_key",
                                        "created_at"} and a[k] != b[k]}
    assert differ == set()
    assert b["account_type"] == "customer" and b["code_failures"] == 0
    assert b["created_at"] is not None and b["credential_version"] == 0


def test_inserted_object_reads_back_without_a_query(app, statements):
    with app.app_context():
        user = rows.insert(User, **_user(1))
        rows.commit()
        statements.clear()
        seen = (user.id, user.account_type, user.is_email_confirmed, user.created_at,
                user.credential_version, user.api_token_hash)
        assert statements == []
        assert seen[0] > 0 and seen[1:3] == ("customer", False)
        assert seen[3].tzinfo is timezone.utc and seen[4] == 0 and seen[5] is None
        assert db.session.get(User, user.id) is user and statements == []


def test_explicit_none_for_a_column_with_a_default_gets_the_default(app):
    """As in a flush: None given for account_type (NOT NULL, default "customer") is
    not an attempt to write NULL."""
    with app.app_context():
        user = rows.insert(User, **_user(1, account_type=None, code_failures=None))
        rows.commit()
        assert (user.account_type, user.code_failures) == ("customer", 0)
        row = _row("users", user.id)
    assert (row["account_type"], row["code_failures"]) == ("customer", 0)


def test_add_applies_defaults_and_refuses_unknown_columns(app):
    with app.app_context():
        rows.add(OutboxMessage, to_addr="u1@x.io", subject="s", body_text="b",
                 message_id="<m1@x>")
        with pytest.raises(TypeError, match="no column colour"):
            rows.add(OutboxMessage, to_addr="u2@x.io", colour="red")
        rows.commit()
        message = db.session.execute(sa.select(OutboxMessage)).scalar_one()
        assert (message.status, message.attempts, message.kind) == ("pending", 0, "confirm")
        assert message.next_attempt_at is not None and message.created_at is not None


def test_an_inserted_object_is_tracked_and_unknown_columns_are_refused(app):
    with app.app_context():
        with pytest.raises(TypeError, match="no column colour"):
            rows.insert(User, **_user(1, colour="red"))
        user = rows.insert(User, **_user(2))
        user.first_name = "Ann"  # a change after the INSERT is flushed at the commit
        rows.commit()
        assert _row("users", user.id)["first_name"] == "Ann"


def test_a_constraint_refusal_is_rolled_back_with_the_rest(app):
    with app.app_context():
        rows.insert(User, **_user(1))
        rows.commit()
        rows.insert(User, **_user(2))  # in the same transaction as the refused one
        with pytest.raises(IntegrityError):
            rows.insert(User, **_user(3, email_key="u1@x.io"))
        db.session.rollback()
        keys = db.session.execute(sa.select(User.email_key)).scalars().all()
    assert keys == ["u1@x.io"]


class _Base(DeclarativeBase):
    pass


class _ServerDefault(_Base):
    """A column with only a server-side default (none of the app's models has one yet)."""

    __tablename__ = "rows_test_server_default"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(20))
    level: Mapped[int] = mapped_column(sa.Integer, server_default="7")


def test_a_server_default_is_left_to_the_server_and_read_back_when_used(app):
    with app.app_context():
        _Base.metadata.create_all(db.engine)
        try:
            obj = rows.insert(_ServerDefault, name="a")
            given = rows.insert(_ServerDefault, name="b", level=3)
            rows.commit()
            assert (obj.level, given.level) == (7, 3)
            assert _row("rows_test_server_default", obj.id)["level"] == 7
        finally:
            db.session.rollback()
            _Base.metadata.drop_all(db.engine)


def _all_columns(user_id: int):
    return db.session.connection().execute(
        sa.select(*User.__table__.c).where(User.__table__.c.id == user_id)).one()


def test_loaded_is_the_sessions_copy_of_a_row_with_no_query(app, statements):
    with app.app_context():
        user_id = rows.insert(User, **_user(1, first_name="Ann")).id
        rows.commit()
        db.session.remove()
        row = _all_columns(user_id)
        statements.clear()
        user = rows.loaded(User, row)
        seen = (user.id, user.email, user.first_name, user.created_at, user.credential_version)
        assert db.session.get(User, user_id) is user
        assert statements == []
        assert seen[:3] == (user_id, "u1@x.io", "Ann") and seen[4] == 0
        assert seen[3].utcoffset() == timedelta(0)
        # As loaded, not as changed: a commit writes nothing; a change writes that column.
        assert not db.session.dirty
        user.first_name = "Anna"
        rows.commit()
        updates = [s for s in statements if s.lstrip().startswith("UPDATE")]
        assert len(updates) == 1 and "first_name" in updates[0] and "email" not in updates[0]
        assert not [s for s in statements if s.lstrip().startswith("INSERT")]
        assert _row("users", user_id)["first_name"] == "Anna"


def test_loaded_refreshes_a_copy_the_session_holds(app):
    with app.app_context():
        user_id = rows.insert(User, **_user(1)).id
        rows.commit()
        held = db.session.get(User, user_id)
        returned = db.session.connection().execute(
            sa.update(User.__table__).where(User.__table__.c.id == user_id)
            .values(first_name="Bo", code_failures=3).returning(*User.__table__.c)).one()
        assert rows.loaded(User, returned) is held
        assert (held.first_name, held.code_failures) == ("Bo", 3)
        assert not db.session.dirty
        rows.commit()
        assert _row("users", user_id)["first_name"] == "Bo"


def test_loaded_is_forgotten_by_a_rollback(app):
    """A refused confirmation undoes its UPDATE: the copy made from what it returned
    is read again from the row, not kept."""
    with app.app_context():
        user_id = rows.insert(User, **_user(1)).id
        rows.commit()
        db.session.remove()
        returned = db.session.connection().execute(
            sa.update(User.__table__).where(User.__table__.c.id == user_id)
            .values(first_name="Changed").returning(*User.__table__.c)).one()
        user = rows.loaded(User, returned)
        db.session.rollback()
        assert db.session.get(User, user_id).first_name is None
        assert user.first_name is None


def _message(n: int) -> dict:
    return {"to_addr": f"u{n}@x.io", "subject": "s", "body_text": "b",
            "message_id": f"<m{n}@x>"}


def test_rows_added_together_are_written_when_the_block_ends(app, statements):
    with app.app_context():
        user = rows.insert(User, **_user(1))
        statements.clear()
        with rows.together():
            rows.add(EmailConfirmation, user_id=user.id, code_hash="c", expires_at=utcnow())
            rows.add(OutboxMessage, **_message(1))
            rows.add(RefreshFamily, id="f" * 32, user_id=user.id, current_jti="j" * 32)
            assert statements == []  # nothing written yet
        written = len(statements)
        rows.commit()
        code = db.session.execute(sa.select(EmailConfirmation)).scalar_one()
        message = db.session.execute(sa.select(OutboxMessage)).scalar_one()
        family = db.session.execute(sa.select(RefreshFamily)).scalar_one()
        assert (code.user_id, code.code_hash, code.attempts, code.used_at) == (user.id, "c", 0,
                                                                               None)
        assert (message.to_addr, message.status, message.kind) == ("u1@x.io", "pending",
                                                                   "confirm")
        assert (family.user_id, family.current_jti, family.revoked_at) == (user.id, "j" * 32,
                                                                           None)
        # One round trip on PostgreSQL (a WITH statement), one INSERT each elsewhere.
        assert written == (1 if db.engine.dialect.name == "postgresql" else 3)


def test_an_error_in_the_block_writes_none_of_its_rows(app, statements):
    with app.app_context():
        with pytest.raises(RuntimeError), rows.together():
            rows.add(OutboxMessage, **_message(1))
            rows.add(OutboxMessage, **_message(2))
            raise RuntimeError("refused")
        assert not any(s.lstrip().startswith(("INSERT", "WITH")) for s in statements)
        rows.commit()
        assert db.session.execute(sa.select(OutboxMessage)).all() == []


def test_a_constraint_refusal_in_the_written_block_is_an_integrity_error(app):
    with app.app_context():
        rows.add(OutboxMessage, **_message(1))
        rows.commit()
        with pytest.raises(IntegrityError), rows.together():
            rows.add(OutboxMessage, **_message(2))
            rows.add(OutboxMessage, **{**_message(3), "message_id": "<m1@x>"})
        db.session.rollback()
        ids = db.session.execute(sa.select(OutboxMessage.message_id)).scalars().all()
    assert ids == ["<m1@x>"]


def test_a_jwt_sign_up_writes_its_rows_in_two_statements_on_postgresql(app, client, statements):
    """The user's INSERT (its id goes into the code and the mail), then the code, the
    outbox message and the refresh family together: one round trip each."""
    r = client.post("/api/sign-up/", json={"username": "ann", "email": "ann@x.io",
                                            "password": "Str0ng-passphrase"})
    assert r.status_code == 201
    writes = [s for s in statements if s.lstrip().startswith(("INSERT", "WITH", "UPDATE"))]
    expected = 2 if db.engine.dialect.name == "postgresql" else 4
    assert len(writes) == expected, writes
    with app.app_context():
        counts = [db.session.scalar(sa.select(sa.func.count()).select_from(model))
                  for model in (User, EmailConfirmation, OutboxMessage, RefreshFamily)]
    assert counts == [1, 1, 1, 1]
