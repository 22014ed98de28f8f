"""New rows written with one INSERT each, outside the ORM's unit of work.

A sign-up writes four new rows (user, code, outbox message, refresh family)
and nothing else: the unit of work's bookkeeping for them (sorting, history,
post-fetch, a second flush for the user's id) cost more CPU than the statements
themselves. ``insert`` runs a compiled-once Core INSERT on the session's own
connection and transaction, so a rollback still undoes it and an
``IntegrityError`` still comes from the constraint, then makes the instance
and hands it to the session as persistent, with every column as written:
reading it afterwards costs no query.
"""

from __future__ import annotations

import contextlib
import functools

from sqlalchemy import bindparam
from sqlalchemy import insert as sql_insert
from sqlalchemy import inspect
from sqlalchemy.orm import configure_mappers
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from ..extensions import db

_SERVER = object()  # the column's default is the server's


def insert(model, **values):
    """INSERT one row of ``model`` from ``values`` (attribute names) now and return
    its instance, persistent in the session.

    Columns not given get their Python-side default (or NULL), as a flush would give
    them; one with only a server-side default is left to the server (and read back
    if it is ever used). An autoincrement primary key comes back with ``RETURNING``.
    The instance is made as the ORM's loader makes one, the values straight into its
    dict: through the constructor, attribute events and all, an insert took 40 % more
    instructions.
    """
    columns, key, statement = _plan(model)
    _known(model, values)
    row, by_server = _values(columns, key, values)
    result = db.session.connection().execute(statement, row)
    skipped = set(by_server)
    state = {attr: row[column] for attr, column, _ in columns if attr not in skipped}
    if key is not None:
        state[key[0]] = row[key[1]] if key[1] in row else result.scalar_one()
    obj = _adopt(inspect(model), state)
    if by_server:
        db.session.expire(obj, by_server)  # read back from the row when first used
    return obj


def _known(model, values: dict) -> None:
    if not _attribute_names(model).issuperset(values):
        unknown = set(values) - _attribute_names(model)
        raise TypeError(f"{model.__name__} has no column {', '.join(sorted(unknown))}")


@functools.cache
def _attribute_names(model) -> frozenset:
    columns, key, _ = _plan(model)
    return frozenset([attr for attr, _, _ in columns] + ([key[0]] if key else []))


def add(model, **values) -> None:
    """INSERT one row of ``model`` from ``values`` (attribute names) now, with the
    same defaults as ``insert``, when nothing reads the row back in this session:
    no model instance is made at all."""
    columns, key, statement = _plan(model)
    _known(model, values)
    row = _values(columns, key, values)[0]
    pending = db.session().info.get(_TOGETHER)
    if pending is not None:
        pending.append((model, row))
    else:
        db.session.connection().execute(statement, row)


_TOGETHER = "regapp.rows.together"


@contextlib.contextmanager
def together():
    """``add`` calls in the block are written together when it ends without an error:
    on PostgreSQL as one statement (the first INSERTs as data-modifying WITH
    queries), so a sign-up's code, outbox and refresh-family rows cost one round
    trip, not three; elsewhere one INSERT each. Nothing in the block may read those
    rows back; an error in the block writes none of them. Nested blocks write with
    the outermost."""
    info = db.session().info
    if _TOGETHER in info:
        yield
        return
    pending = info[_TOGETHER] = []
    try:
        yield
    finally:
        info.pop(_TOGETHER, None)
    if len(pending) > 1 and db.engine.dialect.name == "postgresql":
        shape = tuple((model, tuple(row)) for model, row in pending)
        params = {f"r{i}_{column}": value
                  for i, (_, row) in enumerate(pending) for column, value in row.items()}
        db.session.connection().execute(_together_statement(shape), params)
        return
    for model, row in pending:
        db.session.connection().execute(_plan(model)[2], row)


@functools.lru_cache(maxsize=64)
def _together_statement(shape):
    """One INSERT per ``(model, columns)`` of ``shape``, the last one the statement and
    the others its WITH queries; the parameters are ``r<position>_<column>``."""
    inserts = []
    for i, (model, columns) in enumerate(shape):
        table = inspect(model).local_table
        inserts.append(sql_insert(table).values(
            {name: bindparam(f"r{i}_{name}", type_=table.c[name].type) for name in columns}))
    *first, last = inserts
    return last.add_cte(*(statement.cte(f"r{i}") for i, statement in enumerate(first)))


def _values(columns, key, given: dict) -> tuple[dict, list]:
    """The INSERT's values (by column) from ``given`` (by attribute), defaults for the
    rest, and the attributes left to the server's default. As in a flush, a None
    given for a column with a default counts as not given."""
    row, by_server = {}, []
    for attr, column, default in columns:
        value = given.get(attr)
        if value is None:
            if default is _SERVER:
                by_server.append(attr)
                continue
            if default is not None:
                value = default()
        row[column] = value
    if key is not None and given.get(key[0]) is not None:
        row[key[1]] = given[key[0]]
    return row, by_server


@functools.cache
def _plan(model):
    """``([(attribute, column name, default)], (key attribute, key column) or None,
    INSERT statement)`` for ``model``, worked out once."""
    # Instances are made without a constructor, which would configure the mappers
    # on first use: configure them now.
    configure_mappers()
    mapper = inspect(model)
    table = mapper.local_table
    key = None
    columns = []
    for column in table.columns:
        attr = mapper.get_property_by_column(column).key
        if column is table.autoincrement_column:
            key = (attr, column.key)
            continue
        columns.append((attr, column.key, _default(column)))
    statement = sql_insert(table)
    if key is not None:
        statement = statement.returning(table.c[key[1]])
    return columns, key, statement


def _default(column):
    """A zero-argument callable giving ``column``'s Python-side default, or None."""
    default = column.default
    if default is None:
        return _SERVER if column.server_default is not None else None
    if default.is_scalar:
        return lambda: default.arg
    if default.is_callable:
        return lambda: default.arg(None)
    return None


def loaded(model, row):
    """The instance of ``model`` for ``row``, a row a Core statement read or returned
    with every column of the model's table (by column name), persistent in the
    session as if the ORM had loaded it: no ORM query machinery, and reading its
    attributes afterwards costs no query. An instance the session already holds
    takes the row's values (as committed, not as changes)."""
    mapper, attributes, key = _attributes(model)
    mapping = row._mapping
    values = {attr: mapping[column] for attr, column in attributes}
    session = db.session()
    held = session.identity_map.get(
        mapper.identity_key_from_primary_key([values[attr] for attr in key]))
    if held is not None:
        known = held.__dict__
        for attr, value in values.items():
            if attr not in known or known[attr] != value:
                set_committed_value(held, attr, value)
        return held
    return _adopt(mapper, values)


def _adopt(mapper, values: dict):
    """A new instance of ``mapper``'s class holding ``values`` (attribute names), made
    as the ORM's loader makes one and added to the session as persistent: the values
    go straight into its dict (the constructor's attribute events, history and all,
    cost more than the statement that wrote or read them)."""
    obj = mapper.class_manager.new_instance()
    obj.__dict__.update(values)
    make_transient_to_detached(obj)
    db.session.add(obj)
    return obj


@functools.cache
def _attributes(model):
    """``(mapper, ((attribute, column name) for every column), primary-key attributes)``
    of ``model``, worked out once."""
    configure_mappers()  # as in _plan
    mapper = inspect(model)
    return (mapper,
            tuple((mapper.get_property_by_column(column).key, column.key)
                  for column in mapper.local_table.columns),
            tuple(mapper.get_property_by_column(column).key for column in mapper.primary_key))


def commit() -> None:
    """Commit without expiring what the session holds: the answer, the log event and
    the signals read the attributes this transaction just wrote (or read back with
    RETURNING), and reloading them would cost a query, and on a server a second
    connection checkout, per request."""
    session = db.session()
    expire = session.expire_on_commit
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = expire
