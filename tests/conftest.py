"""Shared fixtures.  ``tests/`` is on sys.path, so helper modules import by bare name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dbhelpers import postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file in a directory yet to be created, or a schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'aggregator.db'}"
    else:
        with postgres_database() as url:
            yield url
