"""The parse pool's processes: tasks over pipes, failures that reach their callers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import BrokenExecutor, CancelledError

import pytest

from aggregator.errors import ParseError
from aggregator.processes import BrokenWorkers, Processes


@pytest.fixture
def pool() -> Iterator[Processes]:
    pool = Processes(2)
    try:
        yield pool
    finally:
        pool.shutdown()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_tasks_run_in_the_workers_and_spread_over_them(pool: Processes) -> None:
    futures = [pool.submit(time.sleep, 0.3) for _ in range(2)]
    # Each worker holds one sleep: the next two tasks go one to each.
    asked = [pool.submit(os.getpid) for _ in range(2)]
    pids = {future.result(timeout=30) for future in asked}
    assert len(pids) == 2
    assert all(future.result(timeout=30) is None for future in futures)
    assert os.getpid() not in pids
    assert pids <= set(pool.pids)
    assert pool.submit(divmod, 7, 2).result(timeout=30) == (3, 1)


def test_tasks_given_at_once_to_a_new_pool_reach_every_worker(pool: Processes) -> None:
    # What the parse pool's warm-up relies on: one task per worker, none waiting
    # inside a task for the others to be taken (the workers are still starting).
    pids = [future.result(timeout=30) for future in [pool.submit(os.getpid) for _ in range(2)]]
    assert sorted(pids) == sorted(pool.pids)


def test_an_exception_reaches_its_caller_and_the_worker_goes_on(pool: Processes) -> None:
    error = ParseError("not a readable feed", source="s", url="http://127.0.0.1/f")
    with pytest.raises(ParseError) as raised:
        pool.submit(_raise, error).result(timeout=30)
    assert str(raised.value) == str(error)
    with pytest.raises(ValueError, match="invalid literal"):
        pool.submit(int, "x").result(timeout=30)
    assert pool.submit(abs, -3).result(timeout=30) == 3


def test_a_result_that_cannot_be_pickled_fails_its_task_only(pool: Processes) -> None:
    with pytest.raises(RuntimeError, match="unpicklable result"):
        pool.submit(threading.Lock).result(timeout=30)
    assert pool.submit(abs, -1).result(timeout=30) == 1


def test_an_argument_that_cannot_be_pickled_fails_the_call(pool: Processes) -> None:
    with pytest.raises(TypeError):
        pool.submit(id, threading.Lock())
    assert pool.submit(abs, -2).result(timeout=30) == 2


def test_printing_in_a_task_does_not_break_the_pipe(pool: Processes) -> None:
    assert pool.submit(print, "noise on standard output").result(timeout=30) is None
    assert pool.submit(abs, -4).result(timeout=30) == 4


def test_a_killed_worker_fails_its_tasks_and_breaks_the_pool(pool: Processes) -> None:
    held = [pool.submit(time.sleep, 30) for _ in range(2)]
    time.sleep(0.5)
    for pid in pool.pids:
        os.kill(pid, 9)  # the OOM killer, kill -9
    for future in held:
        with pytest.raises(BrokenExecutor, match="exited with code -9"):
            future.result(timeout=30)
    with pytest.raises(BrokenWorkers):
        pool.submit(abs, 1)


def test_an_answer_the_parent_cannot_read_fails_its_task_and_breaks_the_pool(
    pool: Processes,
) -> None:
    with pytest.raises(BrokenWorkers, match="unreadable answer"):
        pool.submit(_stray).result(timeout=30)
    with pytest.raises(BrokenWorkers):
        pool.submit(abs, 1)


def test_shutdown_finishes_what_was_sent_or_cancels_what_waits() -> None:
    pool = Processes(1)
    done = [pool.submit(abs, -n) for n in range(5)]
    pool.shutdown(wait=True)
    assert [future.result(timeout=0) for future in done] == [0, 1, 2, 3, 4]
    assert not any(_alive(pid) for pid in pool.pids)
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(abs, 1)

    pool = Processes(1)
    running = pool.submit(time.sleep, 0.5)
    while not running.running():
        time.sleep(0.01)
    waiting = [pool.submit(abs, -n) for n in range(50)]
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.result(timeout=0) is None
    cancelled = [future for future in waiting if future.cancelled()]
    assert cancelled, "no waiting task was cancelled"
    with pytest.raises(CancelledError):
        cancelled[0].result(timeout=0)


def test_no_other_process_than_the_workers() -> None:
    """No resource tracker (multiprocessing's would start one: 13 MB more), and the
    workers go when their parent is killed without a shutdown."""
    script = textwrap.dedent(
        """
        import os, sys
        from aggregator.processes import Processes
        pool = Processes(2)
        assert pool.submit(abs, -1).result(timeout=30) == 1
        children = open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()
        print(" ".join(map(str, pool.pids)), "|", " ".join(children), flush=True)
        sys.stdin.read()
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            assert parent.stdout is not None
            workers, children = (part.split() for part in parent.stdout.readline().split("|"))
            assert sorted(children) == sorted(workers) and len(workers) == 2
        finally:
            parent.kill()
    deadline = time.monotonic() + 30
    while any(_alive(int(pid)) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(int(pid)) for pid in workers), "a worker outlived its parent"


def _raise(error: Exception) -> None:
    raise error


def _stray() -> object:
    """An object of a module only the worker has: the parent cannot unpickle it."""
    import types

    module = types.ModuleType("_only_in_the_worker")
    exec("class Stray: pass", module.__dict__)
    sys.modules[module.__name__] = module
    return module.Stray()
