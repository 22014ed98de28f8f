"""A psycopg cursor whose ``description`` builds its columns only when they are read.

SQLAlchemy asks for ``cursor.description`` after every statement, but for a
statement it has run before (its compiled form is cached with the result's
metadata) it only checks that the description is not ``None``. psycopg builds a
``Column`` object per result column on every access: for an account's 20 columns
that was 4 % of a worker's time confirming by link, spent on objects nobody read.

Here ``description`` answers with a sequence that knows its length at once and
builds psycopg's own ``Column`` objects from that result on first indexing or
iteration, so code that does read them sees exactly what psycopg gives.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import pq

_RETURNS_TUPLES = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.SINGLE_TUPLE,
                   pq.ExecStatus.TUPLES_CHUNK)


class _Described:
    """What ``psycopg.Column`` reads of a cursor, fixed to one result."""

    __slots__ = ("pgresult", "_encoding", "adapters")

    def __init__(self, result, cursor: psycopg.Cursor):
        self.pgresult = result
        self._encoding = cursor._encoding  # noqa: SLF001 - what Column reads of a cursor
        self.adapters = cursor.adapters


class Columns(Sequence):
    """The description of one result; its ``Column`` objects are made when first read."""

    __slots__ = ("_cursor", "_result", "_columns")

    def __init__(self, cursor: psycopg.Cursor, result):
        self._cursor = cursor
        self._result = result
        self._columns: list[psycopg.Column] | None = None

    def __len__(self) -> int:
        return self._result.nfields

    def __getitem__(self, index):
        return self._built()[index]

    def __iter__(self):
        return iter(self._built())

    def __repr__(self) -> str:
        return repr(self._built())

    def _built(self) -> list[psycopg.Column]:
        if self._columns is None:
            # From this result even if the cursor has run another statement since.
            described = _Described(self._result, self._cursor)
            self._columns = [psycopg.Column(described, i)
                             for i in range(self._result.nfields)]
            self._cursor = None
        return self._columns


class Cursor(psycopg.Cursor):
    """psycopg's cursor, with the description made on demand (see the module's text)."""

    @property
    def description(self) -> Columns | None:
        result = self.pgresult
        # psycopg's own test: columns, or a result that said it returns rows ("SELECT ;").
        if result and (result.nfields or result.status in _RETURNS_TUPLES):
            return Columns(self, result)
        return None
