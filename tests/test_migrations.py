"""The migrations build exactly the schema the table models describe, on both databases."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from dbhelpers import postgres_database
from sqlalchemy import inspect, text

import aggregator.store as store_module
from aggregator.errors import StorageError
from aggregator.migrations import MIGRATIONS, alembic_config, head_revisions
from aggregator.store import Store, _search
from aggregator.store.tables import metadata


def _head(store: Store) -> str | None:
    """The newest revision the migration scripts define."""
    with store.engine.connect() as conn:
        return ScriptDirectory.from_config(alembic_config(conn)).get_current_head()


def _migrated(url: str) -> Store:
    """A store on ``url`` brought to the newest schema by the migrations, one by one."""
    store = Store.open(url, migrate=False)
    store.migrate_in_process()
    return store


def test_the_migrated_schema_equals_the_models(database_url: str) -> None:
    with _migrated(database_url) as store, store.engine.connect() as conn:
        # The search index is the database's own structure (FTS5, GIN), not a model.
        def modelled(name: str | None, kind: str, parent: object) -> bool:
            return not (kind == "table" and name and name.startswith(_search.TABLE))

        context = MigrationContext.configure(conn, opts={"include_name": modelled})
        differences = compare_metadata(context, metadata)
        tables = set(inspect(conn).get_table_names())
    assert differences == []
    assert _search.TABLE in tables
    assert {name for name in tables if not name.startswith(_search.TABLE)} == {
        *metadata.tables,
        "alembic_version",
    }


def _schema(store: Store) -> dict[str, object]:
    """All the database tells about its tables, in order: columns (type, nullability,
    default), keys, indexes and constraints with their names and options, the search
    index's own DDL on SQLite, and the revisions."""
    with store.engine.connect() as conn:
        found = inspect(conn)
        tables: dict[str, object] = {}
        for name in sorted(found.get_table_names()):
            tables[name] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], c["default"], c.get("autoincrement"))
                    for c in found.get_columns(name)
                ],
                "primary key": found.get_pk_constraint(name),
                "foreign keys": sorted(map(repr, found.get_foreign_keys(name))),
                "indexes": sorted(map(repr, found.get_indexes(name))),
                "unique": sorted(map(repr, found.get_unique_constraints(name))),
                "checks": sorted(map(repr, found.get_check_constraints(name))),
            }
        virtual: list[tuple[str, str]] = []
        if conn.dialect.name == "sqlite":
            virtual = [
                (name, sql)
                for name, sql in conn.exec_driver_sql(
                    "SELECT name, sql FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL%' "
                    "ORDER BY name"
                )
            ]
        revisions = sorted(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    return {"tables": tables, "virtual": virtual, "revisions": revisions}


@pytest.fixture
def second_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """Another empty database of the kind ``database_url`` is."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'second.db'}"
    else:
        with postgres_database() as url:
            yield url


def test_a_new_database_is_created_at_the_newest_schema_the_migrations_give(
    database_url: str, second_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty database gets the newest schema directly (no migration, no child
    process: a second of a first start-up), and it is the migrated schema exactly."""
    with _migrated(second_database_url) as migrated:
        expected = _schema(migrated)

    def no_migration(*args: object) -> None:
        raise AssertionError("an empty database was migrated")

    monkeypatch.setattr(Store, "migrate_in_process", no_migration)
    monkeypatch.setattr(store_module, "_migrate_in_child", no_migration)
    with Store.open(database_url) as created:
        assert _schema(created) == expected
    assert expected["revisions"] == sorted(head_revisions())
    assert _search.TABLE in expected["tables"]  # type: ignore[operator]


def test_downgrade_to_nothing_and_back(database_url: str) -> None:
    with Store.open(database_url) as store:
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        with store.engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        assert store.current_revision() is None
        store.migrate()
        assert store.current_revision() == _head(store) is not None


def _open(url: str, barrier: object) -> str | None:
    barrier.wait()  # type: ignore[attr-defined]
    with Store.open(url) as store:
        return store.current_revision()


@pytest.mark.slow
def test_processes_starting_together_migrate_once(database_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(3)
    with context.Pool(3) as pool:
        revisions = pool.starmap(_open, [(database_url, barrier)] * 3)
    with Store.open(database_url, migrate=False) as store:
        assert revisions == [_head(store)] * 3


def test_revision_files_never_import_application_code() -> None:
    """A revision must keep meaning what it meant when written, whatever the models become."""
    for path in Path(MIGRATIONS, "versions").glob("*.py"):
        assert "aggregator" not in path.read_text(), path.name


def test_the_heads_read_from_the_files_are_alembics(database_url: str) -> None:
    """The cheap check at start-up (no alembic import) knows the same newest revision."""
    with Store.open(database_url) as store, store.engine.connect() as conn:
        heads = ScriptDirectory.from_config(alembic_config(conn)).get_heads()
    assert head_revisions() == frozenset(heads)


def test_a_database_behind_the_files_is_migrated(database_url: str) -> None:
    with Store.open(database_url) as store:
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "-1")
        assert store.current_revision() != _head(store)
    with Store.open(database_url) as store:
        assert store.current_revision() == _head(store)


def _without_alembic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand for a process that has not imported alembic (the daemon): the store then
    migrates in a child.  The test process has it loaded, and would migrate itself."""
    monkeypatch.delitem(sys.modules, "alembic")


def test_a_failed_migration_reaches_the_caller_in_one_line(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upgrade runs in a child process; its error is the caller's, message and all."""
    with Store.open(database_url) as store, store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))  # from the future
    _without_alembic(monkeypatch)
    with pytest.raises(StorageError) as caught:
        Store.open(database_url)
    message = str(caught.value)
    assert message.startswith("could not migrate the database: database=")
    assert "CommandError: Can't locate revision identified by 'f00d'" in message
    assert "\n" not in message
    # The child's traceback, as a process pool gives a worker's.
    assert isinstance(caught.value.__cause__, ChildProcessError)
    assert "Traceback" in str(caught.value.__cause__)


def test_a_migration_process_dying_is_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with Store.open(url) as store, store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "-1")  # an upgrade is due
    interpreter = tmp_path / "python"
    interpreter.write_text("#!/bin/sh\necho 'Fatal Python error: out of luck' >&2\nexit 3\n")
    interpreter.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(interpreter))
    _without_alembic(monkeypatch)
    with pytest.raises(StorageError) as caught:
        Store.open(url)
    assert str(caught.value) == (
        f"could not migrate the database: database=sqlite:///{tmp_path / 'db.sqlite'}: "
        "ChildProcessError: Fatal Python error: out of luck"
    )
    assert "out of luck" in capfd.readouterr().err  # what the child wrote is passed on
