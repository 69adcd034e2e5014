"""One poll of one source, top to bottom: fetch -> parse -> adapt -> dedupe/store.

This is the only module that knows the order of the stages.  It isolates
failures at two levels: a bad entry is logged with its guid and skipped, and a
failed source records the error and its backoff in its state row and returns an
outcome instead of raising, so one source never stops the others.

Network I/O runs on the event loop; parsing, adapting and the database
transaction are CPU- or disk-bound and run in a worker thread, so the HTTP
service sharing the loop stays responsive during a large poll.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from aggregator import timing
from aggregator.adapters import get_adapter
from aggregator.errors import (
    AdapterError,
    AggregatorError,
    GoneError,
    ParseError,
    RateLimitedError,
    SourceError,
    StorageError,
)
from aggregator.fetch import Fetcher
from aggregator.metrics import DEFAULT as DEFAULT_METRICS
from aggregator.metrics import Metrics
from aggregator.parse import parse_feed
from aggregator.store import Store
from aggregator.types import UTC, Article, FetchResult, PollCounts, RawEntry, Source, SourceState

__all__ = ["PollOutcome", "Poller", "adapt_entries"]

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

    @property
    def failed(self) -> bool:
        return self.error is not None


def adapt_entries(
    entries: Sequence[RawEntry], source: Source, fetched_at: datetime
) -> tuple[list[tuple[RawEntry, Article]], int]:
    """Normalize each entry with the source's adapter; return the pairs and the skip count.

    A bad entry never costs the others.  An :class:`AdapterError` is an expected
    rejection (no link, no title); anything else is a bug met on hostile input,
    logged with its traceback and the entry's identity, and still skipped.
    """
    adapter = get_adapter(source.adapter)
    pairs: list[tuple[RawEntry, Article]] = []
    skipped = 0
    for entry in entries:
        try:
            pairs.append((entry, adapter(entry, source, fetched_at)))
        except AdapterError as exc:
            skipped += 1
            logger.warning("skipping entry: %s", exc)
        except Exception:
            skipped += 1
            logger.exception(
                "adapter %r crashed on an entry: source=%r guid=%r link=%r",
                source.adapter,
                source.id,
                entry.guid,
                entry.link,
            )
    return pairs, skipped


class Poller:
    """Polls sources through one shared fetcher into one store."""

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
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.max_entries = max_entries
        self.jitter = jitter
        self.backoff_cap = backoff_cap
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()

    async def poll(self, source: Source) -> PollOutcome:
        started = time.monotonic()
        try:
            outcome = await self._poll(source)
        except StorageError as exc:
            # The database itself failed (restart, full disk): there is nowhere to record
            # it, so it is logged; the claim expires and the poll is retried later.
            logger.error("poll not stored: source=%r: %s", source.id, exc)
            outcome = PollOutcome(source.id, "failed", error=exc)
        outcome = dataclasses.replace(outcome, duration=time.monotonic() - started)
        self._report(source, outcome)
        return outcome

    async def _poll(self, source: Source) -> PollOutcome:
        now = self.clock()
        state = await asyncio.to_thread(self.store.get_state, source)
        if state.disabled_reason:
            logger.info("not polling disabled source %r: %s", source.id, state.disabled_reason)
            return PollOutcome(source.id, "disabled")
        attempt = dataclasses.replace(state, last_attempt=now)
        try:
            result = await self.fetcher.fetch(source, state)
            if result.not_modified:
                return await self._not_modified(source, attempt, result, now)
            return await asyncio.to_thread(self._store_result, source, attempt, result, now)
        except SourceError as exc:
            return await self._failed(source, attempt, exc, now)

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

    async def _not_modified(
        self, source: Source, state: SourceState, result: FetchResult, now: datetime
    ) -> PollOutcome:
        await asyncio.to_thread(
            self.store.save_state, self._success_state(source, state, result, now)
        )
        return PollOutcome(source.id, "not-modified")

    def _store_result(
        self, source: Source, state: SourceState, result: FetchResult, now: datetime
    ) -> PollOutcome:
        assert result.content is not None
        feed = parse_feed(result.content, url=result.url, headers=result.headers, source=source.id)
        entries = feed.entries[: self.max_entries]
        if len(feed.entries) > len(entries):
            logger.warning(
                "source %r sent %d entries; keeping the first %d",
                source.id,
                len(feed.entries),
                self.max_entries,
            )
        for problem in feed.problems:
            logger.warning("feed problem: source=%r url=%r: %s", source.id, result.url, problem)
        pairs, skipped = adapt_entries(entries, source, now)
        if feed.problems and entries and not pairs:
            # Broken markup that salvaged nothing usable is a broken feed, not an empty one.
            raise ParseError(
                f"malformed feed, no usable entry: {feed.problems[0]}",
                source=source.id,
                url=result.url,
            )
        new_state = self._success_state(source, state, result, now)
        if feed.problems:
            new_state = dataclasses.replace(
                new_state, last_error_kind="parse-warning", last_error=feed.problems[0]
            )
        counts = self.store.save_poll(source, pairs, new_state)
        counts = dataclasses.replace(counts, skipped=counts.skipped + skipped)
        return PollOutcome(source.id, "ok", counts, problems=feed.problems)

    async def _failed(
        self, source: Source, state: SourceState, error: SourceError, now: datetime
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
        await asyncio.to_thread(self.store.save_state, new_state)
        return PollOutcome(source.id, "failed", error=error)

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
