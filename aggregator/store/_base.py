"""What every part of the store shares: the engine, the error wrapper, SQL helpers.

Contains no queries of its own.  May import only SQLAlchemy, the engine module,
the schema's column types and :mod:`aggregator.errors`; every other store module
builds on it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Engine, Table, literal
from sqlalchemy.exc import SQLAlchemyError

from aggregator.errors import StorageError
from aggregator.store.tables import UTCDateTime
from aggregator.types import utc_ms

__all__ = ["BATCH", "StoreBase", "at", "chunks", "clock", "dialect_insert"]

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
