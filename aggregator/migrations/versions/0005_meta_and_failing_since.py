"""A ``meta`` table for facts fixed when the database was made, and when a source began failing.

``meta`` holds the item-id authority (the ``HOST,YEAR`` of ``tag:`` ids): ids built
from whatever ``base_url`` is configured today would change with it, and every
subscriber's reader would show every article again.  ``failing_since`` is the first
failed poll of a source's current run of failures, for ``/healthz`` and the page
("failing since ..."); existing rows get NULL, set by their next failed poll.

Revision ID: 0005
Revises: 0003 (0004 is being written on another branch; chain after it when merged)
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.add_column(
        "source_state", sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("source_state") as batch:
        batch.drop_column("failing_since")
    op.drop_table("meta")
