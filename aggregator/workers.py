"""The parse pool: worker processes started when the work needs them, stopped when idle.

A 4-source deployment brings a hundred entries every half hour: parsing them on one
thread of the daemon takes a fraction of a second, while a pool of worker processes
costs some 40 MB per process for as long as it runs.  A first poll of a thousand
feeds, or an archive import, is the opposite case: seconds of CPU that a second core
halves.  So :class:`ParsePool` parses on its thread until the entries parsed within
:data:`DEMAND_WINDOW` seconds pass a threshold, then starts the processes in the
background (work goes on on the thread meanwhile, so no poll waits for a spawn) and
hands them the work from then on, but for one task in :data:`HELP_EVERY` that comes
while every process has one waiting and the thread is idle: the thread takes that
one, so on two CPUs one process and the daemon share the work (a second process
would cost 40 MB for no more speed).  :data:`IDLE_SECONDS` after the last task, it
stops them again.  A caller that knows a burst is coming (:data:`BURST_POLLS` or
more sources polled at once: a first start, a one-shot poll of a long list) starts
them at once instead, so the burst is not parsed on one core while they spawn.
These numbers are constants, not settings: they trade memory against latency the
same way on every deployment.

The workers themselves (:mod:`aggregator.processes`) import only
:mod:`aggregator.normalize` (its initializer and tasks) and what their tasks name,
never this module.

Imports from the package: ``normalize``, ``processes``, ``settings``, ``cpus``, ``log`` (stages:
ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from aggregator import log
from aggregator.cpus import available_cpus
from aggregator.normalize import Normalized, init_worker, warm_up
from aggregator.processes import Processes

if TYPE_CHECKING:
    from aggregator.settings import Settings

__all__ = [
    "BURST_POLLS",
    "DEMAND_ENTRIES",
    "DEMAND_WINDOW",
    "IDLE_SECONDS",
    "ParsePool",
    "batched",
    "expect_polls",
    "parse_pool",
    "pool_size",
    "start_tokens",
]

logger = logging.getLogger(__name__)

#: Entries parsed on the thread within :data:`DEMAND_WINDOW` seconds that start the
#: processes: more than the four default sources bring in one round (about 150).
DEMAND_ENTRIES = 300
DEMAND_WINDOW = 60.0
#: Seconds without a task after which the processes are stopped.
IDLE_SECONDS = 60.0
#: Sources polled at once that start the processes before any entry is parsed: 16
#: feeds of the usual 20-50 entries are past :data:`DEMAND_ENTRIES` anyway, and the
#: second or more a spawn takes would be spent parsing them on one core.
BURST_POLLS = 16
#: The daemon's parse thread takes at most one task in this many, and only while every
#: process has one waiting: its share of the work must leave the event loop and the
#: database threads (the same GIL) their time.  Measured on two CPUs (one process and
#: the thread, 1,000-feed first poll): every task the thread could take, 833-1,077
#: entries/s with the daemon's CPU near 100%; 1 in 4, 933-1,113 (five runs, median
#: 1,052); 1 in 2, 999-1,191; two processes and no thread, 958-1,018 (three runs each).
#: Again on another machine, 1 in 2 and 1 in 4 taking turns (five runs each): 1,266-
#: 1,478 entries/s, median 1,325, against 1,204-1,330, median 1,257; no thread help,
#: 1,160 and 1,213 (the process alone is then the bottleneck).
HELP_EVERY = 2

_P = ParamSpec("_P")
_T = TypeVar("_T")


_A = TypeVar("_A")


def batched(
    executor: Executor, fn: Callable[[Sequence[_A]], list[_T]], chunk: int = 50
) -> Callable[[Sequence[_A]], Callable[[], list[_T]]]:
    """``fn`` over a sequence as tasks of ``chunk`` items on ``executor``: the call
    submits them and returns what waits for the results, in order.  One round trip of
    pickles per chunk rather than per item, the chunks spread over the pool's
    processes, and the caller free meanwhile (the search index's tokens, which the
    store writes for one batch while the pool makes the next one's)."""

    def start(items: Sequence[_A]) -> Callable[[], list[_T]]:
        futures = [executor.submit(fn, items[i : i + chunk]) for i in range(0, len(items), chunk)]
        return lambda: [result for future in futures for result in future.result()]

    return start


def start_tokens(
    executor: Executor | None,
) -> Callable[[Sequence[tuple[str, str]]], Callable[[], list[str]]]:
    """How a backlog indexer begins a batch's search tokens: on ``executor`` (a parse
    pool) when there is one, else at once on the calling thread."""
    from aggregator.search.text import tokens_of

    if executor is not None:
        return batched(executor, tokens_of)

    def now(texts: Sequence[tuple[str, str]]) -> Callable[[], list[str]]:
        made = tokens_of(texts)
        return lambda: made

    return now


def pool_size(settings: Settings, *, batch: bool = False) -> int:
    """Worker processes for ``parse_processes``.  For -1: one per usable CPU for a
    batch command (an import, a one-shot poll), whose memory is gone when it ends;
    one fewer for the daemon, which runs for months, and whose parse thread stands in
    for the last one (:data:`HELP_EVERY`).  None on one CPU."""
    workers = settings.parse_processes
    if workers < 0:
        # The container's CPU quota, not the host's cores.
        cpus = available_cpus()
        workers = 0 if cpus < 2 else cpus if batch else cpus - 1
    return workers


def entries_of(result: object) -> int:
    """The weight of a finished task: a poll's entries; any other task counts one."""
    return result.entries_sent if isinstance(result, Normalized) else 1


class ParsePool(Executor):
    """An executor for the CPU-bound parse-and-clean step: one thread of its own, and
    ``workers`` processes while there is enough work for them.

    Parsing gets a thread of its own rather than the database's: it would hold those
    threads while claims and stores waited.  The processes are new interpreters, not
    forks: the daemon has threads (database, HTTP) by then, and a fork copies their
    locks in whatever state they are.
    """

    def __init__(
        self,
        workers: int,
        *,
        log_level: str = "INFO",
        log_format: log.LogFormat = "text",
        demand: int = DEMAND_ENTRIES,
        window: float = DEMAND_WINDOW,
        idle: float = IDLE_SECONDS,
        weigh: Callable[[object], int] = entries_of,
        thread_helps: bool = False,
    ) -> None:
        self.workers = workers
        self._thread_helps = thread_helps
        self._initargs = (log_level, log_format)
        self._demand, self._window, self._idle, self._weigh = demand, window, idle, weigh
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse")
        self._lock = threading.Lock()
        self._recent: deque[tuple[float, int]] = deque()  # (when, entries) on the thread
        self._recent_total = 0
        self._pool: Processes | None = None  # set once its workers are warm
        self._starting: threading.Thread | None = None
        self._in_flight = 0  # tasks on the processes
        self._on_thread = 0  # tasks on the thread
        self._since_thread = 0
        self._idle_timer: threading.Timer | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        """Whether the processes are up and take the work."""
        return self._pool is not None

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            pool = self._pool
            self._since_thread += 1
            if (
                pool is not None
                and self._thread_helps
                and self._in_flight > self.workers
                and not self._on_thread
                and self._since_thread >= HELP_EVERY
            ):
                pool = None  # every process has a task waiting: the idle thread helps
                self._since_thread = 0
            if pool is None:
                self._on_thread += 1
            else:
                self._in_flight += 1
                self._cancel_idle_timer()
        if pool is None:
            future = self._thread.submit(fn, *args, **kwargs)
            future.add_done_callback(self._parsed_on_thread)
            return future
        try:
            future = pool.submit(fn, *args, **kwargs)
        except BaseException:
            self._task_done(None)
            raise
        future.add_done_callback(self._task_done)
        return future

    def start(self) -> None:
        """Start the processes now (in the background) if they are not up or starting:
        for a caller that knows a lot of work is coming, such as an import."""
        with self._lock:
            self._start_locked()

    def wait_started(self, timeout: float | None = None) -> bool:
        """Wait for a start under way; whether the processes are up."""
        starting = self._starting
        if starting is not None:
            starting.join(timeout)
        return self.running

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            self._cancel_idle_timer()
            starting, self._starting = self._starting, None
        if starting is not None:
            starting.join()  # it sees _closed and shuts its pool down itself
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)
        self._thread.shutdown(wait=wait, cancel_futures=cancel_futures)

    # -- demand ----------------------------------------------------------------------

    def _parsed_on_thread(self, future: Future[Any]) -> None:
        with self._lock:
            self._on_thread -= 1
        if future.cancelled() or future.exception() is not None:
            return
        now = time.monotonic()
        with self._lock:
            weight = self._weigh(future.result())
            self._recent.append((now, weight))
            self._recent_total += weight
            while self._recent and self._recent[0][0] < now - self._window:
                self._recent_total -= self._recent.popleft()[1]
            if self._recent_total > self._demand:
                self._start_locked()

    def _start_locked(self) -> None:
        if self.workers <= 0 or self._closed or self._pool is not None or self._starting:
            return
        starting = threading.Thread(target=self._spawn, name="parse-pool-start", daemon=True)
        starting.start()  # it takes the lock, held here, only once its workers are up
        self._starting = starting

    def _spawn(self) -> None:
        started = time.monotonic()
        try:
            pool = Processes(self.workers, initializer=init_worker, initargs=self._initargs)
        except OSError:
            logger.exception("parse pool did not start; parsing on one thread")
            with self._lock:
                self._starting = None
            return
        try:
            # Starting a worker (a new interpreter importing the parser and the cleaner)
            # takes a second or more on a busy machine; the thread goes on meanwhile.
            list(pool.map(warm_up, range(self.workers)))
        except Exception:
            logger.exception("parse pool did not start; parsing on one thread")
            pool.shutdown(wait=False, cancel_futures=True)
            with self._lock:
                self._starting = None
            return
        with self._lock:
            closed = self._closed
            if not closed:
                self._pool, self._starting = pool, None
                self._recent.clear()
                self._recent_total = 0
                self._arm_idle_timer()
        if closed:
            pool.shutdown(wait=True)
            return
        logger.info(
            "parse pool started: %d processes in %.1f s", self.workers, time.monotonic() - started
        )

    # -- idleness --------------------------------------------------------------------

    def _task_done(self, _: Future[Any] | None) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._in_flight == 0 and self._pool is not None and not self._closed:
                self._arm_idle_timer()

    def _arm_idle_timer(self) -> None:
        self._cancel_idle_timer()
        timer = threading.Timer(self._idle, self._stop_if_idle)
        timer.args, timer.name, timer.daemon = (timer,), "parse-pool-idle", True
        self._idle_timer = timer
        timer.start()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _stop_if_idle(self, timer: threading.Timer) -> None:
        with self._lock:
            if self._in_flight or self._closed or self._idle_timer is not timer:
                return  # a task came (or shutdown began) while the timer fired
            pool, self._pool, self._idle_timer = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=True)
            logger.info("parse pool stopped after %.0f s without work", self._idle)


def expect_polls(executor: Executor | None, polls: int) -> None:
    """``polls`` polls are about to run on ``executor``: if it is a parse pool and
    that is a burst (:data:`BURST_POLLS` or more), start its processes now."""
    if isinstance(executor, ParsePool) and polls >= BURST_POLLS:
        executor.start()


@contextlib.contextmanager
def parse_pool(settings: Settings, *, batch: bool = False) -> Iterator[ParsePool]:
    """The parse pool ``settings`` ask for (``parse_processes``; ``batch``: see
    :func:`pool_size`), shut down on exit.  Its thread helps the processes only where
    they leave a CPU free."""
    workers = pool_size(settings, batch=batch)
    pool = ParsePool(
        workers,
        log_level=settings.log_level,
        log_format=settings.log_format,
        thread_helps=0 < workers < available_cpus(),
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
