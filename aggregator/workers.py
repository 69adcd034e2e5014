"""The parse workers: the pool that runs :func:`aggregator.normalize.parse_and_adapt`.

The daemon and ``aggregator poll`` parse in it; the workers themselves import only
:mod:`aggregator.normalize` (its initializer and tasks), never this module.

Imports from the package: ``normalize``, ``settings``, ``cpus`` (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import sys
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from aggregator.cpus import available_cpus
from aggregator.normalize import init_worker, warm_up
from aggregator.settings import Settings

__all__ = ["parse_pool"]


@contextlib.contextmanager
def parse_pool(settings: Settings) -> Iterator[Executor]:
    """Processes for the CPU-bound parse-and-clean step, or one thread of our own.

    Spawned, not forked: the daemon has threads (database, HTTP) by then, and a
    fork copies their locks in whatever state they are.  Without processes, parsing
    gets its own thread rather than the database's: it would hold those threads
    while claims and stores waited.
    """
    workers = settings.parse_processes
    if workers < 0:
        workers = available_cpus()  # the container's CPU quota, not the host's cores
        workers = workers if workers > 1 else 0
    if workers == 0:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse") as thread:
            yield thread
        return
    _keep_main_out_of_workers()
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(settings.log_level, settings.log_format),
    )
    try:
        list(pool.map(warm_up, range(workers)))
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _keep_main_out_of_workers() -> None:
    """Spare each spawned parse worker a run of the daemon's main module.

    ``spawn`` re-imports the parent's ``__main__`` in every child: by module name
    when it has one, by path otherwise.  The console script pip writes has no name,
    so every worker ran it and imported the whole CLI (SQLAlchemy, uvicorn, alembic:
    90 MB per idle worker instead of 27 MB).  Named as ``python -m aggregator``'s main,
    which ``spawn`` never re-imports, it stays out; the workers' tasks and
    initializer live in :mod:`aggregator.normalize` and never need it.
    """
    main = sys.modules["__main__"]
    main.__spec__ = importlib.util.find_spec("aggregator.__main__")
