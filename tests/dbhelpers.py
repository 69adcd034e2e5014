"""Databases for tests: a SQLite file, or a fresh schema on the PostgreSQL test server.

PostgreSQL tests read the server's URL from ``AGGREGATOR_TEST_DATABASE_URL`` and
are skipped, with that reason, when it is unset (a user's machine may have no
server; CI sets it).  Each test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

__all__ = ["ENV", "postgres_database"]

ENV = "AGGREGATOR_TEST_DATABASE_URL"


@contextmanager
def postgres_database(**query: str) -> Iterator[str]:
    """A URL confined to a fresh schema on the test server, dropped afterwards."""
    base = os.environ.get(ENV)
    if not base:
        pytest.skip(f"{ENV} is not set; PostgreSQL tests need a server")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}", **query})
    admin = create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
