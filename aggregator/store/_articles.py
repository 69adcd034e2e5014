"""Writing articles: polls, renormalized rewrites and archive imports, with their
provenance and raw entries.

Everything that decides *what* to write lives in :mod:`aggregator.dedupe`; this
module looks up what a batch could touch once, asks dedupe, and executes the
intents with Core bulk statements in one transaction per batch.  Inserts use
``INSERT ... ON CONFLICT`` so two processes storing the same article at the same
moment store it once: the loser's insert does nothing, and its entries are
decided again against the winner's row.  May import :mod:`._base`, :mod:`._state`
(a poll's state is saved in its transaction), :mod:`._reads` (to assemble stored
articles) and :mod:`aggregator.dedupe`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Select, Table, bindparam, delete, or_, select, update

from aggregator import dedupe
from aggregator.dedupe import AddProvenance, Insert, Mode, Plan, Record, Update
from aggregator.errors import StorageError
from aggregator.store import _search
from aggregator.store._base import BATCH, BulkInsert, StoreBase, among, clock, listed
from aggregator.store._reads import routes_of
from aggregator.store._state import release_lease, save_states
from aggregator.store.engine import writing
from aggregator.store.tables import (
    article_values,
    articles,
    provenance,
    raw_entries,
    raw_json,
    to_article,
    tombstones,
)
from aggregator.types import Article, PollCounts, Provenance, RawEntry, Source, SourceState

__all__ = ["ArticlesMixin", "check_source"]


class ArticlesMixin(StoreBase):
    def save_poll(
        self,
        source: Source,
        entries: Sequence[tuple[RawEntry, Article]],
        state: SourceState,
        *,
        now: datetime | None = None,
        release: str | None = None,
    ) -> PollCounts:
        """Store one poll's articles, their raw entries and the new state, atomically.

        A crash mid-poll then leaves either the whole poll or none of it, and the
        state (ETag, next poll) never claims articles that were not stored.  With
        ``release=owner`` the lease ``owner`` holds on the source is given back in
        the same transaction (as :meth:`release` would).
        """
        check_source(source, [article for _, article in entries])
        with self._errors("save poll", source=source.id), writing(self._engine) as conn:
            counts = self._store(conn, entries, now=clock(now), mode=Mode.POLL)
            save_states(conn, [state])
            if release is not None:
                release_lease(conn, source.id, release)
        return counts

    def replace_articles(
        self,
        source: Source,
        entries: Sequence[tuple[RawEntry, Article]],
        *,
        now: datetime | None = None,
    ) -> PollCounts:
        """Rewrite stored articles from re-adapted raw entries (``aggregator renormalize``).

        Any field may change, dates included; first-fetched times, tombstones and
        the primary source's sole right to edit still hold.
        """
        check_source(source, [article for _, article in entries])
        with self._errors("renormalize", source=source.id), writing(self._engine) as conn:
            return self._store(conn, entries, now=clock(now), mode=Mode.RENORMALIZE)

    def import_articles(
        self, articles: Iterable[Article], *, now: datetime | None = None, restore: bool = False
    ) -> PollCounts:
        """Store archive articles; they never overwrite anything, so importing twice
        adds nothing.  Committed in batches: an interrupted import can simply be rerun.

        Articles pruned earlier are not stored again (``counts.tombstoned`` says how
        many) unless ``restore``: an import is an explicit action, so the caller is
        told what the tombstones held back and may lift them (only the keys the
        imported articles carry; other keys of a pruned article stay tombstoned).
        """
        at = clock(now)
        counts = PollCounts()
        iterator = iter(articles)
        while batch := list(islice(iterator, BATCH)):
            with self._errors("import articles"), writing(self._engine) as conn:
                if restore:
                    keys = {key for article in batch for key in dedupe.identity_keys(article)}
                    conn.execute(delete(tombstones).where(tombstones.c.key.in_(keys)))
                entries = [(None, article) for article in batch]
                counts += self._store(conn, entries, now=at, mode=Mode.IMPORT)
        return counts

    def _store(
        self,
        conn: Connection,
        entries: Sequence[tuple[RawEntry | None, Article]],
        *,
        now: datetime,
        mode: Mode,
        retries: int = 2,
    ) -> PollCounts:
        batch = [article for _, article in entries]
        keys = sorted({key for article in batch for key in dedupe.identity_keys(article)})
        records = _records(conn, keys)
        dead = _tombstoned(conn, keys)
        plan = dedupe.decide(batch, records.values(), dead, now=now, mode=mode)
        lost = _Execution(conn, plan, entries, records, now).run()
        if not lost:
            return plan.counts
        # Another process stored these articles between our lookup and our insert.
        if retries == 0:
            raise StorageError("articles kept changing while being stored", count=len(lost))
        kept = Plan(tuple(intent for intent in plan.intents if intent not in lost))
        again = [entries[route.entry] for intent in lost for route in intent.routes]
        return kept.counts + self._store(conn, again, now=now, mode=mode, retries=retries - 1)


@functools.cache
def _lookups(dialect: str) -> tuple[Select[Any], Select[Any]]:
    """The batch's two lookups on ``dialect``, each taking every key as one parameter:
    the stored articles owning a key, and the tombstoned keys."""
    p = provenance.c
    owners = select(p.article_id).where(
        or_(among(p.guid_key, dialect, "keys"), among(p.link_key, dialect, "keys"))
    )
    owning = articles.select().where(
        or_(among(articles.c.link_key, dialect, "keys"), articles.c.id.in_(owners))
    )
    dead = select(tombstones.c.key).where(among(tombstones.c.key, dialect, "keys"))
    return owning, dead


def _tombstoned(conn: Connection, keys: Sequence[str]) -> set[str]:
    if not keys:
        return set()
    return set(conn.scalars(_lookups(conn.dialect.name)[1], {"keys": listed(conn, keys)}))


def _records(conn: Connection, keys: Sequence[str]) -> dict[int, Record]:
    """Every stored article owning one of ``keys``: the one lookup per batch."""
    if not keys:
        return {}
    query = _lookups(conn.dialect.name)[0]
    rows = list(conn.execute(query, {"keys": listed(conn, keys)}).mappings())
    routes = routes_of(conn, {row["id"]: row["source_id"] for row in rows})
    return {
        row["id"]: Record(
            id=row["id"],
            article=to_article(row),
            provenance=routes[row["id"]],
            hash_changes=row["hash_changes"],
        )
        for row in rows
    }


class _Execution:
    """Carries out one plan on one connection; returns the inserts lost to a race."""

    def __init__(
        self,
        conn: Connection,
        plan: Plan,
        entries: Sequence[tuple[RawEntry | None, Article]],
        records: Mapping[int, Record],
        now: datetime,
    ) -> None:
        self.conn = conn
        self.plan = plan
        self.entries = entries
        self.records = records
        self.now = now
        # Where each touched article sorts, after this plan: provenance copies it.
        self.sort_times = {id_: _sort_time(record.article) for id_, record in records.items()}
        self.inserted: dict[int, Insert] = {}
        self.routes: list[dict[str, Any]] = []
        self.raws: list[dict[str, Any]] = []

    def run(self) -> list[Insert]:
        intents = self.plan.intents
        lost = self._insert([intent for intent in intents if isinstance(intent, Insert)])
        self._update([intent for intent in intents if isinstance(intent, Update)])
        merged = [intent for intent in intents if isinstance(intent, AddProvenance)]
        for intent in merged:
            self._route(intent.id, intent.route)
        if merged:
            ids = {intent.id for intent in merged}
            self.conn.execute(
                update(articles).where(articles.c.id.in_(ids)).values(updated=self.now)
            )
            # Every route repeats its article's update time (the new ones get it below).
            self.conn.execute(
                update(provenance).where(provenance.c.article_id.in_(ids)).values(updated=self.now)
            )
        lost += self._add_routes()
        _UPSERT_RAWS(self.conn, self.raws)
        _search.index(self.conn, {id_: intent.article for id_, intent in self.inserted.items()})
        changed = [i for i in intents if isinstance(i, Update)]
        _search.reindex(self.conn, ((i.id, self.records[i.id].article, i.article) for i in changed))
        return lost

    def _insert(self, inserts: Sequence[Insert]) -> list[Insert]:
        if not inserts:
            return []
        # One lock order for every process (by key), so concurrent batches cannot deadlock.
        rows = sorted(
            (
                {
                    **article_values(intent.article, updated=self.now),
                    "hash_changes": 0,
                    "stored_at": self.now,
                }
                for intent in inserts
            ),
            key=lambda row: str(row["link_key"]),
        )
        ids = {key: id_ for id_, key in _INSERT_ARTICLES(self.conn, rows)}
        lost = []
        for intent in inserts:
            id_ = ids.get(dedupe.link_key(intent.article.link))
            if id_ is None:
                lost.append(intent)
                continue
            self.inserted[id_] = intent
            self.sort_times[id_] = _sort_time(intent.article)
            for route in intent.routes:
                self._route(id_, route)
        return lost

    def _update(self, updates: Sequence[Update]) -> None:
        if not updates:
            return
        rows = []
        for intent in updates:
            values = article_values(intent.article, updated=self.now)
            rows.append({**values, "hash_changes": intent.hash_changes, "row_id": intent.id})
            self.sort_times[intent.id] = values["sort_time"]
            self._raw(intent.id, intent.article.source_id, intent.entry)
        # SET takes the columns named in the parameter rows (SQLAlchemy's executemany form).
        self.conn.execute(update(articles).where(articles.c.id == bindparam("row_id")), rows)
        # Routes keep the link their source first gave (it stays a key of the article);
        # only their copy of the sort position follows the article.
        self.conn.execute(
            update(provenance)
            .where(provenance.c.article_id == bindparam("row_id"))
            .values(sort_time=bindparam("sort_time"), updated=bindparam("updated")),
            [
                {"row_id": row["row_id"], "sort_time": row["sort_time"], "updated": self.now}
                for row in rows
            ],
        )

    def _route(self, article_id: int, route: dedupe.Route) -> None:
        self.routes.append({"article_id": article_id, **_route_values(route.provenance)})
        self._raw(article_id, route.provenance.source_id, route.entry)

    def _add_routes(self) -> list[Insert]:
        """Insert the routes; a new article that lost its primary route to a race
        (another article took that feed entry meanwhile) is removed and retried."""
        if not self.routes:
            return []
        for row in self.routes:
            row["sort_time"] = self.sort_times[row["article_id"]]
            row["updated"] = self.now
        stored = set(_INSERT_ROUTES(self.conn, self.routes))
        orphans = {
            id_: intent
            for id_, intent in self.inserted.items()
            if (id_, intent.routes[0].provenance.source_id) not in stored
        }
        if orphans:
            self.conn.execute(delete(articles).where(articles.c.id.in_(orphans)))
            for id_ in orphans:
                del self.inserted[id_]
            self.raws = [row for row in self.raws if row["article_id"] not in orphans]
        return list(orphans.values())

    def _raw(self, article_id: int, source_id: str, entry: int) -> None:
        raw, article = self.entries[entry]
        if raw is None:
            return
        self.raws.append(
            {
                "article_id": article_id,
                "source_id": source_id,
                "raw": raw_json(raw),
                "fetched_at": article.fetched or self.now,
            }
        )


def _columns(table: Table) -> list[str]:
    """Every column but the generated primary key."""
    return [column.name for column in table.columns if column.name != "id"]


# The hot inserts, as plain SQL (see BulkInsert).  Another process's row with the same
# identity wins (ON CONFLICT DO NOTHING); RETURNING tells which rows went in.
_INSERT_ARTICLES = BulkInsert(
    articles, _columns(articles), "ON CONFLICT (link_key) DO NOTHING RETURNING id, link_key"
)
_INSERT_ROUTES = BulkInsert(
    provenance, _columns(provenance), "ON CONFLICT DO NOTHING RETURNING article_id, source_id"
)
_UPSERT_RAWS = BulkInsert(
    raw_entries,
    _columns(raw_entries),
    "ON CONFLICT (article_id, source_id) DO UPDATE "
    "SET raw = excluded.raw, fetched_at = excluded.fetched_at",
)


def _sort_time(article: Article) -> datetime:
    sort_time = article.sort_time
    assert sort_time is not None  # stored articles always have a first-fetched time
    return sort_time


def check_source(source: Source, batch: Sequence[Article]) -> None:
    strays = sorted({article.source_id for article in batch} - {source.id})
    if strays:
        raise ValueError(f"articles from {strays} saved as a poll of source {source.id!r}")


def _route_values(route: Provenance) -> dict[str, Any]:
    return {
        "source_id": route.source_id,
        "source_name": route.source_name,
        "link": route.link,
        "link_key": dedupe.link_key(route.link),
        "guid": route.guid,
        "guid_key": dedupe.guid_key(route.source_id, route.guid),
        "first_seen": route.first_seen,
    }
