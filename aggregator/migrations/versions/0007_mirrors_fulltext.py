"""Mirrors and full text: per-URL state, fetched article pages, a body's origin.

``source_state.url_states`` holds one JSON record per configured URL of a source
with mirrors (validators, last error, 410 verdict: each URL has its own).
``pages`` keeps the article pages fetched for summary-only entries, so a
renormalize re-extracts without refetching and a refetch is conditional.
``articles.body_source`` says whether the body came from the feed or the page;
every existing article came from its feed.

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "articles",
        sa.Column("body_source", sa.String(8), nullable=False, server_default="feed"),
    )
    op.add_column("source_state", sa.Column("url_states", sa.Text(), nullable=True))
    op.create_table(
        "pages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source_id", sa.String(255), nullable=False),
        sa.Column("link_key", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("main", sa.Text(), nullable=True),
        sa.Column("etag", sa.Text(), nullable=True),
        sa.Column("last_modified", sa.Text(), nullable=True),
        sa.Column("entry_updated", sa.Text(), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("source_id", "link_key", name="uq_pages_source_link"),
    )


def downgrade() -> None:
    op.drop_table("pages")
    with op.batch_alter_table("source_state") as batch:
        batch.drop_column("url_states")
    with op.batch_alter_table("articles") as batch:
        batch.drop_column("body_source")
