"""The database edge: persists articles, provenance, raw entries and polling state.

Everything that decides *what* to write lives in :mod:`aggregator.dedupe`; this
module looks up what a batch could touch once, asks dedupe, and executes the
intents with Core bulk statements in one transaction per batch.  Inserts use
``INSERT ... ON CONFLICT`` so two processes storing the same article at the same
moment store it once: the loser's insert does nothing, and its entries are
decided again against the winner's row.

Every database failure leaves as :class:`~aggregator.errors.StorageError` naming
what was being done.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import islice
from types import TracebackType
from typing import Any, TypeVar

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    delete,
    func,
    inspect,
    literal,
    or_,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from aggregator import dedupe
from aggregator.dedupe import AddProvenance, Insert, Mode, Plan, Record, Update
from aggregator.errors import StorageError
from aggregator.migrations import alembic_config, upgrade
from aggregator.search import Query, document_text
from aggregator.store import _search
from aggregator.store.engine import create_engine, is_postgresql, writing
from aggregator.store.tables import (
    UTCDateTime,
    article_values,
    articles,
    leases,
    provenance,
    raw_entries,
    search_postings,
    source_state,
    state_values,
    to_article,
    to_state,
    tombstones,
)
from aggregator.types import (
    Article,
    Cursor,
    PollCounts,
    Provenance,
    RawEntry,
    Source,
    SourceState,
    StoredArticle,
    utc_ms,
)

__all__ = ["Store"]

# Any constant works; it only has to be the same in every process sharing the database.
_MIGRATION_LOCK = 0x61676772  # "aggr"
_IMPORT_BATCH = 500
_RAW_PAGE = 500
_T = TypeVar("_T")


class Store:
    """One database, shared safely by several processes and threads.

    Methods are thread-safe (each takes its own pooled connection).  ``now`` is an
    argument wherever time matters so callers and tests control the clock; where
    it is optional, the store reads the clock once per call.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # Source ids known to have a lease row (rows are never deleted), so a claim
        # inserts rows only for sources it has not seen before.
        self._leased: set[str] = set()
        self._leased_lock = threading.Lock()

    @classmethod
    def open(cls, database_url: str, *, migrate: bool = True) -> Store:
        """Connect, and bring the schema to the newest revision unless ``migrate=False``."""
        store = cls(create_engine(database_url))
        if migrate:
            try:
                store.migrate()
            except BaseException:
                store.close()
                raise
        return store

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        return self._engine

    @contextmanager
    def _errors(self, action: str, **context: object) -> Iterator[None]:
        try:
            yield
        except (SQLAlchemyError, CommandError) as exc:
            url = self._engine.url.render_as_string(hide_password=True)
            raise StorageError(f"could not {action}", database=url, **context) from exc

    def migrate(self) -> None:
        """Upgrade to the newest schema; several processes may call this at once.

        The whole upgrade is one transaction holding a lock (an advisory lock on
        PostgreSQL, SQLite's write lock), so the second process waits and then finds
        nothing to do.  The upgrade that creates the search index also fills it.
        """
        with self._errors("migrate the database"), writing(self._engine) as connection:
            if is_postgresql(self._engine):
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
            indexed = inspect(connection).has_table(search_postings.name)
            upgrade(connection)
            if not indexed:
                _search.rebuild(connection)

    def current_revision(self) -> str | None:
        """The schema revision the database is at; ``None`` before any migration."""
        with self._errors("read the schema revision"), self._engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def head_revision(self) -> str | None:
        """The newest schema revision this code knows."""
        with self._errors("read the migration scripts"), self._engine.connect() as connection:
            return ScriptDirectory.from_config(alembic_config(connection)).get_current_head()

    def ping(self) -> None:
        """Raise :class:`StorageError` unless the database answers (``/readyz``)."""
        with self._errors("reach the database"), self._engine.connect() as connection:
            connection.execute(select(1))

    # -- polling state ---------------------------------------------------------------

    def get_state(self, source: Source) -> SourceState:
        """The stored state, or a fresh one for a source never polled."""
        with self._errors("read source state", source=source.id), self._engine.connect() as conn:
            row = (
                conn.execute(source_state.select().where(source_state.c.source_id == source.id))
                .mappings()
                .first()
            )
        return to_state(row) if row is not None else SourceState.fresh(source)

    def states(self) -> list[SourceState]:
        with self._errors("read source states"), self._engine.connect() as conn:
            rows = conn.execute(source_state.select().order_by(source_state.c.source_id))
            return [to_state(row) for row in rows.mappings()]

    def sync_sources(self, sources: Sequence[Source]) -> list[tuple[SourceState, Source]]:
        """Start afresh the state of every source whose configured URL was changed.

        A state belongs to the URL it was made for: its validators, failure count,
        backoff, redirect target and 410 verdict say nothing about another feed, and
        keeping them would keep polling the old feed (or none).  States made before the
        configured URL was recorded adopt the current one.  Returns the replaced states
        with their sources, for the caller to report.
        """
        by_id = {source.id: source for source in sources}
        replaced: list[tuple[SourceState, Source]] = []
        with self._errors("check configured source URLs"), writing(self._engine) as conn:
            stored: list[SourceState] = []
            for chunk in _chunks(sorted(by_id), _IMPORT_BATCH):
                found = conn.execute(_STATES, {"ids": chunk}).mappings()
                stored += [to_state(row) for row in found]
            updates = []
            for state in stored:
                source = by_id[state.source_id]
                if state.configured_url == source.url:
                    continue
                if state.configured_url is not None:
                    replaced.append((state, source))
                    updates.append(SourceState.fresh(source))
                else:
                    updates.append(dataclasses.replace(state, configured_url=source.url))
            _save_states(conn, updates)
        return replaced

    def save_state(self, state: SourceState) -> None:
        with (
            self._errors("save source state", source=state.source_id),
            writing(self._engine) as conn,
        ):
            _save_states(conn, [state])

    def finish_polls(self, finished: Sequence[tuple[SourceState, str | None]]) -> None:
        """Save the states of polls that stored no articles (304s, failures) and give
        their leases back, all in one transaction.

        Each ``(state, owner)`` releases ``state.source_id`` only if ``owner`` (when not
        ``None``) still holds its lease.  One transaction for many polls because such a
        poll's whole write is one small row: the transaction around it cost more than
        the row, on every 304.
        """
        if not finished:
            return
        ids = ", ".join(state.source_id for state, _ in finished[:5])
        more = f" and {len(finished) - 5} more" if len(finished) > 5 else ""
        with self._errors("save source states", sources=ids + more), writing(self._engine) as conn:
            _save_states(conn, [state for state, _ in finished])
            releases = [
                {"sid": state.source_id, "holder": owner}
                for state, owner in finished
                if owner is not None
            ]
            if releases:
                conn.execute(_RELEASE, releases)

    def claim_due(
        self,
        source_ids: Sequence[str],
        *,
        now: datetime,
        owner: str,
        lease: timedelta,
        limit: int,
    ) -> list[str]:
        """Lease up to ``limit`` due sources to ``owner`` until ``now + lease``; most
        overdue first.

        Due means never polled or ``next_poll <= now``, not disabled, and not leased
        (or the lease ran out: a crashed instance's sources come back after
        ``lease``).  On PostgreSQL the candidate leases are locked ``FOR UPDATE SKIP
        LOCKED`` so concurrent claimers split the work instead of queueing; the
        conditional UPDATE re-checks the lease, which alone suffices on SQLite where
        the write lock serialises claimers.
        """
        return [source_id for source_id, _ in self._claim(source_ids, now, owner, lease, limit)]

    def claim_due_states(
        self,
        sources: Sequence[Source],
        *,
        now: datetime,
        owner: str,
        lease: timedelta,
        limit: int,
    ) -> list[SourceState]:
        """:meth:`claim_due`, returning the claimed sources' states (what
        :meth:`get_state` would return, read in the same transaction) in claim order."""
        by_id = {source.id: source for source in sources}
        claimed = self._claim(list(by_id), now, owner, lease, limit, states=True)
        return [
            state if state is not None else SourceState.fresh(by_id[source_id])
            for source_id, state in claimed
        ]

    def _claim(
        self,
        source_ids: Sequence[str],
        now: datetime,
        owner: str,
        lease: timedelta,
        limit: int,
        *,
        states: bool = False,
    ) -> list[tuple[str, SourceState | None]]:
        if not source_ids or limit <= 0:
            return []
        with self._leased_lock:
            missing = sorted(set(source_ids) - self._leased)
        at = {"now": now}
        with self._errors("claim due sources", owner=owner), writing(self._engine) as conn:
            if missing:
                # A lease row per source first, so there is a row to lock.  Sorted so
                # that concurrent claimers take row locks in the same order.
                fresh = [{"source_id": source_id} for source_id in missing]
                conn.execute(_insert(conn, leases).values(fresh).on_conflict_do_nothing())
            if is_postgresql(self._engine):
                chosen = list(
                    conn.scalars(_DUE_LOCKED, {**at, "ids": list(source_ids), "limit": limit})
                )
            else:
                # SQLite holds the write lock, so nothing changes while we read: filter
                # by ``source_ids`` here rather than binding a thousand-item IN list
                # (its compilation cost more than the whole query).
                chosen = _ours(conn, at, set(source_ids), limit)
            claimed: set[str] = set()
            found: dict[str, SourceState] = {}
            if chosen:
                taken = {**at, "ids": chosen, "holder": owner, "until": now + lease}
                claimed.update(conn.scalars(_TAKE, taken))
            if states and claimed:
                rows = conn.execute(_STATES, {"ids": sorted(claimed)}).mappings()
                found = {row["source_id"]: to_state(row) for row in rows}
        if missing:
            with self._leased_lock:
                self._leased.update(missing)
        return [(source_id, found.get(source_id)) for source_id in chosen if source_id in claimed]

    def renew(self, source_ids: Sequence[str], owner: str, *, until: datetime) -> set[str]:
        """Extend ``owner``'s leases on ``source_ids`` to ``until``; return the ids
        another owner holds now (``owner``'s lease ran out and was claimed).

        A poll can outlast its lease (a parse pool backed up, a database waiting for
        a lock); unrenewed, its source would be claimed and polled again elsewhere.
        """
        if not source_ids:
            return set()
        ids = sorted(set(source_ids))
        with self._errors("renew leases", owner=owner), writing(self._engine) as conn:
            conn.execute(_RENEW, {"ids": ids, "holder": owner, "until": until})
            return set(conn.scalars(_TAKEN_BY_OTHERS, {"ids": ids, "holder": owner}))

    def release(self, source_id: str, owner: str) -> None:
        """Give the lease back early; a no-op unless ``owner`` still holds it."""
        with (
            self._errors("release lease", source=source_id, owner=owner),
            writing(self._engine) as conn,
        ):
            _release(conn, source_id, owner)

    # -- writing articles ------------------------------------------------------------

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
        _check_source(source, [article for _, article in entries])
        with self._errors("save poll", source=source.id), writing(self._engine) as conn:
            counts = self._store(conn, entries, now=_now(now), mode=Mode.POLL)
            _save_states(conn, [state])
            if release is not None:
                _release(conn, source.id, release)
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
        _check_source(source, [article for _, article in entries])
        with self._errors("renormalize", source=source.id), writing(self._engine) as conn:
            return self._store(conn, entries, now=_now(now), mode=Mode.RENORMALIZE)

    def import_articles(
        self, articles: Iterable[Article], *, now: datetime | None = None
    ) -> PollCounts:
        """Store archive articles; they never overwrite anything, so importing twice
        adds nothing.  Committed in batches: an interrupted import can simply be rerun."""
        at = _now(now)
        counts = PollCounts()
        iterator = iter(articles)
        while batch := list(islice(iterator, _IMPORT_BATCH)):
            with self._errors("import articles"), writing(self._engine) as conn:
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
        records = self._records(conn, keys)
        dead = set(conn.scalars(select(tombstones.c.key).where(tombstones.c.key.in_(keys))))
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

    def _records(self, conn: Connection, keys: Sequence[str]) -> dict[int, Record]:
        """Every stored article owning one of ``keys``: the one lookup per batch."""
        if not keys:
            return {}
        p = provenance.c
        owners = select(p.article_id).where(or_(p.guid_key.in_(keys), p.link_key.in_(keys)))
        query = articles.select().where(
            or_(articles.c.link_key.in_(keys), articles.c.id.in_(owners))
        )
        rows = list(conn.execute(query).mappings())
        routes = _routes(conn, {row["id"]: row["source_id"] for row in rows})
        return {
            row["id"]: Record(
                id=row["id"],
                article=to_article(row),
                provenance=routes[row["id"]],
                hash_changes=row["hash_changes"],
            )
            for row in rows
        }

    # -- reading articles ------------------------------------------------------------

    def latest(
        self,
        *,
        sources: Sequence[str] | None = None,
        limit: int = 50,
        before: Cursor | None = None,
    ) -> list[StoredArticle]:
        """The newest ``limit`` articles (older than ``before``), newest first.

        With ``sources``, an article matches if it came through any of them.  Each
        source is one index range scan of at most ``limit`` rows; the table is never
        loaded.
        """
        if limit <= 0:
            return []
        p = provenance.c
        with self._errors("read latest articles", sources=sources), self._engine.connect() as conn:
            picked = set(sources or ())
            if sources is None or len(picked) == 1:
                # One index range scan, reading the article rows it reaches directly.
                query = _latest_query(per_source=sources is not None, paged=before is not None)
                values: dict[str, Any] = {"limit": limit}
                if sources is not None:
                    values["source"] = next(iter(picked))
                if before is not None:
                    values.update(before_time=before.sort_time, before_id=before.id)
                rows = list(conn.execute(query, values).mappings())
                # The page's routes by the same index walk rather than by a list of its
                # ids: binding a hundred ids cost more than the walk.
                shape = {"per_source": sources is not None, "paged": before is not None}
                routes = conn.execute(_latest_routes_query(**shape), values)
                primaries = {row["id"]: row["source_id"] for row in rows}
                return _stored(rows, _group_routes(routes, primaries))
            found = {
                row_id: moment
                for source in picked
                for moment, row_id in _newest(
                    conn, p.sort_time, p.article_id, before, limit, p.source_id == source
                )
            }
            newest = sorted(((moment, row_id) for row_id, moment in found.items()), reverse=True)
            return _load(conn, [row_id for _, row_id in newest[:limit]])

    def search(
        self,
        query: Query,
        *,
        sources: Sequence[str] | None = None,
        limit: int = 50,
        before: Cursor | None = None,
    ) -> list[StoredArticle]:
        """The newest ``limit`` articles matching ``query`` (older than ``before``),
        newest first, as :meth:`latest` orders and filters them.

        The index proposes candidates in order; each is checked against its folded
        text, so the answer is exactly the articles that match.
        """
        if limit <= 0:
            return []
        found: list[StoredArticle] = []
        with self._errors("search", query=str(query)), self._engine.connect() as conn:
            blocks = _search.candidates(conn, query)
            ordered = _search.newest_first(
                conn, blocks, sources=sources, before=before, limit=limit
            )
            for ids in ordered:
                for stored in _load(conn, ids):
                    article = stored.article
                    if query.matches(document_text(article.title, article.body)):
                        found.append(stored)
                        if len(found) == limit:
                            return found
        return found

    def article(self, article_id: int) -> StoredArticle | None:
        """One article by its id (the page's ``/articles/ID``), ``None`` if not stored."""
        with self._errors("read an article", id=article_id), self._engine.connect() as conn:
            found = _load(conn, [article_id])
        return found[0] if found else None

    def last_updated(self, sources: Sequence[str] | None = None) -> datetime | None:
        """When anything shown in a feed of ``sources`` (all when ``None``) last changed.

        One index seek per source: every provenance row carries its article's
        ``updated`` (``ix_provenance_source_updated``)."""
        if sources is None:
            query = select(func.max(articles.c.updated))
        else:
            picked = sorted(set(sources))
            if not picked:
                return None
            p = provenance.c
            newest = [
                select(func.max(p.updated).label("updated")).where(p.source_id == source)
                for source in picked
            ]
            if len(newest) == 1:
                query = newest[0]
            else:
                each = union_all(*newest).subquery()
                query = select(func.max(each.c.updated))
        with self._errors("read last update", sources=sources), self._engine.connect() as conn:
            value: datetime | None = conn.scalar(query)
        return value

    def article_counts(self) -> dict[str, int]:
        """Articles per source id, counting every source an article came through."""
        query = select(provenance.c.source_id, func.count()).group_by(provenance.c.source_id)
        with self._errors("count articles"), self._engine.connect() as conn:
            return dict(conn.execute(query).all())

    def iter_raw(
        self, source_ids: Sequence[str] | None = None
    ) -> Iterator[tuple[str, RawEntry, datetime]]:
        """Every stored raw entry as ``(source_id, entry, fetched_at)``.

        Read in keyset pages, each its own short transaction, so a long renormalize
        never pins a snapshot while it writes.
        """
        raw = raw_entries.c
        last = 0
        while True:
            query = select(raw.id, raw.source_id, raw.raw, raw.fetched_at).where(raw.id > last)
            if source_ids is not None:
                query = query.where(raw.source_id.in_(source_ids))
            with self._errors("read raw entries"), self._engine.connect() as conn:
                page = conn.execute(query.order_by(raw.id).limit(_RAW_PAGE)).all()
            for row_id, source_id, data, fetched_at in page:
                yield source_id, RawEntry.from_dict(json.loads(data)), fetched_at
                last = row_id
            if len(page) < _RAW_PAGE:
                return

    # -- retention -------------------------------------------------------------------

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
            and_(a.source_id == source_id, a.sort_time < _at(now - keep))
            for source_id, keep in per_source.items()
        ]
        expired.append(
            and_(a.source_id.not_in(list(per_source)), a.sort_time < _at(now - default_retention))
        )
        with self._errors("prune articles"), writing(self._engine) as conn:
            ids = list(conn.scalars(select(a.id).where(or_(*expired)).order_by(a.sort_time, a.id)))
            gone = _load(conn, ids)
            if dry_run or not gone:
                return gone
            at = utc_ms(now)
            dead: dict[str, str] = {}
            for stored in gone:
                for route in reversed(stored.provenance):  # the primary source wins a shared key
                    dead.update(dict.fromkeys(dedupe.route_keys(route), route.source_id))
            marks = [{"key": key, "source_id": sid, "pruned_at": at} for key, sid in dead.items()]
            conn.execute(_insert(conn, tombstones).values(marks).on_conflict_do_nothing())
            _search.unindex(conn, {stored.id: stored.article for stored in gone})
            for chunk in _chunks(ids, _IMPORT_BATCH):
                # Provenance and raw entries go with them (ON DELETE CASCADE).
                conn.execute(delete(articles).where(a.id.in_(chunk)))
        return gone


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
        self._save_raws()
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
                {**article_values(intent.article, updated=self.now), "hash_changes": 0}
                for intent in inserts
            ),
            key=lambda row: str(row["link_key"]),
        )
        statement = (
            _insert(self.conn, articles)
            .on_conflict_do_nothing(index_elements=["link_key"])
            .returning(articles.c.id, articles.c.link_key)
        )
        ids = {key: id_ for id_, key in self.conn.execute(statement, rows)}
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
        statement = (
            _insert(self.conn, provenance)
            .on_conflict_do_nothing()
            .returning(provenance.c.article_id, provenance.c.source_id)
        )
        stored = set(self.conn.execute(statement, self.routes))
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
                "raw": json.dumps(raw.to_dict(), ensure_ascii=False),
                "fetched_at": article.fetched or self.now,
            }
        )

    def _save_raws(self) -> None:
        if not self.raws:
            return
        statement = _insert(self.conn, raw_entries)
        statement = statement.on_conflict_do_update(
            index_elements=["article_id", "source_id"],
            set_={"raw": statement.excluded.raw, "fetched_at": statement.excluded.fetched_at},
        )
        self.conn.execute(statement, self.raws)


# -- helpers -------------------------------------------------------------------------


def _insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, which has ``on_conflict_*`` (typed ``Any``: the two
    dialect classes share the methods but no base class declaring them)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _save_states(conn: Connection, states: Sequence[SourceState]) -> None:
    """Upsert state rows, all in one statement execution."""
    if states:
        rows = [state_values(state) for state in states]
        conn.execute(_state_upsert(conn.dialect.name, tuple(rows[0])), rows)


@functools.cache
def _state_upsert(dialect: str, names: tuple[str, ...]) -> Any:
    """The state row's upsert, built once: building it (``excluded`` proxies for
    every column) cost more CPU than running it, on every 304 poll."""
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(source_state)
    changed = {name: statement.excluded[name] for name in names if name != "source_id"}
    return statement.on_conflict_do_update(index_elements=["source_id"], set_=changed)


def _at(moment: datetime) -> ColumnElement[datetime]:
    """A timestamp literal typed for comparison with our UTC columns."""
    return literal(moment, UTCDateTime())


def _now(now: datetime | None) -> datetime:
    return utc_ms(now or datetime.now(UTC))


def _sort_time(article: Article) -> datetime:
    sort_time = article.published or article.fetched
    assert sort_time is not None  # stored articles always have a first-fetched time
    return sort_time


def _check_source(source: Source, batch: Sequence[Article]) -> None:
    strays = sorted({article.source_id for article in batch} - {source.id})
    if strays:
        raise ValueError(f"articles from {strays} saved as a poll of source {source.id!r}")


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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


def _newest(
    conn: Connection,
    sort_time: ColumnElement[datetime],
    id_: ColumnElement[int],
    before: Cursor | None,
    limit: int,
    *where: ColumnElement[bool],
) -> list[tuple[datetime, int]]:
    """``(sort_time, id)`` of the newest ``limit`` rows, read backwards along an index."""
    query = select(sort_time, id_).where(*where)
    if before is not None:
        query = query.where(tuple_(sort_time, id_) < tuple_(_at(before.sort_time), before.id))
    query = query.order_by(sort_time.desc(), id_.desc()).limit(limit)
    return [(moment, row_id) for moment, row_id in conn.execute(query)]


@functools.cache
def _latest_query(*, per_source: bool, paged: bool, ids_only: bool = False) -> Any:
    """The newest articles (of one source, older than a cursor), built once per shape:
    building a statement costs a good part of serving a page."""
    a = articles.c
    sort_time, id_ = a.sort_time, a.id
    query = select(id_) if ids_only else articles.select()
    if per_source:
        # An alias: the routes query uses this one as a subquery of ``provenance``.
        page = provenance.alias("page")
        sort_time, id_ = page.c.sort_time, page.c.article_id
        query = select(id_) if ids_only else query.join(page, id_ == a.id)
        query = query.where(page.c.source_id == bindparam("source"))
    if paged:
        cursor = tuple_(bindparam("before_time", type_=UTCDateTime()), bindparam("before_id"))
        query = query.where(tuple_(sort_time, id_) < cursor)
    return query.order_by(sort_time.desc(), id_.desc()).limit(bindparam("limit"))


@functools.cache
def _latest_routes_query(*, per_source: bool, paged: bool) -> Any:
    """The routes of the articles :func:`_latest_query` returns, with the same values."""
    page = _latest_query(per_source=per_source, paged=paged, ids_only=True)
    return _ROUTES.where(provenance.c.article_id.in_(page.scalar_subquery()))


_ROUTES = select(
    provenance.c.article_id,
    provenance.c.source_id,
    provenance.c.source_name,
    provenance.c.link,
    provenance.c.guid,
    provenance.c.first_seen,
)
_ROUTES_OF = _ROUTES.where(provenance.c.article_id.in_(bindparam("ids", expanding=True)))


def _routes(conn: Connection, primaries: Mapping[int, str]) -> dict[int, tuple[Provenance, ...]]:
    """Each article's provenance, primary source first, then in order of arrival.

    ``primaries`` maps each article id to its primary source id."""
    rows = itertools.chain.from_iterable(
        conn.execute(_ROUTES_OF, {"ids": chunk})
        for chunk in _chunks(list(primaries), _IMPORT_BATCH)
    )
    return _group_routes(rows, primaries)


def _group_routes(
    rows: Iterable[Any], primaries: Mapping[int, str]
) -> dict[int, tuple[Provenance, ...]]:
    """Route rows (``_ROUTES`` columns) per article of ``primaries``, in display order."""
    found: dict[int, list[tuple[Any, ...]]] = {id_: [] for id_ in primaries}
    for article_id, source_id, source_name, link, guid, first_seen in rows:
        if article_id in found:  # a row may join the page just as it is read
            order = (source_id != primaries[article_id], first_seen, source_id)
            route = Provenance(source_id, source_name, link, guid, first_seen)
            found[article_id].append((order, route))
    return {id_: tuple(route for _, route in sorted(routes)) for id_, routes in found.items()}


def _stored(
    rows: Sequence[Any], routes: Mapping[int, tuple[Provenance, ...]]
) -> list[StoredArticle]:
    return [
        StoredArticle(
            id=row["id"],
            article=to_article(row),
            provenance=routes[row["id"]],
            updated=row["updated"],
        )
        for row in rows
    ]


def _load(conn: Connection, ids: Sequence[int]) -> list[StoredArticle]:
    """The articles ``ids`` with their provenance, in the order given."""
    rows: dict[int, Any] = {}
    for chunk in _chunks(ids, _IMPORT_BATCH):
        query = articles.select().where(articles.c.id.in_(chunk))
        rows.update((row["id"], row) for row in conn.execute(query).mappings())
    routes = _routes(conn, {row_id: row["source_id"] for row_id, row in rows.items()})
    return _stored([rows[row_id] for row_id in ids if row_id in rows], routes)


# The claim's statements, built once: building and cache-keying them cost more CPU
# than running them (a claim runs every few polls).
_NOW = bindparam("now", type_=UTCDateTime())
_FREE = or_(leases.c.owner.is_(None), leases.c.expires <= _NOW)
_DUE = (
    select(leases.c.source_id)
    .outerjoin(source_state, source_state.c.source_id == leases.c.source_id)
    .where(
        _FREE,
        source_state.c.disabled_reason.is_(None),
        or_(source_state.c.next_poll.is_(None), source_state.c.next_poll <= _NOW),
    )
    .order_by(source_state.c.next_poll.asc().nulls_first(), leases.c.source_id)
)
_DUE_PAGE = _DUE.limit(bindparam("limit")).offset(bindparam("offset"))
_DUE_LOCKED = (
    _DUE.where(leases.c.source_id.in_(bindparam("ids", expanding=True)))
    .limit(bindparam("limit"))
    .with_for_update(of=leases, skip_locked=True)
)
_TAKE = (
    update(leases)
    .where(leases.c.source_id.in_(bindparam("ids", expanding=True)), _FREE)
    .values(owner=bindparam("holder"), expires=bindparam("until", type_=UTCDateTime()))
    .returning(leases.c.source_id)
)
_STATES = source_state.select().where(
    source_state.c.source_id.in_(bindparam("ids", expanding=True))
)


_RENEW = (
    update(leases)
    .where(
        leases.c.source_id.in_(bindparam("ids", expanding=True)),
        leases.c.owner == bindparam("holder"),
    )
    .values(expires=bindparam("until", type_=UTCDateTime()))
)
_TAKEN_BY_OTHERS = select(leases.c.source_id).where(
    leases.c.source_id.in_(bindparam("ids", expanding=True)),
    leases.c.owner.is_not(None),
    leases.c.owner != bindparam("holder"),
)

_RELEASE = (
    update(leases)
    .where(leases.c.source_id == bindparam("sid"), leases.c.owner == bindparam("holder"))
    .values(owner=None, expires=None)
)


def _release(conn: Connection, source_id: str, owner: str) -> None:
    conn.execute(_RELEASE, {"sid": source_id, "holder": owner})


def _ours(conn: Connection, at: Mapping[str, datetime], ours: set[str], limit: int) -> list[str]:
    """The first ``limit`` due sources that are in ``ours``, read in pages (rows of
    sources that other instances poll are skipped)."""
    chosen: list[str] = []
    page = max(limit * 2, 64)
    offset = 0
    while len(chosen) < limit:
        rows = list(conn.scalars(_DUE_PAGE, {**at, "limit": page, "offset": offset}))
        chosen += [source_id for source_id in rows if source_id in ours][: limit - len(chosen)]
        if len(rows) < page:
            break
        offset += page
    return chosen
