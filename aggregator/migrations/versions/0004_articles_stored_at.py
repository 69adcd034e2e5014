"""Articles remember when they were first stored in this database.

Retention counted from ``sort_time`` (the published time) deleted an imported
archive the moment it arrived; it now counts from ``stored_at``.  Existing rows
take their ``updated``: it was set at the first insert and only ever moves
later, so it is never earlier than the real first store (no row looks older than
it is, which would expose it to a prune) and is exact for every article not
changed since.  ``fetched`` would not do: an imported article's ``fetched`` is
the archive's, often years before it reached this database.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("articles", sa.Column("stored_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE articles SET stored_at = updated")
    # SQLite cannot add NOT NULL in place: batch mode rebuilds the table.
    with op.batch_alter_table("articles") as batch:
        batch.alter_column("stored_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.create_index("ix_articles_stored_at", "articles", ["stored_at"])


def downgrade() -> None:
    op.drop_index("ix_articles_stored_at", table_name="articles")
    with op.batch_alter_table("articles") as batch:
        batch.drop_column("stored_at")
