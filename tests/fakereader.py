"""The part of a fake ``ArticleReader`` that follows from its ``latest``: a bounded
page and a search are both ``latest`` filtered, as the store answers them (without the
store's cuts and index, which their own tests cover)."""

from __future__ import annotations

from collections.abc import Sequence

from aggregator.search import Query, document_text
from aggregator.types import Cursor, ReadBound, StoredArticle


class LatestReader:
    """Subclasses give ``latest``; ``feed_page`` and ``search`` are read through it."""

    def latest(
        self, *, sources: Sequence[str] | None = None, limit: int = 50, before: Cursor | None = None
    ) -> list[StoredArticle]:
        raise NotImplementedError

    def feed_page(
        self,
        *,
        sources: Sequence[str] | None = None,
        limit: int = 50,
        before: Cursor | None = None,
        bound: ReadBound,
    ) -> tuple[list[StoredArticle], bool]:
        rows = self.latest(sources=sources, limit=limit + 1, before=before)
        return rows[:limit], len(rows) > limit

    def search(
        self,
        query: Query,
        *,
        sources: Sequence[str] | None = None,
        limit: int = 50,
        before: Cursor | None = None,
    ) -> list[StoredArticle]:
        rows = self.latest(sources=sources, limit=1 << 30, before=before)
        found = [s for s in rows if query.matches(document_text(s.article.title, s.article.body))]
        return found[:limit]
