"""One poll of one source, top to bottom: fetch -> parse -> adapt -> dedupe/store.

This is the only module that knows the order of the stages.  It isolates
failures at two levels: a bad entry is logged with its guid and skipped, and a
failed source records the error and its backoff in its state row and returns an
outcome instead of raising, so one source never stops the others.

Network I/O runs on the event loop.  Parsing and cleaning (the CPU-bound
middle, :mod:`aggregator.normalize`) run in a process pool when there is one,
else in a thread, and the database transaction runs in a thread, so the HTTP
service sharing the loop stays responsive during a large poll.

Here the poll itself and its mirror failover; beside it, :mod:`.pages` fetches the
article pages of full-text sources in the background once the poll is stored (the
``pipeline`` contract in ``pyproject.toml``: the page fetcher never imports the poller).

Imports from the package: ``fetch``, ``normalize``, ``mirrors``, ``store``, ``metrics``,
``log``, ``timing``, ``errors``, ``types`` and its own ``pages``; never the scheduler or
the CLI above it (stages: ARCHITECTURE.md).
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
from typing import TypeVar

from aggregator import log, mirrors, timing
from aggregator.errors import (
    AggregatorError,
    GoneError,
    MirrorsFailedError,
    RateLimitedError,
    SourceError,
    StorageError,
)
from aggregator.fetch import Fetcher
from aggregator.metrics import DEFAULT as DEFAULT_METRICS
from aggregator.metrics import Metrics
from aggregator.normalize import Normalized, parse_and_adapt
from aggregator.parse.limits import DEFAULT_LIMITS, EntryLimits
from aggregator.pipeline.pages import PageFetcher, PageJob
from aggregator.store import Store
from aggregator.types import (
    UTC,
    FetchResult,
    PollCounts,
    Source,
    SourceState,
)

__all__ = ["PollOutcome", "Poller"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


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


class _GroupCommit:
    """Writes the ends of polls that stored no articles, many per transaction.

    Such a poll (a 304, a failure) writes one small state row, and a transaction of its
    own cost more CPU than the row (thread hop, BEGIN, COMMIT): most of a re-poll of
    unchanged feeds.  Ends that arrive while a batch is being written wait for the next
    one, so batches form under load with no timer, and a lone poll is written at once.
    Each poll still awaits its own commit: nothing counts as saved before it is.  A
    batch that fails is retried one poll at a time, so one bad row fails only its poll.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[tuple[SourceState, str | None, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def commit(self, state: SourceState, owner: str | None) -> None:
        done = asyncio.get_running_loop().create_future()
        self._pending.append((state, owner, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        # Shielded: a poll cancelled now (shutdown) still has its end written.
        await asyncio.shield(done)

    async def _write(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._write_batch(batch)
        finally:
            self._writer = None
            pending, self._pending = self._pending, []
            for *_, done in pending:  # cancelled with ends still queued
                done.cancel()

    async def _write_batch(
        self, batch: list[tuple[SourceState, str | None, asyncio.Future[None]]]
    ) -> None:
        try:
            await asyncio.to_thread(
                self.store.finish_polls, [(state, owner) for state, owner, _ in batch]
            )
        except StorageError as exc:
            if len(batch) == 1:
                _settle(batch[0][2], exc)
            else:
                for one in batch:  # one bad row must fail only its own poll
                    await self._write_batch([one])
            return
        except BaseException:
            for *_, done in batch:
                done.cancel()
            raise
        for *_, done in batch:
            _settle(done, None)


class _AllFailed(Exception):
    """Every URL of a source with mirrors failed: the error, and the state that
    records each URL's own failure."""

    def __init__(self, state: SourceState, error: SourceError) -> None:
        super().__init__(str(error))
        self.state = state
        self.error = error


def _unexpected(exc: Exception, source: Source, url: str) -> SourceError:
    """Anything else a response or its content raised (a RecursionError deep in a
    reader, an OverflowError on a header) is still this source's failure: it is
    recorded and backed off like any other, or the source would be claimed again
    every tick.  The traceback is for debugging, not for every poll at INFO."""
    logger.debug("unexpected error polling", exc_info=exc)
    detail = " ".join(str(exc).split())[:200]
    return SourceError(f"unexpected {type(exc).__name__}: {detail}", source=source.id, url=url)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():  # its poll was cancelled meanwhile
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


class Poller:
    """Polls sources through one shared fetcher into one store.

    ``executor`` (a process pool) runs :func:`parse_and_adapt`; without one it
    runs in a worker thread, which keeps the event loop free but uses one core.
    ``limits``: what one entry may carry (the settings' ``max_entry_bytes`` and
    ``max_title_bytes``), sent with every parse task.  ``pages_per_poll`` and
    ``pages_per_host`` bound the full-text page fetches (:class:`.pages.PageFetcher`).
    """

    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        *,
        max_entries: int = 500,
        limits: EntryLimits = DEFAULT_LIMITS,
        jitter: float = 0.1,
        backoff_cap: timedelta = timedelta(days=1),
        mirror_retry: timedelta = timedelta(days=1),
        pages_per_poll: int = 20,
        pages_per_host: int = 2,
        metrics: Metrics = DEFAULT_METRICS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.fetcher = fetcher
        self.max_entries = max_entries
        self.limits = limits
        self.jitter = jitter
        self.backoff_cap = backoff_cap
        self.mirror_retry = mirror_retry
        self.pages = PageFetcher(
            store, fetcher, self._cpu, per_poll=pages_per_poll, per_host=pages_per_host
        )
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()
        self._finishes = _GroupCommit(store)

    async def poll(
        self, source: Source, *, state: SourceState | None = None, owner: str | None = None
    ) -> PollOutcome:
        """Poll one source.  ``state``: as claimed (saves a read); ``owner``: the lease
        holder, whose lease the poll's final write gives back in the same transaction."""
        started = time.monotonic()
        with log.bound(source.id, source.url):
            try:
                outcome = await self._poll(source, state, owner)
            except StorageError as exc:
                # The database itself failed (restart, full disk): there is nowhere to
                # record it, so it is logged; the claim expires and the poll is retried.
                logger.error("poll not stored: %s", exc)
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
            logger.info("not polling a disabled source: %s", state.disabled_reason)
            return PollOutcome(source.id, "disabled")
        attempt = dataclasses.replace(state, last_attempt=now)
        try:
            parsed: Normalized | None = None
            if source.mirrors:
                attempt, result, parsed = await self._fetch_mirrors(source, attempt, now)
            else:
                result = await self.fetcher.fetch(source, state, inflate=False)
            if result.not_modified:
                new_state = self._success_state(source, attempt, result, now)
                await self._finish(new_state, owner)
                return PollOutcome(source.id, "not-modified", released=owner is not None)
            normalized = parsed or await self._normalize(source, result, now)
            jobs: list[PageJob] = []
            if source.fulltext:
                normalized, jobs = await asyncio.to_thread(
                    self.pages.with_pages, source, normalized, now
                )
            outcome = await asyncio.to_thread(
                self._store_result, source, attempt, result, normalized, now, owner
            )
            self.pages.start(source, jobs)
            return outcome
        except _AllFailed as failure:
            return await self._failed(source, failure.state, failure.error, now, owner)
        except SourceError as exc:
            return await self._failed(source, attempt, exc, now, owner)
        except StorageError:
            raise
        except Exception as exc:
            return await self._failed(
                source, attempt, _unexpected(exc, source, attempt.url), now, owner
            )

    async def _fetch_mirrors(
        self, source: Source, state: SourceState, now: datetime
    ) -> tuple[SourceState, FetchResult, Normalized | None]:
        """Fetch (and parse) the first of the source's URLs that answers with a feed.

        A body that is not a feed counts as that URL's failure too: a dead mirror
        domain often answers 200 with a parking page.  Every attempt is recorded in
        its URL's record; :class:`_AllFailed` carries them out when none answered.
        """
        state = dataclasses.replace(state, url_states=mirrors.reconcile(source, state))
        order = mirrors.attempt_order(state.url_states, now=now, retry=self.mirror_retry)
        if not order:
            gone = GoneError("every URL of the source is gone (HTTP 410)", source=source.id)
            raise _AllFailed(state, gone)
        for record in order:
            view = dataclasses.replace(
                state, url=record.url, etag=record.etag, last_modified=record.last_modified
            )
            try:
                result = await self.fetcher.fetch(source, view, inflate=False)
                normalized = (
                    None if result.not_modified else await self._normalize(source, result, now)
                )
            except StorageError:
                raise
            except Exception as exc:
                error = (
                    exc if isinstance(exc, SourceError) else _unexpected(exc, source, record.url)
                )
                logger.info("%s failed, trying the next URL: %s", record.url, error)
                self.metrics.record_url_failure(source.id, record.configured, error.kind)
                state = mirrors.with_record(state, mirrors.failed(record, error, now))
                continue
            record = mirrors.answered(record, result, now)
            state = mirrors.with_record(state, record)
            current = dataclasses.replace(
                state, url=record.url, etag=record.etag, last_modified=record.last_modified
            )
            return current, result, normalized
        failures = "; ".join(
            f"{record.url}: {record.error_kind}: {record.error}"
            for record in state.url_states
            if record.error is not None
        )
        raise _AllFailed(state, MirrorsFailedError(failures, source=source.id))

    async def _finish(self, state: SourceState, owner: str | None) -> None:
        """Save the state of a poll that stored no articles (and release, when leased)."""
        await self._finishes.commit(state, owner)

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
            failing_since=None,
            next_poll=timing.after_success(now, source.interval, jitter=self.jitter, rng=self.rng),
        )

    async def _normalize(self, source: Source, result: FetchResult, now: datetime) -> Normalized:
        assert result.content is not None
        work = functools.partial(
            parse_and_adapt,
            result.content,
            # Inflated where it is parsed (see Fetcher.fetch), as bounded as a fetch.
            encodings=result.encodings,
            max_bytes=self.fetcher.limits.max_bytes,
            url=result.url,
            headers=dict(result.headers),
            source=source,
            fetched_at=now,
            max_entries=self.max_entries,
            limits=self.limits,
        )
        return await self._cpu(work)

    async def _cpu(self, work: Callable[[], _T]) -> _T:
        """Run CPU-bound, picklable ``work`` off the event loop, in the pool if any."""
        if self.executor is not None:
            try:
                return await asyncio.get_running_loop().run_in_executor(self.executor, work)
            except BrokenExecutor:
                # A worker died (killed, out of memory): keep polling, on one core.
                logger.exception("parse pool broken; parsing in threads from now on")
                self.executor = None
        return await asyncio.to_thread(work)

    async def wait_for_pages(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the page fetches started so far (one-shot
        polls: the process is about to end)."""
        await self.pages.wait(timeout)

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
                "sent %d entries; kept the first %d", normalized.entries_sent, self.max_entries
            )
        for problem in normalized.problems:
            logger.warning("feed problem: %s", problem)
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
            failing_since=state.failing_since or now,
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
            logger.warning("poll failed in %.2fs: %s", outcome.duration, outcome.error)
        else:
            # A poll that changed nothing is the common case (thousands a day with many
            # feeds): DEBUG, so INFO shows what arrived and what went wrong.
            changed = counts.new or counts.updated or counts.merged or counts.skipped
            logger.log(
                logging.INFO if changed or outcome.problems else logging.DEBUG,
                "poll %s: new=%d updated=%d unchanged=%d merged=%d skipped=%d in %.2fs",
                outcome.status,
                counts.new,
                counts.updated,
                counts.unchanged,
                counts.merged,
                counts.skipped,
                outcome.duration,
            )
