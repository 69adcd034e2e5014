"""Provenance rows carry their article's ``updated``, indexed per source.

A per-source ``Last-Modified`` / ETag (``Store.last_updated(sources)``) then is one
index seek on ``(source_id, updated)`` instead of a walk over every article the
source ever brought (each such lookup reading a row with a multi-kilobyte body).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("provenance", sa.Column("updated", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE provenance SET updated = "
        "(SELECT articles.updated FROM articles WHERE articles.id = provenance.article_id)"
    )
    # SQLite cannot add NOT NULL to a column in place: batch mode rebuilds the table
    # (indexes and named constraints included); PostgreSQL gets a plain ALTER.
    with op.batch_alter_table("provenance") as batch:
        batch.alter_column("updated", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.create_index("ix_provenance_source_updated", "provenance", ["source_id", "updated"])


def downgrade() -> None:
    op.drop_index("ix_provenance_source_updated", table_name="provenance")
    with op.batch_alter_table("provenance") as batch:
        batch.drop_column("updated")
