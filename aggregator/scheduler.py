"""The daemon's clock: four timers on the event loop that start polls, renew their
leases, catch the search index up and run retention.

Polling is driven by the durable state, not by in-memory timers: every
``tick`` seconds one job asks the store to *claim* the sources whose
``next_poll`` has come (a lease in the database), starts their polls within
the concurrency bound, and releases each claim with the next poll time when
the poll ends.  Because of that

* a restart resumes from the stored schedule: no burst of polls at start,
  no lost backoff;
* never two polls of one source at once, in this process or in another
  instance sharing the database; a crashed instance's claims expire after
  ``lease_seconds`` and another instance picks its sources up, while a running
  poll's claim is renewed every third of the lease, so a slow poll keeps it;
* each source keeps its own interval and jitter (``timing.after_success``);
* at most ``max_polls_per_host`` polls talk to one host at once: a claimed source
  whose host is busy waits in the queue while sources of other hosts go ahead.

Imports from the package: ``pipeline``, ``settings``, ``store`` and what lies below them
(``heap``, ``log``, ``errors``, ``types``); only the CLI imports it (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from aggregator import heap, log
from aggregator.errors import StorageError
from aggregator.pipeline import Poller, PollOutcome
from aggregator.settings import Settings
from aggregator.store import Store
from aggregator.types import UTC, Source, SourceState
from aggregator.workers import expect_polls, start_tokens

__all__ = ["INDEX_BACKLOG_MAX", "Daemon", "HostSlots", "host_of", "instance_id", "sync_sources"]

logger = logging.getLogger(__name__)

#: A search-index backlog this long is taken even while polls run.  A search reads
#: every waiting article (some 50 us each), so this bounds what a search during a
#: long burst of polls pays (a few seconds); below it, the index waits for a pause.
INDEX_BACKLOG_MAX = 50_000


def host_of(url: str) -> str:
    """The host a poll of ``url`` talks to, for the per-host limit."""
    return (urlsplit(url).hostname or url).lower()


class HostSlots:
    """The per-host limit, for the daemon and the one-shot poll alike: at most
    ``limit`` of our polls talk to one host at once, so a site carrying many of the
    sources is not hit by all of them together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._busy: Counter[str] = Counter()  # polls in flight, by host
        self._waiting: list[asyncio.Future[None]] = []

    def try_take(self, url: str) -> str | None:
        """Take a slot of ``url``'s host and return the host, or ``None`` when it is full."""
        host = host_of(url)
        if self._busy[host] >= self.limit:
            return None
        self._busy[host] += 1
        return host

    def give_back(self, host: str) -> None:
        self._busy[host] -= 1
        if not self._busy[host]:
            del self._busy[host]
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:  # each tries again; those of other hosts wait again
            if not waiter.done():
                waiter.set_result(None)

    @contextlib.asynccontextmanager
    async def hold(self, url: str) -> AsyncIterator[None]:
        """Wait for a slot of ``url``'s host, and give it back at the end."""
        while (host := self.try_take(url)) is None:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            await waiter
        try:
            yield
        finally:
            self.give_back(host)


def instance_id() -> str:
    """A name for this process in lease columns and logs: host, pid and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def _every(seconds: float, job: Callable[[], Awaitable[object]], *, first: float) -> None:
    """Run ``job`` ``first`` seconds from now, then every ``seconds`` on the same beat,
    until cancelled; a run that outlasts its interval merges the runs it missed into
    the next one, so the same job never runs twice at once.

    This is all the daemon asked of a scheduler library (APScheduler's interval jobs
    with ``coalesce`` and ``max_instances=1``): the schedule itself is state in the
    database, and four loops cost less at start-up and at rest (1.7 MB) than the
    library did.  A run that raises is logged and the beat goes on.
    """
    loop = asyncio.get_running_loop()
    due = loop.time() + first
    while True:
        await asyncio.sleep(max(0.0, due - loop.time()))
        try:
            await job()
        except Exception:
            logger.exception(
                "%s failed; it runs again in %g s", getattr(job, "__name__", job), seconds
            )
        due += seconds
        behind = loop.time() - due
        if behind > 0:
            due += math.ceil(behind / seconds) * seconds


async def sync_sources(store: Store, sources: Sequence[Source]) -> None:
    """Reset the state of sources whose URL was edited in the configuration, and say so."""
    for old, source in await asyncio.to_thread(store.sync_sources, sources):
        with log.bound(source.id, source.url):
            logger.info(
                "configured URL changed (was %s); its polling state starts afresh",
                old.configured_url,
            )


class _FailureReport:
    """One log line for a run of the same failure, at most every ``interval`` seconds.

    A full disk fails the claim every tick (5 s): a traceback each time buried the
    log.  The first failure is logged at once, repeats are counted and reported
    with their count, and the recovery is said once.
    """

    def __init__(self, what: str, interval: float = 60.0) -> None:
        self.what = what
        self.interval = interval
        self.failures = 0  # in the current run of failures
        self._unreported = 0
        self._last_report = float("-inf")

    def failed(self, error: Exception) -> None:
        self.failures += 1
        self._unreported += 1
        now = time.monotonic()
        if now - self._last_report < self.interval:
            return
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        logger.error(
            "%s failed (%d times since the last report, %d in a row): %s",
            self.what,
            self._unreported,
            self.failures,
            first_line,
        )
        self._unreported = 0
        self._last_report = now

    def succeeded(self) -> None:
        if self.failures:
            logger.info("%s works again after %d failures", self.what, self.failures)
        self.failures = self._unreported = 0
        self._last_report = float("-inf")


class Daemon:
    """Claims due sources and polls them until asked to stop."""

    def __init__(
        self,
        settings: Settings,
        sources: Sequence[Source],
        store: Store,
        poller: Poller,
        *,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.sources = {source.id: source for source in sources if source.enabled}
        self.store = store
        self.poller = poller
        self.tick = settings.tick_seconds
        self.owner = owner or instance_id()
        self.in_flight: dict[str, asyncio.Task[PollOutcome]] = {}
        self.lease = timedelta(seconds=settings.lease_seconds)
        self._timers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._claiming: asyncio.Future[list[SourceState]] | None = None
        # Claimed, not yet started: a batch per claim keeps claims rare when many
        # sources are due at once (one round trip per batch, not per poll).  The queue
        # is refilled to ``_batch`` only once it is down to ``_low_water``, so a claim
        # takes many sources, not the one or two that finished meanwhile.
        self.queue: deque[tuple[SourceState, float]] = deque()  # (claimed state, when)
        self._claim_lock = asyncio.Lock()
        self._batch = 4 * settings.max_concurrent_polls
        self._low_water = settings.max_concurrent_polls // 2
        self._all_claimed = False  # the last claim found fewer due sources than it asked
        self.hosts = HostSlots(settings.max_polls_per_host)
        self._background: set[asyncio.Task[object]] = set()
        self.claim_failures = _FailureReport("claiming due sources")
        self.index_failures = _FailureReport("updating the search index")
        self._indexing = False

    async def poll_due(self) -> list[str]:
        """Claim what is due (a batch, when the queue runs low) and start what fits."""
        if self._stopping or not self.sources or self._claim_lock.locked():
            return []
        async with self._claim_lock:
            self._start_queued()
            if len(self.queue) > self._low_water:
                return []
            want = self._batch - len(self.queue)
            try:
                claimed = await self._claim(want)
            except StorageError as exc:
                # A full disk or a lost database: nothing to poll this tick; the next
                # tick tries again.  Reported in one line, not a traceback per tick.
                self.claim_failures.failed(exc)
                return []
            self.claim_failures.succeeded()
            # Fewer than asked: nothing else is due now, so finished polls need not
            # ask again; the next tick will.
            self._all_claimed = len(claimed) < want
            expect_polls(self.poller.executor, len(claimed))
            now = time.monotonic()
            self.queue.extend((state, now) for state in claimed)
            self._start_queued()
            return [state.source_id for state in claimed]

    async def _claim(self, limit: int) -> list[SourceState]:
        # Shielded: a stop may cancel this job mid-claim, but the claim still commits
        # in its thread; shutdown() awaits it and releases what it took.
        self._claiming = asyncio.ensure_future(
            asyncio.to_thread(
                self.store.claim_due_states,
                [self.sources[source_id] for source_id in sorted(self.sources)],
                now=datetime.now(UTC),
                owner=self.owner,
                lease=self.lease,
                limit=limit,
            )
        )
        try:
            claimed = await asyncio.shield(self._claiming)
        except asyncio.CancelledError:
            if self._stopping:  # the stop cancelled this job: an expected end, not an error
                return []
            raise
        except StorageError:
            self._claiming = None  # it took nothing: nothing for shutdown() to release
            raise
        if self._stopping:
            return []  # shutdown() releases what this claim took
        self._claiming = None
        return claimed

    def _start_queued(self) -> None:
        # A claim that waited half its lease in the queue may soon be another
        # instance's: let it go (it is claimed again when due) rather than race.
        stale_before = time.monotonic() - self.lease.total_seconds() / 2
        host_busy: list[tuple[SourceState, float]] = []
        while self.queue and len(self.in_flight) < self.settings.max_concurrent_polls:
            state, claimed_at = self.queue.popleft()
            if claimed_at < stale_before:
                self._spawn(self._release(state.source_id))
                continue
            host = self.hosts.try_take(state.url)
            if host is None:
                # Its host has enough polls of ours; others go first, it keeps its place.
                host_busy.append((state, claimed_at))
                continue
            source = self.sources.get(state.source_id)
            if source is None:  # removed from the configuration since it was claimed
                self.hosts.give_back(host)
                self._spawn(self._release(state.source_id))
                continue
            task = asyncio.create_task(self._poll_and_release(source, state, host))
            self.in_flight[source.id] = task
        self.queue.extendleft(reversed(host_busy))

    def _spawn(self, work: Coroutine[object, object, object]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)  # asyncio keeps only weak references to tasks
        task.add_done_callback(self._background.discard)

    async def _poll_and_release(self, source: Source, state: SourceState, host: str) -> PollOutcome:
        released = False
        try:
            outcome = await self.poller.poll(source, state=state, owner=self.owner)
            released = outcome.released
            return outcome
        finally:
            self.in_flight.pop(source.id, None)
            self.hosts.give_back(host)
            if not released:  # disabled, cancelled or the final write failed
                await self._release(source.id)
            if not self._stopping:
                # A slot is free: start the next claimed source now, and claim more
                # when the queue runs low, rather than waiting for the next tick.
                self._start_queued()
                refill = len(self.queue) <= self._low_water and not self._all_claimed
                if refill and not self._claim_lock.locked():
                    self._spawn(self.poll_due())
            if not self.in_flight and not self.queue:
                self._rest()  # the round is over

    def _rest(self) -> None:
        """Hand back what the work just done freed, as the daemon is about to wait:
        the idle database connections' caches, then the heap's free pages."""
        self.store.release_idle()
        heap.trim()

    async def _release(self, source_id: str) -> None:
        try:
            await asyncio.to_thread(self.store.release, source_id, self.owner)
        except StorageError as exc:  # a full disk, a lost database: one line, not a traceback
            logger.error(
                "cannot release source=%s; its claim expires by itself: %s",
                source_id,
                str(exc).splitlines()[0],
            )
        except Exception:
            # The lease still expires on its own; say so rather than hide it.
            logger.exception("cannot release source=%s; its claim expires by itself", source_id)

    async def replace_sources(self, sources: Sequence[Source]) -> None:
        """Poll ``sources`` from now on (a reload): added ones are claimed when due,
        removed ones are no longer claimed, changed ones are polled as they are now.

        Polls already running finish as they started; a removed source's claims
        still waiting in the queue are handed back.
        """
        enabled = {source.id: source for source in sources if source.enabled}
        added = sorted(enabled.keys() - self.sources.keys())
        removed = sorted(self.sources.keys() - enabled.keys())
        changed = sorted(
            source_id
            for source_id in enabled.keys() & self.sources.keys()
            if enabled[source_id] != self.sources[source_id]
        )
        await sync_sources(self.store, list(enabled.values()))
        self.sources = enabled
        self._all_claimed = False  # an added source may be due at once
        logger.info(
            "sources reloaded: %d polled; added %s; removed %s; changed %s",
            len(enabled),
            ", ".join(added) or "none",
            ", ".join(removed) or "none",
            ", ".join(changed) or "none",
        )

    async def index_soon(self) -> None:
        """Start taking the search index's backlog unless that is under way (every
        tick)."""
        if not self._indexing and not self._stopping:
            self._indexing = True
            self._spawn(self.index_behind())

    async def index_behind(self) -> None:
        """Index the articles stored since the index last caught up, a batch per
        transaction, while no poll runs (or the backlog passes
        :data:`INDEX_BACKLOG_MAX`).

        The index is written behind the polls (``store._search``): in a burst of
        polls the store's thread stores, and indexes in the pause after it.  A poll
        that starts meanwhile waits for one batch at most.
        """
        started, done = time.monotonic(), 0
        executor = self.poller.executor  # the parse pool: tokens are CPU work too
        # Left when a poll starts: the batch it began ahead is dropped (its articles
        # stay queued), at most one batch of tokens made twice.
        indexer = self.store.backlog_indexer(start_tokens(executor))
        try:
            while not self._stopping:
                if self.in_flight or self.queue:
                    backlog = await asyncio.to_thread(self.store.search_backlog)
                    if backlog <= INDEX_BACKLOG_MAX:
                        break
                indexed = await asyncio.to_thread(indexer.step)
                if not indexed:
                    break
                done += indexed
        except Exception as exc:  # a full disk, a broken pool: one line, retried next tick
            self.index_failures.failed(exc)
            return
        finally:
            self._indexing = False
        self.index_failures.succeeded()
        if done and not self.in_flight and not self.queue:
            self._rest()  # the index took its batches after the round's end: theirs too
        if done:
            logger.log(
                logging.INFO if time.monotonic() - started > 1 else logging.DEBUG,
                "search index: %d articles indexed in %.1f s",
                done,
                time.monotonic() - started,
            )

    async def renew_leases(self) -> None:
        """Extend the claims of the polls still running, so none outlasts its lease."""
        running = sorted(self.in_flight)
        if not running:
            return
        until = datetime.now(UTC) + self.lease
        try:
            taken = await asyncio.to_thread(self.store.renew, running, self.owner, until=until)
        except StorageError as exc:
            logger.error("cannot renew the leases of %d running polls: %s", len(running), exc)
            return
        for source_id in sorted(taken):
            with log.bound(source_id, self.sources[source_id].url):
                logger.warning(
                    "its lease ran out during the poll and another instance claimed it; "
                    "both may poll it this once (lease_seconds=%g)",
                    self.lease.total_seconds(),
                )

    async def prune(self) -> None:
        """Apply the retention the user set (none by default), logging per source
        what went and what stayed."""
        per_source = {
            source.id: source.retention for source in self.sources.values() if source.retention
        }
        if self.settings.retention is None and not per_source:
            return
        report = await asyncio.to_thread(
            self.store.prune,
            now=datetime.now(UTC),
            default_retention=self.settings.retention,
            per_source=per_source,
        )
        for summary in report.sources:
            if summary.pruned:
                logger.info("retention: %s", summary.describe())
        logger.info(
            "retention: pruned %d articles from %d of %d sources",
            report.pruned,
            sum(1 for summary in report.sources if summary.pruned),
            len(report.sources),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set, then let in-flight polls finish (bounded)."""
        await sync_sources(self.store, list(self.sources.values()))
        lease = self.lease.total_seconds()
        prune_every = self.settings.prune_interval
        self._timers = [
            asyncio.create_task(_every(self.tick, self.poll_due, first=0)),
            asyncio.create_task(_every(self.tick, self.index_soon, first=self.tick)),
            asyncio.create_task(_every(lease / 3, self.renew_leases, first=lease / 3)),
            asyncio.create_task(_every(prune_every, self.prune, first=min(60, prune_every))),
        ]
        logger.info(
            "daemon %s started: %d sources, up to %d polls at once",
            self.owner,
            len(self.sources),
            self.settings.max_concurrent_polls,
        )
        try:
            await stop.wait()
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        self._stopping = True
        for timer in self._timers:
            timer.cancel()
        unstarted = [state.source_id for state, _ in self.queue]
        self.queue.clear()
        if self._claiming is not None:
            # A claim that was under way when the stop came.
            unstarted += [state.source_id for state in await self._claiming]
        # Hand back what was claimed but never started, rather than leaving it
        # leased (and unpolled) until the lease runs out.
        for source_id in unstarted:
            if source_id not in self.in_flight:
                await self._release(source_id)
        if self._background:  # releases of stale claims, refills that found us stopping
            await asyncio.wait(set(self._background), timeout=self.settings.shutdown_grace)
        tasks = list(self.in_flight.values())
        if tasks:
            logger.info("waiting up to %ss for %d polls", self.settings.shutdown_grace, len(tasks))
            done, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
                logger.warning("cancelled %d polls still running at shutdown", len(pending))
        logger.info("daemon %s stopped", self.owner)
