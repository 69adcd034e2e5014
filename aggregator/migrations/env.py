"""Alembic environment: always online, on the connection the store hands in."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from aggregator.store.tables import UTCDateTime, metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through aggregator.migrations.upgrade(connection)")


def render_item(kind: str, item: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render our column types as plain SQLAlchemy ones, so a revision file never
    imports application code that may change after it is written."""
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    render_item=render_item,
)
# Inside the caller's transaction alembic does not commit: the caller holds the
# migration lock (pg_advisory_xact_lock / BEGIN IMMEDIATE) until it commits.
with context.begin_transaction():
    context.run_migrations()
