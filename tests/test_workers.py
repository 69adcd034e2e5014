"""The parse pool: processes only while the work needs them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from aggregator import workers
from aggregator.normalize import Normalized
from aggregator.settings import Settings
from aggregator.workers import (
    BURST_POLLS,
    HELP_EVERY,
    ParsePool,
    entries_of,
    expect_polls,
    pool_size,
)


def _until(condition: object, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def pool() -> Iterator[ParsePool]:
    # Every task weighs one entry: the third within the window starts the processes.
    pool = ParsePool(2, demand=2, window=60, idle=1.0, weigh=lambda _: 1)
    try:
        yield pool
    finally:
        pool.shutdown()


def test_little_work_stays_on_the_thread(pool: ParsePool) -> None:
    for _ in range(2):
        assert pool.submit(os.getpid).result(timeout=10) == os.getpid()
    time.sleep(0.2)
    assert not pool.running
    assert pool.wait_started(0) is False


def test_more_work_starts_the_processes_and_idleness_stops_them(pool: ParsePool) -> None:
    for _ in range(3):
        assert pool.submit(os.getpid).result(timeout=10) == os.getpid()
    # The start follows the third task's completion callback, which runs after its result.
    assert _until(lambda: pool.wait_started(1), 60), "the processes did not start"
    worker = pool.submit(os.getpid).result(timeout=30)
    assert worker != os.getpid()
    # No task for `idle` seconds: the processes go, and the work is back on the thread.
    assert _until(lambda: not pool.running, 30)
    assert _until(lambda: not _alive(worker), 30), f"worker {worker} still runs"
    assert pool.submit(os.getpid).result(timeout=10) == os.getpid()


def test_a_task_keeps_the_processes(pool: ParsePool) -> None:
    pool.start()
    assert pool.wait_started(60)
    for _ in range(4):  # 0.5 s apart, twice the idle time in all
        pool.submit(time.sleep, 0.5).result(timeout=30)
    assert pool.running


@pytest.mark.parametrize("helps", [True, False])
def test_the_idle_thread_takes_some_tasks_while_every_process_has_one_waiting(
    helps: bool,
) -> None:
    pool = ParsePool(1, demand=0, idle=60, thread_helps=helps)
    try:
        pool.start()
        assert pool.wait_started(60)
        held = [pool.submit(time.sleep, 1.0) for _ in range(2)]  # one runs, one waits
        burst = [pool.submit(os.getpid) for _ in range(2 * HELP_EVERY)]
        for future in held:
            future.result(timeout=30)
        pids = [future.result(timeout=30) for future in burst]
        on_thread = pids.count(os.getpid())
        # At most one in HELP_EVERY: the thread shares its GIL with the event loop.
        assert (1 <= on_thread <= 2) if helps else on_thread == 0, pids
        # No backlog: the process, not the thread.
        assert pool.submit(os.getpid).result(timeout=30) != os.getpid()
    finally:
        pool.shutdown()


def test_a_burst_of_polls_starts_the_processes_before_any_entry(pool: ParsePool) -> None:
    expect_polls(pool, BURST_POLLS - 1)
    assert pool.wait_started(0.5) is False  # a few sources: the thread will do
    expect_polls(pool, BURST_POLLS)
    assert pool.wait_started(60), "the processes did not start"
    assert pool.submit(os.getpid).result(timeout=30) != os.getpid()


def test_a_burst_without_processes_to_start_changes_nothing() -> None:
    unpooled = ParsePool(0)
    try:
        expect_polls(unpooled, BURST_POLLS)
        assert unpooled.wait_started(0.5) is False
        assert unpooled.submit(os.getpid).result(timeout=10) == os.getpid()
    finally:
        unpooled.shutdown()
    # No parse pool at all (a thread pool, none): nothing to start, and no error.
    with ThreadPoolExecutor(1) as threads:
        expect_polls(threads, BURST_POLLS)
    expect_polls(None, BURST_POLLS)


def test_shutdown_while_starting_leaves_no_process() -> None:
    pool = ParsePool(2)
    pool.start()
    pool.shutdown()
    assert not pool.running
    with pytest.raises(RuntimeError):
        pool.submit(os.getpid)


def test_no_processes_means_the_thread_only() -> None:
    pool = ParsePool(0, demand=0, weigh=lambda _: 1)
    try:
        pool.submit(os.getpid).result(timeout=10)
        pool.start()
        assert pool.wait_started(1) is False
    finally:
        pool.shutdown()


@pytest.mark.parametrize(
    ("setting", "cpus", "daemon", "batch"),
    [(-1, 4, 3, 4), (-1, 2, 1, 2), (-1, 1, 0, 0), (0, 4, 0, 0), (3, 1, 3, 3)],
)
def test_the_daemon_leaves_one_cpu_to_its_thread_a_batch_command_does_not(
    monkeypatch: pytest.MonkeyPatch, setting: int, cpus: int, daemon: int, batch: int
) -> None:
    monkeypatch.setattr(workers, "available_cpus", lambda: cpus)
    settings = Settings(parse_processes=setting)
    assert (pool_size(settings), pool_size(settings, batch=True)) == (daemon, batch)


def test_a_poll_weighs_its_entries_any_other_task_one() -> None:
    assert entries_of(Normalized([], 0, (), 42)) == 42
    assert entries_of("anything") == 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but was not reaped yet is a zombie: gone for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
