"""Initial schema: articles, provenance, raw entries, source state, leases, tombstones.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("link", sa.Text(), nullable=False),
        sa.Column("link_key", sa.String(length=64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("published", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sort_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fetched", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("hash_changes", sa.Integer(), nullable=False),
        sa.Column("date_source", sa.String(length=16), nullable=False),
        sa.Column("comments", sa.Boolean(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("categories", sa.Text(), nullable=False),
        sa.Column("source_id", sa.String(length=255), nullable=False),
        sa.Column("source_name", sa.Text(), nullable=False),
        sa.Column("guid", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("link_key", name="uq_articles_link_key"),
    )
    op.create_index("ix_articles_recent", "articles", ["sort_time", "id"])
    op.create_index("ix_articles_source_recent", "articles", ["source_id", "sort_time", "id"])
    op.create_index("ix_articles_updated", "articles", ["updated"])

    op.create_table(
        "source_state",
        sa.Column("source_id", sa.String(length=255), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("etag", sa.Text(), nullable=True),
        sa.Column("last_modified", sa.Text(), nullable=True),
        sa.Column("last_attempt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("last_error_kind", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_poll", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("source_id"),
    )
    op.create_index("ix_source_state_next_poll", "source_state", ["next_poll"])
    op.create_table(
        "leases",
        sa.Column("source_id", sa.String(length=255), nullable=False),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("source_id"),
    )

    op.create_table(
        "tombstones",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.String(length=255), nullable=False),
        sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "provenance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.String(length=255), nullable=False),
        sa.Column("source_name", sa.Text(), nullable=False),
        sa.Column("link", sa.Text(), nullable=False),
        sa.Column("link_key", sa.String(length=64), nullable=False),
        sa.Column("guid", sa.Text(), nullable=True),
        sa.Column("guid_key", sa.String(length=64), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sort_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"], ["articles.id"], name="fk_provenance_article", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("article_id", "source_id", name="uq_provenance_article_source"),
        sa.UniqueConstraint("guid_key", name="uq_provenance_guid_key"),
    )
    op.create_index(
        "ix_provenance_source_recent", "provenance", ["source_id", "sort_time", "article_id"]
    )
    op.create_index("ix_provenance_link_key", "provenance", ["link_key"])

    op.create_table(
        "raw_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.String(length=255), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"], ["articles.id"], name="fk_raw_entries_article", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("article_id", "source_id", name="uq_raw_entries_article_source"),
    )
    op.create_index("ix_raw_entries_source", "raw_entries", ["source_id", "id"])


def downgrade() -> None:
    # Dropping a table drops its indexes; children before the table they reference.
    for table in ("raw_entries", "provenance", "tombstones", "leases", "source_state", "articles"):
        op.drop_table(table)
