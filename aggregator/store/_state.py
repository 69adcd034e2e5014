"""Polling state and leases: what each source's next poll needs, and who polls it.

States (validators, failures, next poll) and the leases that split sources
between instances sharing one database.  May import :mod:`._base` and the
schema; nothing here touches articles.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, or_, select, update

from aggregator.store._base import BATCH, StoreBase, chunks, dialect_insert
from aggregator.store.engine import is_postgresql, writing
from aggregator.store.tables import UTCDateTime, leases, source_state, state_values, to_state
from aggregator.types import Source, SourceState

__all__ = ["StateMixin", "release_lease", "save_states"]


class StateMixin(StoreBase):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        # Source ids known to have a lease row (rows are never deleted), so a claim
        # inserts rows only for sources it has not seen before.
        self._leased: set[str] = set()
        self._leased_lock = threading.Lock()

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
            for chunk in chunks(sorted(by_id), BATCH):
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
            save_states(conn, updates)
        return replaced

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
            save_states(conn, [state for state, _ in finished])
            releases = [
                {"sid": state.source_id, "holder": owner}
                for state, owner in finished
                if owner is not None
            ]
            if releases:
                conn.execute(_RELEASE, releases)

    def claim_due_states(
        self,
        sources: Sequence[Source],
        *,
        now: datetime,
        owner: str,
        lease: timedelta,
        limit: int,
    ) -> list[SourceState]:
        """Lease up to ``limit`` due sources to ``owner`` until ``now + lease``, most
        overdue first; return their states (what :meth:`get_state` would return, read
        in the same transaction) in claim order.

        Due means never polled or ``next_poll <= now``, not disabled, and not leased
        (or the lease ran out: a crashed instance's sources come back after
        ``lease``).  On PostgreSQL the candidate leases are locked ``FOR UPDATE SKIP
        LOCKED`` so concurrent claimers split the work instead of queueing; the
        conditional UPDATE re-checks the lease, which alone suffices on SQLite where
        the write lock serialises claimers.
        """
        by_id = {source.id: source for source in sources}
        claimed = self._claim(list(by_id), now, owner, lease, limit)
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
                conn.execute(dialect_insert(conn, leases).values(fresh).on_conflict_do_nothing())
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
            if claimed:
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
            release_lease(conn, source_id, owner)


def save_states(conn: Connection, states: Sequence[SourceState]) -> None:
    """Upsert state rows, all in one statement execution."""
    if states:
        rows = [state_values(state) for state in states]
        conn.execute(_state_upsert(conn.dialect.name, tuple(rows[0])), rows)


def release_lease(conn: Connection, source_id: str, owner: str) -> None:
    conn.execute(_RELEASE, {"sid": source_id, "holder": owner})


@functools.cache
def _state_upsert(dialect: str, names: tuple[str, ...]) -> Any:
    """The state row's upsert, built once: building it (``excluded`` proxies for
    every column) cost more CPU than running it, on every 304 poll."""
    statement = dialect_insert(dialect, source_state)
    changed = {name: statement.excluded[name] for name in names if name != "source_id"}
    return statement.on_conflict_do_update(index_elements=["source_id"], set_=changed)


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
