"""What every part of the store shares: the engine, the error wrapper, SQL helpers.

Contains no queries of its own.  May import only SQLAlchemy, the engine module,
the schema's column types and :mod:`aggregator.errors`; every other store module
builds on it.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    String,
    Table,
    any_,
    bindparam,
    func,
    literal,
    select,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from aggregator.errors import StorageError
from aggregator.store.tables import UTCDateTime
from aggregator.types import utc_ms

__all__ = [
    "BATCH",
    "BulkInsert",
    "StoreBase",
    "among",
    "at",
    "chunks",
    "clock",
    "dialect_insert",
    "listed",
]

# Rows per statement or transaction where a list of ids or articles is split up.
BATCH = 500
_T = TypeVar("_T")


class StoreBase:
    """The engine and the rule that every database failure leaves as a
    :class:`StorageError` naming what was being done."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def engine(self) -> Engine:
        return self._engine

    @contextmanager
    def _errors(self, action: str, **context: object) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            if not isinstance(exc, SQLAlchemyError) and not _is_alembic_error(exc):
                raise
            url = self._engine.url.render_as_string(hide_password=True)
            raise StorageError(f"could not {action}", database=url, **context) from exc


def _is_alembic_error(exc: Exception) -> bool:
    """Whether alembic raised ``exc`` (a database newer than this code, a lost revision);
    alembic is imported only for a migration, and no error of it exists before."""
    module = sys.modules.get("alembic.util")
    return module is not None and isinstance(exc, module.CommandError)


def dialect_insert(conn: Connection | str, table: Table) -> Any:
    """The dialect's INSERT (of ``conn``'s dialect, or the one named), which has
    ``on_conflict_*`` (typed ``Any``: the two dialect classes share the methods but no
    base class declaring them).

    Each dialect is imported on first use: PostgreSQL's was a tenth of the store's
    import time on every SQLite deployment.
    """
    name = conn if isinstance(conn, str) else conn.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


def at(moment: datetime) -> ColumnElement[datetime]:
    """A timestamp literal typed for comparison with our UTC columns."""
    return literal(moment, UTCDateTime())


def clock(now: datetime | None) -> datetime:
    """``now``, or the clock read once, at the precision the databases keep."""
    return utc_ms(now or datetime.now(UTC))


def chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def among(column: ColumnElement[Any], dialect: str, name: str) -> ColumnElement[bool]:
    """``column`` is one of the strings bound to ``name`` (as :func:`listed` gives them).

    One parameter however many strings: the statement compiles once and is cached, where
    an ``IN`` list is expanded into a parameter per string on every execution (and
    SQLite allows 32,766 of them in all).  Both databases still look each string up in
    the column's index: SQLite through ``json_each``, PostgreSQL through ``= ANY``.
    """
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(String)))
    strings = func.json_each(bindparam(name, type_=String)).table_valued("value")
    return column.in_(select(strings.c.value))


def listed(conn: Connection, strings: Sequence[str]) -> Any:
    """``strings`` as :func:`among`'s parameter on ``conn``'s database."""
    return list(strings) if conn.dialect.name == "postgresql" else json.dumps(list(strings))


class BulkInsert:
    """An ``INSERT`` of many rows as plain SQL through the driver.

    SQLAlchemy's executemany runs every value of every row through its parameter
    handling in Python, which on a poll's inserts cost more than the database's own
    work.  Here the SQL is written once per database, and only columns whose type
    converts in Python (times, flags) run a converter: the type's own bind
    processor, so the stored values are exactly those SQLAlchemy would write.
    ``suffix`` is SQL both databases read alike (``ON CONFLICT``, ``RETURNING``).
    Without ``RETURNING`` the rows go through the driver's executemany, which
    returns nothing; with it, to PostgreSQL as multi-row ``VALUES`` (:data:`BATCH`
    rows a statement: one round trip each), to SQLite one row per execution of one
    statement (see :func:`_each_row`).
    """

    def __init__(self, table: Table, columns: Sequence[str], suffix: str = "") -> None:
        self._table = table
        self._columns = tuple(columns)
        self._suffix = suffix
        self._returns = "RETURNING" in suffix.upper()
        # Per database: the statement up to VALUES, one row's markers, the converters.
        self._plans: dict[str, tuple[str, str, list[tuple[int, Callable[[Any], Any]]]]] = {}

    def __call__(
        self, conn: Connection, rows: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """Insert ``rows`` (column name to value); the rows ``RETURNING`` gave, if any."""
        if not rows:
            return []
        plan = self._plans.get(conn.dialect.name)
        if plan is None:
            plan = self._plans[conn.dialect.name] = self._plan(conn.dialect)
        head, markers, converters = plan
        names = self._columns

        def values(row: Mapping[str, Any]) -> list[Any]:
            found = [row[name] for name in names]
            for index, convert in converters:
                found[index] = convert(found[index])
            return found

        if not self._returns:
            statement = f"{head}{markers} {self._suffix}"
            conn.exec_driver_sql(statement, [tuple(values(row)) for row in rows])
            return []
        if conn.dialect.name == "sqlite":
            return _each_row(conn, f"{head}{markers} {self._suffix}", map(values, rows))
        returned: list[tuple[Any, ...]] = []
        for chunk in chunks(rows, BATCH):
            flat: list[Any] = []
            for row in chunk:
                flat += values(row)
            statement = f"{head}{', '.join([markers] * len(chunk))} {self._suffix}"
            returned += map(tuple, conn.exec_driver_sql(statement, tuple(flat)))
        return returned

    def _plan(self, dialect: Dialect) -> tuple[str, str, list[tuple[int, Callable[[Any], Any]]]]:
        quote = dialect.identifier_preparer.quote
        marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}[dialect.paramstyle]
        columns = [self._table.c[name] for name in self._columns]
        converters: list[tuple[int, Callable[[Any], Any]]] = []
        for index, column in enumerate(columns):
            convert = column.type.dialect_impl(dialect).bind_processor(dialect)
            if convert is not None:
                converters.append((index, convert))
        names = ", ".join(quote(column.name) for column in columns)
        head = f"INSERT INTO {quote(self._table.name)} ({names}) VALUES "
        return head, "(" + ", ".join([marker] * len(columns)) + ")", converters


def _each_row(
    conn: Connection, statement: str, rows: Iterable[Sequence[Any]]
) -> list[tuple[Any, ...]]:
    """Run a one-row ``INSERT ... RETURNING`` for each of ``rows`` on SQLite, through
    the driver's cursor; the rows it returned.

    A prepared statement keeps its last bound values until it is bound again, and the
    sqlite3 module keeps its statements prepared (:data:`.engine.CACHED_STATEMENTS` a
    connection).  As multi-row ``VALUES``, every row count was a statement of its own
    holding a whole batch of article bodies: 30-40 MB of SQLite memory in an import
    or a long run of polls.  One statement holds one row, SQLite has no round trip
    to save, and the driver's cursor costs no more per row than the multi-row form
    (SQLAlchemy's ``exec_driver_sql`` would double the time per row); failures are
    raised as SQLAlchemy raises them.
    """
    raw = conn.connection.dbapi_connection
    assert raw is not None  # the connection is in a transaction
    cursor = raw.cursor()
    returned: list[tuple[Any, ...]] = []
    row: Sequence[Any] = ()
    try:
        for row in rows:
            returned += map(tuple, cursor.execute(statement, row).fetchall())
    except sqlite3.Error as exc:
        raise DBAPIError.instance(statement, row, exc, sqlite3.Error, dialect=conn.dialect) from exc
    finally:
        cursor.close()
    return returned
