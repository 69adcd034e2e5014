"""What the benchmark runs in child processes, one job per process.

``python -m bench.workers JOB CONFIG.json RESULT.json``; each job writes its figures
as JSON.  A fresh process per job means every figure includes what a daemon really
pays (imports, connections, caches warming up) and that a peak RSS is the job's own
(``VmHWM`` of the child), not the runner's.

Our side goes through the daemon's own objects, configured as ``aggregator run``
configures them: :class:`Settings` defaults, :class:`FetchLimits` from the settings,
one :class:`Fetcher`, a :class:`Poller`, and the lease-driven :class:`Daemon`, whose
``poll_due`` (claim -> poll -> release) is called again as soon as a poll slot frees
instead of on the ``tick_seconds`` timer, so the figure is the pipeline's capacity,
not the timer's.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import logging
import os
import pstats
import sqlite3
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from bench.dbgen import make_due

__all__ = ["main"]


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def _proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmHWM / VmRSS of a process (this one by default) in bytes."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                found[name] = int(value.split()[0]) * 1024
    return found


def _daemon_logging() -> None:
    """What the CLI does (INFO, noisy libraries at WARNING); stderr goes to a log file."""
    from aggregator import log

    log.setup("INFO")


class _Profiles:
    """cProfile on the event-loop thread *and* on every worker thread of ``to_thread``."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []

    def _start_thread(self) -> None:
        # Per-thread CPU time: a wall-clock timer would charge GIL waits to whatever
        # C call (lxml, nh3, sqlite) happened to be waiting for the GIL.
        profile = cProfile.Profile(time.thread_time)
        self.profiles.append(profile)
        profile.enable()

    def executor(self, threads: int) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(threads, initializer=self._start_thread)

    def report(self, main: cProfile.Profile, path: Path, title: str) -> None:
        main.disable()
        for profile in self.profiles:
            # Each worker thread's profiler is still installed on its (now idle) thread;
            # snapshotting reads the stats gathered so far.
            profile.snapshot_stats()
        with path.open("w") as out:
            out.write(f"# {title}\n\n## event-loop thread (fetch, scheduling), by cumulative\n")
            stats = pstats.Stats(main, stream=out)
            stats.sort_stats("cumulative").print_stats(35)
            if self.profiles:
                out.write("\n## to_thread workers (parse, adapt, store), by cumulative\n")
                stats = pstats.Stats(*self.profiles, stream=out)
                stats.sort_stats("cumulative").print_stats(60)
                out.write("\n## to_thread workers, by own time\n")
                stats.sort_stats("tottime").print_stats(40)
            out.write("\n## event-loop thread, by own time\n")
            pstats.Stats(main, stream=out).sort_stats("tottime").print_stats(30)


# --------------------------------------------------------------------------- ours


def poll_ours(config: dict[str, Any]) -> dict[str, Any]:
    _daemon_logging()
    from aggregator.cli._wiring import (
        _database_threads,
        _limits,
        _poller,
        _use_database_threads,
    )
    from aggregator.fetch import Fetcher
    from aggregator.pipeline import PollOutcome
    from aggregator.scheduler import Daemon
    from aggregator.settings import Settings
    from aggregator.store import Store
    from aggregator.types import Source
    from aggregator.workers import parse_pool

    settings = Settings(
        database_url=f"sqlite:///{config['db']}",
        allow_private_addresses=True,  # the corpus is on 127.0.0.1
        # All feeds share that one host but stand for a thousand hosts: the per-host
        # limit would make this a benchmark of two connections.
        max_polls_per_host=8,
        **config.get("settings", {}),
    )
    fulltext = bool(config.get("fulltext"))
    sources = [
        Source(
            id=feed_id,
            name=name,
            url=config["base_url"] + f"/rss/{feed_id}.xml",
            adapter=kind,
            fulltext=fulltext,
        )
        for feed_id, kind, name in config["feeds"]
    ]
    store = Store.open(settings.database_url)
    index_cpu = _time_index_writes()
    limits = _limits(settings)
    fetcher_class = _local_pages(Fetcher, config["base_url"]) if fulltext else Fetcher
    profiles = _Profiles() if config.get("profile") else None
    main_profile = cProfile.Profile(time.thread_time) if profiles else None
    rss_before = _proc_status()

    async def run() -> list[PollOutcome]:
        if profiles is None:
            _use_database_threads(store)  # as `aggregator run` sets it up
        else:
            threads = _database_threads(store)
            asyncio.get_running_loop().set_default_executor(profiles.executor(threads))
        with parse_pool(settings) as pool:  # as `aggregator run` sets it up
            async with fetcher_class(limits) as fetcher:
                poller = _poller(settings, store, fetcher, pool)
                outcomes: list[PollOutcome] = []
                poll = poller.poll

                async def recorded(source: Source, **options: Any) -> PollOutcome:
                    outcome = await poll(source, **options)
                    outcomes.append(outcome)
                    return outcome

                poller.poll = recorded  # type: ignore[method-assign]
                daemon = Daemon(settings, sources, store, poller)

                # The daemon refills itself as polls finish; only its tick is replaced
                # here (a claim whenever it has gone idle), so the figure measures
                # the pipeline, not the timer.
                def busy() -> bool:
                    return bool(daemon.in_flight or daemon.queue or daemon._background)

                async def one_round() -> None:
                    if main_profile is not None:
                        main_profile.enable()
                    wall, cpu, pool = time.perf_counter(), _cpu(), _pool_cpu()
                    index_cpu[0] = 0.0
                    while True:
                        claimed = await daemon.poll_due()
                        while busy():
                            await asyncio.sleep(0.005)
                        if not claimed and not busy():
                            break
                    await poller.wait_for_pages(3600)  # full text: every page upgraded
                    walls.append(time.perf_counter() - wall)
                    cpus.append(_cpu() - cpu)
                    pool_cpus.append(_pool_cpu() - pool)
                    index_cpus.append(index_cpu[0])
                    if main_profile is not None:
                        main_profile.disable()

                await one_round()
                for _ in range(config.get("rounds", 1) - 1):
                    # The same process polls again, as the running daemon does every
                    # interval (setup, not timed: every source due again).
                    make_due(Path(config["db"]))
                    await one_round()
                catch_up.update(await asyncio.to_thread(_catch_up, store, poller.executor))
                await daemon.shutdown()
                workers.extend(_proc_status(pid).get("VmHWM", 0) for pid in _children())
                return outcomes

    catch_up: dict[str, float] = {}
    workers: list[int] = []  # VmHWM of each parse-pool process
    walls: list[float] = []  # per round
    cpus: list[float] = []
    pool_cpus: list[float] = []  # of the parse pool's processes, per round
    index_cpus: list[float] = []  # of cpus, spent writing the search index
    children_before = _children_cpu()
    outcomes = asyncio.run(run())
    wall, cpu = walls[0], cpus[0]
    # The pool was joined: all its CPU, the catch-up's tokens included.
    workers_total = _children_cpu() - children_before
    if profiles is not None and main_profile is not None:
        profiles.report(main_profile, Path(config["profile"]), config.get("title", "poll"))
    store.close()
    statuses: dict[str, int] = {}
    for outcome in outcomes:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    counts = {
        name: sum(getattr(outcome.counts, name) for outcome in outcomes)
        for name in ("new", "updated", "unchanged", "merged", "skipped")
    }
    errors = [f"{o.source_id}: {o.error}" for o in outcomes if o.error is not None][:5]
    return {
        "wall": wall,
        "cpu": cpu,
        "walls": walls,
        "cpus": cpus,
        "index_cpu": index_cpus[0],
        "index_cpus": index_cpus,
        **catch_up,
        "polls": len(outcomes),
        "statuses": statuses,
        "counts": counts,
        "errors": errors,
        "rss_start": rss_before.get("VmRSS", 0),
        "workers_hwm": workers,
        # The first round's: what the poll itself cost the pool.  (Until 2026-12 this
        # was ``workers_total``, which counts the index catch-up's tokens too.)
        "workers_cpu": pool_cpus[0],
        "workers_cpus": pool_cpus,
        "workers_total_cpu": workers_total,
        **_proc_status(),
    }


def _local_pages(base: Any, base_url: str) -> Any:
    """A Fetcher whose article pages all come from the benchmark server.

    The corpus's item links name the real sites; a full-text poll must fetch a page
    for each, so each link is mapped to ``/page/<hash>`` on the loopback server (the
    same page for all: the figure is the cost per page, fetched, extracted, stored).
    """
    import hashlib

    class LocalPages(base):  # type: ignore[misc]
        async def fetch_page(self, url: str, **options: Any) -> Any:
            local = f"{base_url}/page/{hashlib.sha1(url.encode()).hexdigest()}"
            return await super().fetch_page(local, **options)

    return LocalPages


def _time_index_writes() -> list[float]:
    """Count the CPU the store's search-index writes inside a poll take (queueing the
    new articles; a one-item list, reset by the caller): the index's share of a
    poll, without a second daemon lacking it.  The index itself is written after
    the poll (see ``_catch_up``)."""
    from aggregator.store import _search

    spent = [0.0]

    def timed(write: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return write(*args, **kwargs)
            finally:
                spent[0] += time.thread_time() - started

        return wrapper

    _search.index = timed(_search.index)
    _search.reindex = timed(_search.reindex)
    return spent


def _catch_up(store: Any, executor: Any) -> dict[str, float]:
    """What follows a burst of stores: the search index takes the queue, a batch per
    transaction, its tokens made on the parse pool when one runs (as the daemon and
    the commands do).  CPU: this process and its pool's processes, read from /proc
    (they are still alive, so ``os.times`` does not count them yet)."""
    from aggregator.workers import start_tokens

    indexer = store.backlog_indexer(start_tokens(executor))
    wall, cpu, indexed = time.perf_counter(), _tree_cpu(), 0
    while done := indexer.step():
        indexed += done
    return {
        "catch_up_wall": time.perf_counter() - wall,
        "catch_up_cpu": _tree_cpu() - cpu,
        "catch_up_articles": indexed,
    }


def _tree_cpu() -> float:
    """CPU seconds of this process and its live children."""
    return _cpu() + _pool_cpu()


def _pool_cpu() -> float:
    """CPU seconds of this process's live children (the parse pool), from /proc:
    ``os.times`` counts a child only once it has been waited for."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in _children():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _children() -> list[int]:
    """This process's child processes (the parse pool), from /proc."""
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        pids += [int(pid) for pid in (task / "children").read_text().split()]
    return pids


# --------------------------------------------------------------------------- import


def import_ours(config: dict[str, Any]) -> dict[str, Any]:
    """``aggregator import`` of an archive folder, as the command runs it."""
    _daemon_logging()
    from aggregator import importer
    from aggregator.settings import Settings
    from aggregator.store import Store
    from aggregator.types import Source
    from aggregator.workers import parse_pool
    from bench.corpus import NAMES

    settings = Settings(database_url=f"sqlite:///{config['db']}", **config.get("settings", {}))
    sources = [
        Source(id=kind, name=name, url=f"https://feedx.net/rss/{kind}.xml", adapter=kind)
        for kind, name in NAMES.items()
    ]
    skipped: list[str] = []
    children_before = _children_cpu()
    # As `aggregator import` sets it up: a batch command's pool.
    with Store.open(settings.database_url) as store, parse_pool(settings, batch=True) as pool:
        wall, cpu = time.perf_counter(), _cpu()
        files = importer.archive_files([Path(config["archive"])])
        imported = importer.import_files(
            files, store, pool, sources=sources, forced=None, skipped=skipped.append
        )
        wall, cpu = time.perf_counter() - wall, _cpu() - cpu
        workers = [_proc_status(pid).get("VmHWM", 0) for pid in _children()]
        catch_up = _catch_up(store, pool)  # what the command does before it exits
    counts = imported.counts
    return {
        "files": len(files),
        "wall": wall,
        "cpu": cpu,
        "workers_cpu": _children_cpu() - children_before,
        "VmHWM": _proc_status()["VmHWM"],
        "workers_hwm": workers,
        "counts": {"new": counts.new, "duplicates": counts.skipped, "skipped": imported.skipped},
        "skipped": skipped[:5],
        **catch_up,
    }


# --------------------------------------------------------------------------- reader


def poll_reader(config: dict[str, Any]) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING)
    from reader import make_reader

    reader = make_reader(config["db"])
    if config.get("add"):
        for url in config["urls"]:
            reader.add_feed(url, exist_ok=True)
    rss_before = _proc_status()
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(config.get("rounds", 1)):  # the same process updates again
        wall, cpu = time.perf_counter(), _cpu()
        reader.update_feeds(workers=config["workers"], scheduled=False)
        walls.append(time.perf_counter() - wall)
        cpus.append(_cpu() - cpu)
    broken = [f"{feed.url}: {feed.last_exception}" for feed in reader.get_feeds(broken=True)]
    total = reader.get_entry_counts().total
    reader.close()
    return {
        "wall": walls[0],
        "cpu": cpus[0],
        "walls": walls,
        "cpus": cpus,
        "entries_stored": total,
        "broken": broken[:5],
        "rss_start": rss_before.get("VmRSS", 0),
        **_proc_status(),
    }


# --------------------------------------------------------------------------- export


def export(config: dict[str, Any]) -> dict[str, Any]:
    from aggregator.store import Store

    url = f"sqlite:///{config['db']}"
    Store.open(url).close()  # migrations checked once, as at daemon start
    source = config["source"]
    result: dict[str, Any] = {}

    def timed(call: Any) -> float:
        started = time.perf_counter()
        rows = call()
        elapsed = time.perf_counter() - started
        assert rows, "no rows"
        return elapsed

    for label, selection in (("merged", None), ("source", [source])):
        # A new Store (new engine): new connection *and* empty statement cache.
        new_store = []
        for _ in range(config.get("cold_repeats", 5)):
            store = Store.open(url, migrate=False)
            new_store.append(timed(partial(store.latest, sources=selection, limit=100)))
            store.close()
        store = Store.open(url, migrate=False)
        store.latest(sources=selection, limit=100)  # statements compiled and cached
        # The daemon's case: same engine, the pool opens a new SQLite connection.
        new_connection = []
        for _ in range(config.get("cold_repeats", 5)):
            store.engine.dispose()
            new_connection.append(timed(partial(store.latest, sources=selection, limit=100)))
        warm = [
            timed(partial(store.latest, sources=selection, limit=100))
            for _ in range(config.get("warm_repeats", 30))
        ]
        stamp = [
            timed(partial(lambda s, sel: [s.last_updated(sel)], store, selection))
            for _ in range(config.get("warm_repeats", 30))
        ]
        store.close()
        result[label] = {
            "first": statistics.median(new_connection),
            "first_new_store": statistics.median(new_store),
            "warm": statistics.median(warm),
            "last_updated": statistics.median(stamp),
        }
    return result


def _timed_search(store: Any, query: Any) -> float:
    started = time.perf_counter()
    store.search(query, limit=50)
    return time.perf_counter() - started


def search(config: dict[str, Any]) -> dict[str, Any]:
    """Latest 50 matches of each query: on a new connection and warm; and how much of
    the database file the search index takes."""
    from aggregator.search import parse_query
    from aggregator.store import Store, _search

    url = f"sqlite:///{config['db']}"
    Store.open(url).close()
    result: dict[str, Any] = {}
    store = Store.open(url, migrate=False)
    for text in config["queries"]:
        timed = partial(_timed_search, store, parse_query(text))
        found = len(store.search(parse_query(text), limit=50))  # statements compiled
        new_connection = []
        for _ in range(config.get("cold_repeats", 5)):
            store.engine.dispose()  # the daemon's case: the pool opens a new connection
            new_connection.append(timed())
        warm = [timed() for _ in range(config.get("warm_repeats", 20))]
        result[text] = {
            "found": found,
            "first": statistics.median(new_connection),
            "warm": statistics.median(warm),
        }
    store.close()
    with sqlite3.connect(config["db"]) as conn:
        sizes = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    conn.close()
    result["index_bytes"] = sum(size for name, size in sizes if name.startswith(_search.TABLE))
    result["total_bytes"] = sum(size for _, size in sizes)
    return result


def serve_http(config: dict[str, Any]) -> dict[str, Any]:
    """Run the real uvicorn server from serve.build_server until stdin closes."""
    _daemon_logging()
    from aggregator.serve import build_server, create_app
    from aggregator.store import Store

    store = Store.open(f"sqlite:///{config['db']}", migrate=False)
    port = config["port"]
    app = create_app(
        store,
        base_url=f"http://127.0.0.1:{port}",
        sources={f"b{n:03d}": f"bulk {n}" for n in range(1000)},
    )
    server = build_server(app, "127.0.0.1", port)

    async def run() -> None:
        serving = asyncio.create_task(server.serve())
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        server.stop()
        await serving

    asyncio.run(run())
    store.close()
    return {"cpu": _cpu()}


JOBS = {
    "poll_ours": poll_ours,
    "poll_reader": poll_reader,
    "export": export,
    "search": search,
    "serve_http": serve_http,
    "import_ours": import_ours,
}


def main() -> None:
    job, config_path, result_path = sys.argv[1:4]
    config = json.loads(Path(config_path).read_text())
    result = JOBS[job](config)
    Path(result_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
