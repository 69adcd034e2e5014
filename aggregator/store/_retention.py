"""Retention: deleting articles past their source's retention, and the tombstones
that keep them deleted.

May import :mod:`._base`, :mod:`._reads` (to report what goes) and
:mod:`aggregator.dedupe` (for the keys to tombstone).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, or_, select

from aggregator import dedupe
from aggregator.store._base import BATCH, StoreBase, at, chunks, dialect_insert
from aggregator.store._reads import load
from aggregator.store.engine import writing
from aggregator.store.tables import articles, tombstones
from aggregator.types import StoredArticle, utc_ms

__all__ = ["RetentionMixin"]


class RetentionMixin(StoreBase):
    def prune(
        self,
        *,
        now: datetime,
        default_retention: timedelta,
        per_source: Mapping[str, timedelta],
        dry_run: bool = False,
    ) -> list[StoredArticle]:
        """Delete articles whose ``sort_time`` is older than their primary source's
        retention, tombstoning every key they had in the same transaction (a feed
        still carrying them must not bring them back).  Returns what went, or with
        ``dry_run`` what would go."""
        a = articles.c
        expired: list[ColumnElement[bool]] = [
            and_(a.source_id == source_id, a.sort_time < at(now - keep))
            for source_id, keep in per_source.items()
        ]
        expired.append(
            and_(a.source_id.not_in(list(per_source)), a.sort_time < at(now - default_retention))
        )
        with self._errors("prune articles"), writing(self._engine) as conn:
            ids = list(conn.scalars(select(a.id).where(or_(*expired)).order_by(a.sort_time, a.id)))
            gone = load(conn, ids)
            if dry_run or not gone:
                return gone
            moment = utc_ms(now)
            dead: dict[str, str] = {}
            for stored in gone:
                for route in reversed(stored.provenance):  # the primary source wins a shared key
                    dead.update(dict.fromkeys(dedupe.route_keys(route), route.source_id))
            marks = [
                {"key": key, "source_id": sid, "pruned_at": moment} for key, sid in dead.items()
            ]
            conn.execute(dialect_insert(conn, tombstones).values(marks).on_conflict_do_nothing())
            for chunk in chunks(ids, BATCH):
                # Provenance and raw entries go with them (ON DELETE CASCADE).
                conn.execute(delete(articles).where(a.id.in_(chunk)))
        return gone
