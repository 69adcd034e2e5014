"""Engine factory: one place that knows how SQLite and PostgreSQL differ at connect time.

SQLite is the default (a path or ``sqlite:///file``); PostgreSQL is reached through
psycopg 3 (``postgresql+psycopg://``; bare ``postgresql://`` and ``postgres://`` are
mapped to it, since SQLAlchemy would otherwise look for psycopg2).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from aggregator.errors import ConfigError, StorageError

__all__ = [
    "BUSY_TIMEOUT_MS",
    "create_engine",
    "is_in_memory",
    "is_postgresql",
    "parse_url",
    "writing",
]

BUSY_TIMEOUT_MS = 30_000
#: Prepared statements each SQLite connection keeps (the sqlite3 module's default is
#: 128).  A poll's multi-row INSERTs and IN lists come in many sizes, each a statement
#: of its own of up to ~100 KB of SQLite memory, so 128 of them per connection were 20
#: MB of the daemon's peak; the statements that repeat (claims, leases, a poll's end)
#: stay cached at 32, and a poll's CPU did not change measurably.
CACHED_STATEMENTS = 32
_WRITE = "aggregator_write"
_BACKENDS = frozenset({"sqlite", "postgresql"})


def parse_url(database_url: str) -> URL:
    """A SQLAlchemy URL for ``database_url``, which may also be a plain file path.

    Raises:
        ConfigError: not a URL, or a database other than SQLite and PostgreSQL (a
            ``mysql://`` URL used to end in a traceback about a missing driver).
    """
    if "://" not in database_url:
        return URL.create("sqlite", database=str(Path(database_url).expanduser()))
    try:
        url = make_url(database_url)
    except ArgumentError as exc:
        raise ConfigError("not a database URL", key="database_url") from exc
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in _BACKENDS:
        raise ConfigError(
            f"unsupported database {url.get_backend_name()!r}: use sqlite:///PATH or "
            "postgresql+psycopg://...",
            key="database_url",
        )
    return url


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def is_in_memory(url: URL) -> bool:
    """An in-memory SQLite database: it exists only inside the process that opened it."""
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def create_engine(database_url: str) -> Engine:
    """An engine with our connection policy.

    ``pool_pre_ping`` makes a restarted PostgreSQL server cost one reconnect instead
    of an exception in the middle of a poll.  SQLite has no server to lose, so it is
    not pinged (that is a ``SELECT 1`` before every checkout).  It gets WAL (readers
    never block the writer), foreign keys (cascading deletes rely on them), a busy
    timeout (a second process waits for the write lock instead of failing),
    ``synchronous=NORMAL`` (durable at checkpoints, safe with WAL) and a smaller
    statement cache (:data:`CACHED_STATEMENTS`).
    """
    url = parse_url(database_url)
    if url.get_backend_name() != "sqlite":
        return sa_create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    in_memory = is_in_memory(url)
    if not in_memory:
        assert url.database is not None
        folder = Path(url.database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the database folder {str(folder)!r}") from exc
    engine = sa_create_engine(
        url,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "cached_statements": CACHED_STATEMENTS},
        # One in-memory database exists per connection, so share a single one.
        **({"poolclass": StaticPool} if in_memory else {}),
    )
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
    # Take transactions away from the sqlite3 module, which only BEGINs before DML and
    # so runs our reads outside the transaction; _sqlite_begin issues them instead.
    dbapi_connection.isolation_level = None
    for pragma in (f"busy_timeout={BUSY_TIMEOUT_MS}", "foreign_keys=ON", "synchronous=NORMAL"):
        dbapi_connection.execute(f"PRAGMA {pragma}")
    _enable_wal(dbapi_connection)


def _enable_wal(dbapi_connection: sqlite3.Connection) -> None:
    """Switch a database to WAL once; retry when another process is doing the same.

    Changing the journal mode needs an exclusive lock, and SQLite reports "database
    is locked" at once (without its busy handler) when several processes open a new
    database together, so the busy timeout alone does not cover it.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            (mode,) = dbapi_connection.execute("PRAGMA journal_mode=WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        if str(mode).lower() in ("wal", "memory"):
            return
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError(f"could not switch to WAL (journal_mode={mode})")
        time.sleep(0.05)


def _sqlite_begin(connection: Connection) -> None:
    # A writer takes the write lock up front: a deferred transaction that reads and then
    # writes fails with SQLITE_BUSY (no waiting) if another process wrote in between.
    write = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that will write: committed on success, else rolled back."""
    with engine.connect().execution_options(**{_WRITE: True}) as connection, connection.begin():
        yield connection
