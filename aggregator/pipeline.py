"""One poll of one source, top to bottom: fetch -> parse -> adapt -> dedupe/store.

This is the only module that knows the order of the stages.  It isolates
failures at two levels: a bad entry is logged with its guid and skipped, and a
failed source records the error and its backoff in its state row and returns an
outcome instead of raising, so one source never stops the others.

Network I/O runs on the event loop.  Parsing and cleaning (the CPU-bound
middle, :mod:`aggregator.normalize`) run in a process pool when there is one,
else in a thread, and the database transaction runs in a thread, so the HTTP
service sharing the loop stays responsive during a large poll.

Imports from the package: ``fetch``, ``normalize``, ``store``, ``metrics``, ``log``,
``timing``, ``errors``, ``types``; never the scheduler or the CLI above it (stages:
ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Executor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar
from urllib.parse import urlsplit

from aggregator import fulltext, log, mirrors, timing
from aggregator.errors import (
    AdapterError,
    AggregatorError,
    BlockedURLError,
    GoneError,
    HTTPStatusError,
    MirrorsFailedError,
    RateLimitedError,
    ResponseTooLargeError,
    SourceError,
    StorageError,
)
from aggregator.fetch import Fetcher
from aggregator.metrics import DEFAULT as DEFAULT_METRICS
from aggregator.metrics import Metrics
from aggregator.normalize import Normalized, parse_and_adapt
from aggregator.parse.limits import DEFAULT_LIMITS, EntryLimits
from aggregator.store import Store
from aggregator.types import (
    UTC,
    Article,
    FetchResult,
    Page,
    PollCounts,
    RawEntry,
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


@dataclass(frozen=True)
class _PageJob:
    """An article page to fetch: the entry, its article's link and first-fetched
    time, and the page stored before (its validators make the fetch conditional)."""

    raw: RawEntry
    link: str
    fetched: datetime
    page: Page | None


def _permanent(error: SourceError) -> bool:
    """Is a failed page fetch not worth retrying (the page is not coming back)?"""
    if isinstance(error, GoneError | BlockedURLError | ResponseTooLargeError):
        return True
    if isinstance(error, RateLimitedError):
        return False
    return isinstance(error, HTTPStatusError) and 400 <= error.status < 500 and error.status != 408


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
    ``max_title_bytes``), sent with every parse task.
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
        self.pages_per_poll = pages_per_poll
        self._page_hosts: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(pages_per_host)
        )
        self._page_tasks: set[asyncio.Task[None]] = set()
        self._pages_pending: set[tuple[str, str]] = set()  # (source id, link) in flight
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
                result = await self.fetcher.fetch(source, state)
            if result.not_modified:
                new_state = self._success_state(source, attempt, result, now)
                await self._finish(new_state, owner)
                return PollOutcome(source.id, "not-modified", released=owner is not None)
            normalized = parsed or await self._normalize(source, result, now)
            jobs: list[_PageJob] = []
            if source.fulltext:
                normalized, jobs = await asyncio.to_thread(
                    self._with_pages, source, normalized, now
                )
            outcome = await asyncio.to_thread(
                self._store_result, source, attempt, result, normalized, now, owner
            )
            self._start_pages(source, jobs)
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
                result = await self.fetcher.fetch(source, view)
                normalized = (
                    None if result.not_modified else await self._normalize(source, result, now)
                )
            except StorageError:
                raise
            except Exception as exc:
                error = (
                    exc if isinstance(exc, SourceError) else _unexpected(exc, source, record.url)
                )
                logger.info(
                    "source %r: %s failed, trying the next URL: %s", source.id, record.url, error
                )
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

    # ----------------------------------------------------------------- full text

    def _with_pages(
        self, source: Source, normalized: Normalized, now: datetime
    ) -> tuple[Normalized, list[_PageJob]]:
        """The poll's articles with stored pages applied, and the pages to fetch.

        Runs in a thread (text measuring, one read, re-adapting stored pages).  An
        entry whose page is stored gets its page body now, so a re-poll never puts
        the summary back; an entry whose page failed for good keeps its summary.
        """
        pairs = list(normalized.pairs)
        wanted = [
            i for i, (raw, _) in enumerate(pairs) if fulltext.wants_page(raw, source.fulltext)
        ]
        if not wanted:
            return normalized, []
        stored = self.store.pages_for(source.id, [pairs[i][1].link for i in wanted])
        jobs = []
        for i in wanted:
            raw, article = pairs[i]
            fetched = article.fetched or now
            page = stored.get(article.link)
            if page is not None and page.failure is not None:
                continue
            if page is not None and page.main is not None:
                try:
                    pairs[i] = (
                        raw,
                        fulltext.page_article(raw, page.main, source=source, fetched_at=fetched),
                    )
                except AdapterError as exc:
                    logger.warning("stored page not usable: %s", exc)
                if page.entry_updated == raw.updated:
                    continue
            jobs.append(_PageJob(raw, article.link, fetched, page))
        return dataclasses.replace(normalized, pairs=pairs), jobs

    def _start_pages(self, source: Source, jobs: list[_PageJob]) -> None:
        """Fetch up to ``pages_per_poll`` pages in the background; the rest wait for
        the next poll (they are still summaries then, so still wanted)."""
        started = 0
        for job in jobs:
            key = (source.id, job.link)
            if key in self._pages_pending:
                continue
            if started == self.pages_per_poll:
                logger.info(
                    "source %r: %d article pages left for the next poll",
                    source.id,
                    len(jobs) - started,
                )
                break
            started += 1
            self._pages_pending.add(key)
            task = asyncio.create_task(self._upgrade(source, job))
            self._page_tasks.add(task)
            task.add_done_callback(self._page_tasks.discard)

    async def wait_for_pages(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the page fetches started so far (one-shot
        polls: the process is about to end)."""
        if self._page_tasks:
            await asyncio.wait(set(self._page_tasks), timeout=timeout)

    async def _upgrade(self, source: Source, job: _PageJob) -> None:
        """Fetch one article page and store the article with its main content."""
        try:
            page = await self._fetch_page(source, job)
            if page is None:
                return
            upgraded: list[tuple[RawEntry, Article]] = []
            if page.main is not None:
                try:
                    upgraded.append(
                        (
                            job.raw,
                            fulltext.page_article(
                                job.raw, page.main, source=source, fetched_at=job.fetched
                            ),
                        )
                    )
                except AdapterError as exc:
                    page = dataclasses.replace(page, failure=f"page not usable: {exc}"[:500])
            await asyncio.to_thread(self.store.save_page, source, job.link, page, upgraded)
        except StorageError as exc:
            logger.error("page not stored: source=%r url=%r: %s", source.id, job.link, exc)
        except Exception:  # a bug met on a hostile page must not end the daemon's loop
            logger.exception("page fetch crashed: source=%r url=%r", source.id, job.link)
        finally:
            self._pages_pending.discard((source.id, job.link))

    async def _fetch_page(self, source: Source, job: _PageJob) -> Page | None:
        """The page as it is to be stored; ``None`` after a failure worth retrying."""
        old = job.page if job.page is not None and job.page.html is not None else None
        try:
            async with self._page_hosts[(urlsplit(job.link).hostname or "").lower()]:
                result = await self.fetcher.fetch_page(
                    job.link,
                    source=source,
                    etag=old.etag if old else None,
                    last_modified=old.last_modified if old else None,
                )
        except SourceError as exc:
            if not _permanent(exc):
                logger.info("page fetch failed, retried next poll: %s", exc)
                return None
            logger.warning("page fetch failed for good: %s", exc)
            return Page(job.link, failure=str(exc)[:500], entry_updated=job.raw.updated)
        if result.not_modified and old is not None:
            html = old.html or ""
        else:
            html = fulltext.decode_page(result.content or b"", result.headers)
        main = await self._cpu(
            functools.partial(fulltext.extract_main, html, url=result.url, adapter=source.adapter)
        )
        return Page(
            job.link,
            html=html,
            main=main,
            etag=result.etag,
            last_modified=result.last_modified,
            entry_updated=job.raw.updated,
            failure=None if main is not None else "no main content found on the page",
        )

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
