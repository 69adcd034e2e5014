"""One poll of one source, top to bottom: fetch -> parse -> adapt -> dedupe/store.

This is the only module that knows the order of the stages.  It isolates
failures at two levels: a bad entry is logged with its guid and skipped, and a
failed source records the error and its backoff in its state row and returns an
outcome instead of raising, so one source never stops the others.

Network I/O runs on the event loop.  Parsing and cleaning (the CPU-bound
middle, :mod:`aggregator.normalize`) run in a process pool when there is one,
else in a thread, and the database transaction runs in a thread, so the HTTP
service sharing the loop stays responsive during a large poll.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Executor
from dataclasses import dataclass
from datetime import datetime, timedelta

from aggregator import timing
from aggregator.errors import (
    AggregatorError,
    GoneError,
    RateLimitedError,
    SourceError,
    StorageError,
)
from aggregator.fetch import Fetcher
from aggregator.metrics import DEFAULT as DEFAULT_METRICS
from aggregator.metrics import Metrics
from aggregator.normalize import Normalized, parse_and_adapt
from aggregator.store import Store
from aggregator.types import UTC, FetchResult, PollCounts, Source, SourceState

__all__ = ["PollOutcome", "Poller"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollOutcome:
    """What one poll did; ``error`` is set exactly when it failed."""

    source_id: str
    status: str  # "ok", "not-modified", "failed" or "disabled"
    counts: PollCounts = PollCounts()
    duration: float = 0.0
    error: AggregatorError | None = None
    problems: tuple[str, ...] = ()
    released: bool = False  # the lease was handed back with the final write

    @property
    def failed(self) -> bool:
        return self.error is not None


class Poller:
    """Polls sources through one shared fetcher into one store.

    ``executor`` (a process pool) runs :func:`parse_and_adapt`; without one it
    runs in a worker thread, which keeps the event loop free but uses one core.
    """

    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        *,
        max_entries: int = 500,
        jitter: float = 0.1,
        backoff_cap: timedelta = timedelta(days=1),
        metrics: Metrics = DEFAULT_METRICS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.fetcher = fetcher
        self.max_entries = max_entries
        self.jitter = jitter
        self.backoff_cap = backoff_cap
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()

    async def poll(
        self, source: Source, *, state: SourceState | None = None, owner: str | None = None
    ) -> PollOutcome:
        """Poll one source.  ``state``: as claimed (saves a read); ``owner``: the lease
        holder, whose lease the poll's final write gives back in the same transaction."""
        started = time.monotonic()
        try:
            outcome = await self._poll(source, state, owner)
        except StorageError as exc:
            # The database itself failed (restart, full disk): there is nowhere to record
            # it, so it is logged; the claim expires and the poll is retried later.
            logger.error("poll not stored: source=%r: %s", source.id, exc)
            outcome = PollOutcome(source.id, "failed", error=exc)
        outcome = dataclasses.replace(outcome, duration=time.monotonic() - started)
        self._report(source, outcome)
        return outcome

    async def _poll(
        self, source: Source, state: SourceState | None, owner: str | None
    ) -> PollOutcome:
        now = self.clock()
        if state is None:
            state = await asyncio.to_thread(self.store.get_state, source)
        if state.disabled_reason:
            logger.info("not polling disabled source %r: %s", source.id, state.disabled_reason)
            return PollOutcome(source.id, "disabled")
        attempt = dataclasses.replace(state, last_attempt=now)
        try:
            result = await self.fetcher.fetch(source, state)
            if result.not_modified:
                new_state = self._success_state(source, attempt, result, now)
                await self._finish(new_state, owner)
                return PollOutcome(source.id, "not-modified", released=owner is not None)
            normalized = await self._normalize(source, result, now)
            return await asyncio.to_thread(
                self._store_result, source, attempt, result, normalized, now, owner
            )
        except SourceError as exc:
            return await self._failed(source, attempt, exc, now, owner)

    async def _finish(self, state: SourceState, owner: str | None) -> None:
        """Save the state of a poll that stored no articles (and release, when leased)."""
        if owner is None:
            await asyncio.to_thread(self.store.save_state, state)
        else:
            await asyncio.to_thread(self.store.finish_poll, state, owner)

    def _success_state(
        self, source: Source, state: SourceState, result: FetchResult, now: datetime
    ) -> SourceState:
        return dataclasses.replace(
            state,
            url=result.permanent_url or state.url,
            etag=result.etag or state.etag,
            last_modified=result.last_modified or state.last_modified,
            last_success=now,
            consecutive_failures=0,
            last_error_kind=None,
            last_error=None,
            next_poll=timing.after_success(now, source.interval, jitter=self.jitter, rng=self.rng),
        )

    async def _normalize(self, source: Source, result: FetchResult, now: datetime) -> Normalized:
        assert result.content is not None
        work = functools.partial(
            parse_and_adapt,
            result.content,
            url=result.url,
            headers=dict(result.headers),
            source=source,
            fetched_at=now,
            max_entries=self.max_entries,
        )
        if self.executor is not None:
            try:
                return await asyncio.get_running_loop().run_in_executor(self.executor, work)
            except BrokenExecutor:
                # A worker died (killed, out of memory): keep polling, on one core.
                logger.exception("parse pool broken; parsing in threads from now on")
                self.executor = None
        return await asyncio.to_thread(work)

    def _store_result(
        self,
        source: Source,
        state: SourceState,
        result: FetchResult,
        normalized: Normalized,
        now: datetime,
        owner: str | None,
    ) -> PollOutcome:
        if normalized.entries_sent > self.max_entries:
            logger.warning(
                "source %r sent %d entries; kept the first %d",
                source.id,
                normalized.entries_sent,
                self.max_entries,
            )
        for problem in normalized.problems:
            logger.warning("feed problem: source=%r url=%r: %s", source.id, result.url, problem)
        new_state = self._success_state(source, state, result, now)
        if normalized.problems:
            new_state = dataclasses.replace(
                new_state, last_error_kind="parse-warning", last_error=normalized.problems[0]
            )
        counts = self.store.save_poll(source, normalized.pairs, new_state, release=owner)
        counts = dataclasses.replace(counts, skipped=counts.skipped + normalized.skipped)
        return PollOutcome(
            source.id, "ok", counts, problems=normalized.problems, released=owner is not None
        )

    async def _failed(
        self,
        source: Source,
        state: SourceState,
        error: SourceError,
        now: datetime,
        owner: str | None,
    ) -> PollOutcome:
        failures = state.consecutive_failures + 1
        retry_after = error.retry_after if isinstance(error, RateLimitedError) else None
        new_state = dataclasses.replace(
            state,
            consecutive_failures=failures,
            last_error_kind=error.kind,
            last_error=str(error)[:2000],
            next_poll=timing.after_failure(
                now,
                source.interval,
                failures,
                cap=self.backoff_cap,
                jitter=self.jitter,
                rng=self.rng,
                retry_after=retry_after,
            ),
            disabled_reason=str(error) if isinstance(error, GoneError) else state.disabled_reason,
        )
        await self._finish(new_state, owner)
        return PollOutcome(source.id, "failed", error=error, released=owner is not None)

    def _report(self, source: Source, outcome: PollOutcome) -> None:
        counts = outcome.counts
        self.metrics.record_poll(
            source.id,
            outcome.status,
            new=counts.new,
            updated=counts.updated,
            duration=outcome.duration,
            error_kind=outcome.error.kind if outcome.error else None,
        )
        if outcome.error is not None:
            logger.warning(
                "poll failed: source=%r in %.2fs: %s", source.id, outcome.duration, outcome.error
            )
        else:
            logger.info(
                "poll %s: source=%r new=%d updated=%d unchanged=%d merged=%d skipped=%d in %.2fs",
                outcome.status,
                source.id,
                counts.new,
                counts.updated,
                counts.unchanged,
                counts.merged,
                counts.skipped,
                outcome.duration,
            )
