"""Article pages fetched for full text, and the upgrade of an article to its page.

A page row is keyed by (source, article link); it outlives nothing but its use:
re-polls reuse its extracted content, renormalize re-extracts from its HTML.  May
import :mod:`._base` and :mod:`._articles` (an upgrade is an article write).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from aggregator.dedupe import Mode, link_key
from aggregator.store._articles import ArticlesMixin, check_source
from aggregator.store._base import BATCH, chunks, clock, dialect_insert
from aggregator.store.engine import writing
from aggregator.store.tables import pages
from aggregator.types import Article, Page, PollCounts, RawEntry, Source

__all__ = ["PagesMixin"]

_FIELDS = ("url", "html", "main", "etag", "last_modified", "entry_updated", "failure")


class PagesMixin(ArticlesMixin):
    def pages_for(self, source_id: str, links: Iterable[str]) -> dict[str, Page]:
        """The stored pages of ``source_id`` for these article links, by link."""
        by_key = {key: link for link in links if (key := link_key(link)) is not None}
        found: dict[str, Page] = {}
        with self._errors("read pages", source=source_id), self._engine.connect() as conn:
            for chunk in chunks(sorted(by_key), BATCH):
                query = select(pages).where(
                    pages.c.source_id == source_id, pages.c.link_key.in_(chunk)
                )
                for row in conn.execute(query).mappings():
                    found[by_key[row["link_key"]]] = _page(row)
        return found

    def iter_pages(self, source_id: str) -> Iterator[tuple[str, Page]]:
        """Every stored page of ``source_id`` with its link key (renormalize)."""
        with self._errors("read pages", source=source_id), self._engine.connect() as conn:
            query = select(pages).where(pages.c.source_id == source_id, pages.c.html.is_not(None))
            for row in conn.execute(query.execution_options(yield_per=BATCH)).mappings():
                yield row["link_key"], _page(row)

    def save_page(
        self,
        source: Source,
        link: str,
        page: Page,
        upgraded: Sequence[tuple[RawEntry, Article]] = (),
        *,
        now: datetime | None = None,
    ) -> PollCounts:
        """Store ``page`` for ``link`` and, in the same transaction, the article it
        upgrades (as a renormalize would: only the primary source edits)."""
        check_source(source, [article for _, article in upgraded])
        at = clock(now)
        row = {
            "source_id": source.id,
            "link_key": link_key(link),
            "fetched_at": at,
            **{name: getattr(page, name) for name in _FIELDS},
        }
        with self._errors("save page", source=source.id), writing(self._engine) as conn:
            statement = dialect_insert(conn, pages)
            statement = statement.on_conflict_do_update(
                index_elements=["source_id", "link_key"],
                set_={name: statement.excluded[name] for name in (*_FIELDS, "fetched_at")},
            )
            conn.execute(statement, row)
            if not upgraded:
                return PollCounts()
            return self._store(conn, upgraded, now=at, mode=Mode.RENORMALIZE)


def _page(row: Mapping[Any, Any]) -> Page:
    return Page(**{name: row[name] for name in _FIELDS})
