"""Source state remembers the configured URL it belongs to.

``source_state.url`` is where polls go, which after a permanent redirect is no longer
the configured URL; without the configured one next to it, a user who edits a
source's URL in ``sources.toml`` was silently ignored (polls kept going to the old
feed, and a feed disabled by HTTP 410 stayed disabled).  Existing rows get NULL:
"made for whatever is configured now", adopted at the daemon's next start.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("source_state", sa.Column("configured_url", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("source_state") as batch:
        batch.drop_column("configured_url")
