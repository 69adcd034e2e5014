"""The search index: token postings per block of article ids.

Created empty: the store fills it from the stored articles in the same migrating
transaction (``Store.migrate`` sees the table appear), because the tokens must be
what the running code writes and a revision must not import application code.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "search_postings",
        sa.Column("token", sa.String(128), nullable=False),
        sa.Column("block", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("bits", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("token", "block"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("search_postings")
