"""The database edge: persists articles, provenance, raw entries and polling state.

One :class:`Store` facade over per-domain mixins, as reader splits its storage:
``_state`` (polling state and leases), ``_articles`` (writes, provenance, raw
entries), ``_indexing`` (the search index's queue), ``_pages`` (article pages
fetched for full text), ``_reads`` (pages, counts, raw entries back),
``_retention`` (prune and tombstones), all on ``_base`` (engine, error wrapper,
SQL helpers).  A new method goes into the mixin
of its domain; this module keeps only opening, closing and the schema, whose
upgrades run in a child process (``_migrate``) so alembic stays out of the daemon.

Every database failure leaves as :class:`~aggregator.errors.StorageError` naming
what was being done.

Imports from the package: ``dedupe``, ``migrations``, ``errors``, ``types`` (and
SQLAlchemy); never the pipeline that calls it (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from types import TracebackType

from sqlalchemy import URL, Connection, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError

from aggregator.errors import StorageError
from aggregator.migrations import head_revisions, stamp_head, upgrade
from aggregator.store import _meta, _search
from aggregator.store._articles import ArticlesMixin
from aggregator.store._indexing import IndexingMixin
from aggregator.store._pages import PagesMixin
from aggregator.store._reads import ReadsMixin
from aggregator.store._retention import PruneReport, RetentionMixin, SourcePrune
from aggregator.store._state import StateMixin
from aggregator.store.engine import create_engine, is_in_memory, is_postgresql, writing
from aggregator.store.tables import metadata

__all__ = ["PruneReport", "SourcePrune", "Store"]

# Any constant works; it only has to be the same in every process sharing the database.
_MIGRATION_LOCK = 0x61676772  # "aggr"


class Store(StateMixin, PagesMixin, ArticlesMixin, IndexingMixin, ReadsMixin, RetentionMixin):
    """One database, shared safely by several processes and threads.

    Methods are thread-safe (each takes its own pooled connection).  ``now`` is an
    argument wherever time matters so callers and tests control the clock; where
    it is optional, the store reads the clock once per call.
    """

    @classmethod
    def open(cls, database_url: str, *, migrate: bool = True) -> Store:
        """Connect, and bring the schema to the newest revision unless ``migrate=False``."""
        store = cls(create_engine(database_url))
        if migrate:
            try:
                store.migrate()
            except BaseException:
                store.close()
                raise
        return store

    def close(self) -> None:
        self._engine.dispose()

    def release_idle(self) -> None:
        """Close the pooled connections no thread is using, when the process is about
        to wait a long while (the daemon between rounds of polls).

        Each SQLite connection keeps its own page cache and prepared statements: the
        two of a daemon held 4 MB at rest.  The next use opens a connection again, a
        millisecond against the half hour of a poll interval.  A PostgreSQL
        connection keeps its memory on the server, and an in-memory database lives
        only in its one connection: both keep theirs.
        """
        if not is_postgresql(self._engine) and not is_in_memory(self._engine.url):
            self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def migrate(self) -> None:
        """Upgrade to the newest schema; several processes may call this at once.

        A database already at the newest revision is told by one query, without
        alembic; an empty one gets the newest schema directly (:meth:`_create_at_head`),
        without alembic either.  An upgrade that is due runs in a child process
        (:mod:`aggregator.store._migrate`, :meth:`migrate_in_process` there): alembic
        brings mako and pygments along, 11-14 MB that a daemon which imported them
        would keep for its whole life.  Its failure is raised here as the child's
        :class:`StorageError`.  An in-memory database exists only in this process, so
        it is upgraded here; so is any database when this process has alembic loaded
        already (``aggregator db upgrade``, a test run): a child would keep nothing out
        of it and cost a second interpreter's start.
        """
        revisions = self._revisions()
        if revisions == head_revisions():
            return
        if revisions is None and (self._create_at_head() or self._revisions() == head_revisions()):
            return  # a new database, created here or by a process opening it too
        if is_in_memory(self._engine.url) or "alembic" in sys.modules:
            self.migrate_in_process()
        else:
            _migrate_in_child(self._engine.url)

    def _create_at_head(self) -> bool:
        """Create the newest schema in an empty database directly: the tables from
        :mod:`~aggregator.store.tables`, the search index, the revisions stamped.
        Whether it did; a database with any table in it is left to the migrations.

        A new database needs none of the history the migrations replay, and running
        them cost a child process with alembic: about a second of a first start-up.
        ``tests/test_migrations.py`` holds both ways to the same schema.  The check
        for emptiness and the creation are one transaction under the migration lock,
        so of several processes opening a new database one creates it.
        """
        # For an unreachable database this is the first statement: it fails as a
        # migration does, since creating the schema is migrating to the head.
        with self._migrating() as connection:
            if inspect(connection).get_table_names():
                return False
            metadata.create_all(connection)
            _search.create(connection)
            stamp_head(connection)
            return True

    def migrate_in_process(self) -> None:
        """Upgrade to the newest schema in this process, importing alembic.

        The whole upgrade is one transaction holding a lock (an advisory lock on
        PostgreSQL, SQLite's write lock), so the second process waits and then finds
        nothing to do.  The upgrade that creates the search index also fills it.
        """
        with self._migrating() as connection:
            indexed = inspect(connection).has_table(_search.TABLE)
            upgrade(connection)
            if not indexed:
                _search.rebuild(connection)

    @contextlib.contextmanager
    def _migrating(self) -> Iterator[Connection]:
        """A write transaction holding the migration lock (an advisory lock on
        PostgreSQL, SQLite's write lock): of several processes changing the schema at
        once, the others wait, then find it done."""
        with self._errors("migrate the database"), writing(self._engine) as connection:
            if is_postgresql(self._engine):
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
            yield connection

    def _revisions(self) -> frozenset[str] | None:
        """The revisions ``alembic_version`` holds; ``None`` when it cannot be read
        (no such table yet): then alembic decides."""
        try:
            with self._engine.connect() as connection:
                rows = connection.execute(text("SELECT version_num FROM alembic_version"))
                return frozenset(rows.scalars())
        except SQLAlchemyError:
            return None

    def current_revision(self) -> str | None:
        """The schema revision the database is at; ``None`` before any migration."""
        from alembic.runtime.migration import MigrationContext

        with self._errors("read the schema revision"), self._engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def ping(self) -> None:
        """Raise :class:`StorageError` unless the database answers (``/readyz``)."""
        with self._errors("reach the database"), self._engine.connect() as connection:
            connection.execute(select(1))

    def adopt_id_authority(self, proposed: str | None) -> str | None:
        """The item-id authority this database keeps (``proposed`` if none yet; ``None``
        proposes nothing and only reads)."""
        with self._errors("read the id authority"), writing(self._engine) as conn:
            return _meta.adopt(conn, _meta.ID_AUTHORITY, proposed)


def _migrate_in_child(url: URL) -> None:
    """Run :meth:`Store.migrate_in_process` on ``url`` in a child process and wait for it.

    The URL goes on the child's stdin (a password stays out of the process list);
    whatever the child writes to stderr is passed on.  Its error comes back pickled
    on its stdout and is raised here with the same message and one-line cause, and
    the child's traceback as ``__cause__``.  A child that dies without one (killed,
    an interpreter failure) is a :class:`StorageError` whose cause is the last line
    it wrote.
    """
    # This process's module path, in its order (as multiprocessing's spawn passes it),
    # so the child runs this very code (a checkout, a test run) whatever else is
    # installed; -P keeps the working directory, where a relative SQLite path is
    # resolved, off it unless it was on this process's path.
    path = os.pathsep.join(entry for entry in sys.path if entry)
    done = subprocess.run(
        [sys.executable, "-P", "-m", "aggregator.store._migrate"],
        input=url.render_as_string(hide_password=False).encode(),
        capture_output=True,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    written = done.stderr.decode(errors="replace")
    sys.stderr.write(written)
    if done.returncode == 0:
        return
    if done.stdout:
        error, remote_traceback = pickle.loads(done.stdout)
        raise error from ChildProcessError(remote_traceback)
    lines = written.strip().splitlines()
    last = lines[-1] if lines else f"the migration process exited with status {done.returncode}"
    raise StorageError(
        "could not migrate the database", database=url.render_as_string(hide_password=True)
    ) from ChildProcessError(last)
