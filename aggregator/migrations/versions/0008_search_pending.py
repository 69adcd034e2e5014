"""Articles waiting for the search index.

A poll stores its articles and names them here, in its own transaction; the index
takes them later, in batches, when the daemon has no poll to run (the store's
search module says why).  A search verifies the waiting articles one by
one besides the index's candidates, so its answer never depends on how far the
index has got.  A deleted article leaves the queue with its row (cascade).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "search_pending",
        sa.Column(
            "article_id",
            sa.Integer(),
            sa.ForeignKey("articles.id", ondelete="CASCADE", name="fk_search_pending_article"),
            primary_key=True,
            autoincrement=False,
        ),
    )


def downgrade() -> None:
    op.drop_table("search_pending")
