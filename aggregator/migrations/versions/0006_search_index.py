"""The search index: SQLite FTS5 over the articles' tokens, PostgreSQL GIN over arrays.

Created empty: the store fills it from the stored articles in the same migrating
transaction (``Store.migrate`` sees the table appear), because the tokens must be
what the running code writes and a revision must not import application code.

SQLite: contentless (``content=''``), no positions (``detail=none``) and no sizes
(``columnsize=0``): the index only proposes candidates, which are verified against
the text.  The ``ascii`` tokenizer splits only at ASCII spaces and punctuation, which
no token holds, so the newline-joined tokens come out exactly as they went in.
PostgreSQL: one row of tokens per article, going with its article (cascade), and a
GIN index kept with ``fastupdate`` (writes land in its pending list, merged later).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE search_index USING fts5(tokens, content='', detail=none, "
            "columnsize=0, tokenize='ascii')"
        )
        return
    op.create_table(
        "search_index",
        sa.Column(
            "article_id",
            sa.Integer(),
            sa.ForeignKey("articles.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("tokens", postgresql.ARRAY(sa.Text()), nullable=False),
    )
    op.create_index(
        "ix_search_index_tokens",
        "search_index",
        ["tokens"],
        postgresql_using="gin",
        postgresql_with={"fastupdate": "on"},
    )


def downgrade() -> None:
    op.drop_table("search_index")
