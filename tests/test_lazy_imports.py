"""Start-up stays cheap: what a command does not need is not imported.

Each check runs in a fresh interpreter (this one has imported everything already)
and reads ``sys.modules``: a module-level import of a heavy library anywhere on the
path of ``--help`` or of the store fails it.
"""

from __future__ import annotations

import json
import pkgutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from aggregator import cli
from aggregator.migrations import head_revisions

#: Libraries that cost start-up time and memory, with who may import them.
HEAVY = (
    "alembic",  # a migration, only when one is due
    "bs4",  # the generic adapter's plain-text helper
    "sqlalchemy.dialects.postgresql",  # a PostgreSQL database
    "uvicorn",  # run / serve
    "starlette",
    "httpx2",  # run / poll
    "rich",  # formatted output
    "lxml",  # parsing, cleaning, export
    "yaml",  # the archive
    "concurrent.futures.process",  # the parse pool
    "opencc",  # converting served text between scripts
)


def _loaded(code: str) -> list[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    modules: list[str] = json.loads(done.stdout.splitlines()[-1])
    return modules


def _heavy(modules: list[str], allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted(
        name
        for name in HEAVY
        if name not in allowed and any(m == name or m.startswith(name + ".") for m in modules)
    )


def test_the_cli_module_imports_no_heavy_library() -> None:
    modules = _loaded("import aggregator.cli")
    assert _heavy(modules) == []
    for name in ("sqlalchemy", "pydantic", "aggregator.store", "aggregator.settings"):
        assert name not in modules, name


@pytest.mark.parametrize(
    "module",
    sorted(f"aggregator.cli.{info.name}" for info in pkgutil.iter_modules(cli.__path__)),
)
def test_each_cli_module_imports_no_heavy_library(module: str) -> None:
    modules = _loaded(f"import {module}")
    assert module in modules  # the check can fail: the module itself is seen
    assert _heavy(modules) == []
    for name in ("sqlalchemy", "pydantic", "aggregator.store", "aggregator.settings"):
        assert name not in modules, name


def test_help_imports_no_heavy_library() -> None:
    code = (
        "from aggregator.cli import app\n"
        "try:\n"
        "    app(['--help'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass"
    )
    modules = _loaded(code)
    assert _heavy(modules) == []
    assert "sqlalchemy" not in modules


def test_a_current_database_opens_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/db.sqlite"
    migrate = f"from aggregator.store import Store\nStore.open({url!r}).close()"
    subprocess.run([sys.executable, "-c", migrate], check=True, timeout=60)  # migrates
    modules = _loaded(migrate)  # a second start finds the schema current
    assert _heavy(modules) == []


def test_a_new_database_is_migrated_without_alembic_in_the_opening_process(
    tmp_path: Path,
) -> None:
    """The migration runs in a child: the daemon never keeps alembic, mako, pygments."""
    url = f"sqlite:///{tmp_path}/db.sqlite"
    opening = f"from aggregator.store import Store\nStore.open({url!r}).close()"
    modules = _loaded(opening)
    assert [name for name in ("alembic", "mako", "pygments") if name in modules] == []
    with sqlite3.connect(tmp_path / "db.sqlite") as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    connection.close()
    assert frozenset([revision]) == head_revisions()


def test_a_new_database_gets_its_schema_without_alembic(tmp_path: Path) -> None:
    """An empty database, a new in-memory one too, is created at the newest schema
    directly.  The check can fail: the process that runs a due migration has alembic."""
    url = f"sqlite:///{tmp_path}/db.sqlite"
    for opened in ("sqlite://", url):
        modules = _loaded(f"from aggregator.store import Store\nStore.open({opened!r}).close()")
        assert [name for name in ("alembic", "mako", "pygments") if name in modules] == []
    with sqlite3.connect(tmp_path / "db.sqlite") as connection:
        connection.execute("DROP TABLE search_pending")  # as revision 0008's downgrade
        connection.execute("UPDATE alembic_version SET version_num = '0007'")
    connection.close()
    migrate = (
        "import io\nfrom aggregator.store import _migrate\n"
        f"sys.stdin = io.StringIO({url!r})\n_migrate.main()"
    )
    assert "alembic" in _loaded(migrate)
