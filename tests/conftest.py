"""Shared fixtures.  ``tests/`` is on sys.path, so helper modules import by bare name."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from dbhelpers import postgres_database
from feedserver import FeedServer
from hypothesis import settings
from typer.testing import CliRunner, Result

from aggregator.cli import app
from aggregator.store import Store

# No per-example deadline: speed is the benchmark's business, and on a shared 2-core
# machine a pure in-memory example took 329 ms once (deadline 200 ms) and 0.75 ms the
# next time.  Hypothesis still reports an example that never ends.
settings.register_profile("aggregator", deadline=None)
settings.load_profile("aggregator")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file in a directory yet to be created, or a schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'aggregator.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def server() -> Iterator[FeedServer]:
    """A loopback HTTP server for the test's feeds (``server.route(path, handler)``)."""
    with FeedServer() as feed_server:
        yield feed_server


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated store on each database ``database_url`` gives."""
    with Store.open(database_url) as opened:
        yield opened


class RunCli(Protocol):
    def __call__(self, store: Store, sources_toml: str, *args: str) -> Result: ...


@pytest.fixture
def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunCli:
    """The real CLI on ``store``'s database with ``sources_toml`` as its sources file,
    no ``AGGREGATOR_*`` variable of the caller's environment leaking in."""
    for name in list(os.environ):
        if name.startswith("AGGREGATOR_"):
            monkeypatch.delenv(name)

    def run(store: Store, sources_toml: str, *args: str) -> Result:
        (tmp_path / "sources.toml").write_text(sources_toml, encoding="utf-8")
        config = tmp_path / "aggregator.toml"
        config.write_text(
            f'database_url = "{store.engine.url.render_as_string(hide_password=False)}"\n'
            f'sources_file = "{tmp_path / "sources.toml"}"\n',
            encoding="utf-8",
        )
        return CliRunner().invoke(app, ["--config", str(config), *args])

    return run
