"""Retention: deleting articles past their source's retention, and the tombstones
that keep them deleted.

Retention counts from ``stored_at`` (when this database first stored an article),
never from its published time, and is off unless configured: the caller passes
only the rules the user set.  Every run reports per source what went and what
stayed, so nothing disappears unseen.  May import :mod:`._base`, :mod:`._reads`
(to report what goes) and :mod:`aggregator.dedupe` (for the keys to tombstone).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import ColumnElement, Connection, and_, delete, func, not_, or_, select

from aggregator import dedupe
from aggregator.store import _search
from aggregator.store._base import BATCH, StoreBase, at, chunks, dialect_insert
from aggregator.store._reads import load
from aggregator.store.engine import writing
from aggregator.store.tables import articles, pages, tombstones
from aggregator.types import StoredArticle, utc_ms

__all__ = ["PruneReport", "RetentionMixin", "SourcePrune"]


class SourcePrune(NamedTuple):
    """One primary source after a prune; the kept range is by article date."""

    source_id: str
    pruned: int
    kept: int
    oldest_kept: datetime | None
    newest_kept: datetime | None

    def describe(self, *, dry_run: bool = False) -> str:
        verb = "would prune" if dry_run else "pruned"
        kept = f"kept {self.kept}"
        if self.oldest_kept is not None and self.newest_kept is not None:
            kept += f" ({self.oldest_kept:%Y-%m-%d} .. {self.newest_kept:%Y-%m-%d})"
        return f"{self.source_id}: {verb} {self.pruned}, {kept}"


@dataclass(frozen=True)
class PruneReport:
    """What a prune did (or, dry, would do): per source, and the articles themselves."""

    sources: tuple[SourcePrune, ...] = ()  # every source with articles, by id
    articles: tuple[StoredArticle, ...] = ()  # oldest stored first

    @property
    def pruned(self) -> int:
        return len(self.articles)


class RetentionMixin(StoreBase):
    def prune(
        self,
        *,
        now: datetime,
        default_retention: timedelta | None,
        per_source: Mapping[str, timedelta],
        dry_run: bool = False,
    ) -> PruneReport:
        """Delete articles first stored longer ago than their primary source's
        retention (``default_retention`` for sources without their own; ``None``
        keeps them), tombstoning every key they had in the same transaction (a feed
        still carrying them must not bring them back).  With ``dry_run`` nothing is
        deleted and the report says what would go."""
        a = articles.c
        expired: list[ColumnElement[bool]] = [
            and_(a.source_id == source_id, a.stored_at < at(now - keep))
            for source_id, keep in per_source.items()
        ]
        if default_retention is not None:
            expired.append(
                and_(
                    a.source_id.not_in(list(per_source)),
                    a.stored_at < at(now - default_retention),
                )
            )
        if not expired:
            return PruneReport()
        rule = or_(*expired)
        kept = (
            select(a.source_id, func.count(), func.min(a.sort_time), func.max(a.sort_time))
            .where(not_(rule))
            .group_by(a.source_id)
        )
        with self._errors("prune articles"), writing(self._engine) as conn:
            ids = list(conn.scalars(select(a.id).where(rule).order_by(a.stored_at, a.id)))
            gone = load(conn, ids)
            remaining = {row[0]: row for row in conn.execute(kept)}
            if gone and not dry_run:
                _bury(conn, gone, now)
                _search.unindex(conn, {stored.id: stored.article for stored in gone})
                for chunk in chunks(ids, BATCH):
                    # Provenance and raw entries go with them (ON DELETE CASCADE).
                    conn.execute(delete(articles).where(a.id.in_(chunk)))
                # Their fetched pages too (keyed by link, not tied by a foreign key).
                keys = sorted({key for s in gone if (key := dedupe.link_key(s.article.link))})
                for chunk in chunks(keys, BATCH):
                    conn.execute(delete(pages).where(pages.c.link_key.in_(chunk)))
        pruned = Counter(stored.article.source_id for stored in gone)
        sources = []
        for source_id in sorted(pruned.keys() | remaining.keys()):
            _, count, oldest, newest = remaining.get(source_id, (source_id, 0, None, None))
            sources.append(SourcePrune(source_id, pruned[source_id], count, oldest, newest))
        return PruneReport(tuple(sources), tuple(gone))


def _bury(conn: Connection, gone: list[StoredArticle], now: datetime) -> None:
    """Tombstone every key of the pruned articles."""
    moment = utc_ms(now)
    dead: dict[str, str] = {}
    for stored in gone:
        for route in reversed(stored.provenance):  # the primary source wins a shared key
            dead.update(dict.fromkeys(dedupe.route_keys(route), route.source_id))
    marks = [{"key": key, "source_id": sid, "pruned_at": moment} for key, sid in dead.items()]
    conn.execute(dialect_insert(conn, tombstones).values(marks).on_conflict_do_nothing())
