"""Worker processes fed pickled tasks over their own pipes: the parse pool's processes.

:class:`concurrent.futures.ProcessPoolExecutor` would do the same, but every start
method but ``fork`` also starts multiprocessing's resource tracker: one more
interpreter, 13 MB for as long as the pool runs, there to unlink named semaphores
that this pool does not need (its tasks and results travel over plain pipes).
``fork`` itself is no option in a daemon that has threads.  So each worker here is
``python -c`` started by :mod:`subprocess`; two threads per worker in the parent
(one writes its tasks, one reads its results, so a caller never waits for a pipe)
and a loop in the child are the whole protocol: length-prefixed pickles, a task id
with each.

A worker whose task pipe closes exits, so a parent that dies, even by SIGKILL,
takes its workers with it.  A worker that dies fails its tasks with
:class:`BrokenWorkers` (a :class:`~concurrent.futures.BrokenExecutor`, as the
standard pool's are) and the pool takes no more work: the poller parses on threads
from then on, as it does when the standard pool breaks.

Imports from the package: none (the child imports this module first, and what its
initializer and tasks name).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, Executor, Future
from queue import SimpleQueue
from typing import IO, Any, ParamSpec, TypeVar

__all__ = ["BrokenWorkers", "Processes", "serve"]

_P = ParamSpec("_P")
_T = TypeVar("_T")

_HEADER = struct.Struct("!Q")
#: What the parent runs: the child's loop, after the parent's module path (as
#: multiprocessing's spawn passes it), so the child imports what the parent would.
_CHILD = "import sys; sys.path[:0] = sys.argv[1:]; from aggregator.processes import serve; serve()"


class BrokenWorkers(BrokenExecutor):
    """A worker process exited with tasks of this pool unanswered."""


def _frame(message: object) -> bytes:
    """``message`` pickled, behind its length: one message of the protocol."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _write(stream: IO[bytes], message: object) -> None:
    stream.write(_frame(message))
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    """The next message, ``EOFError`` when the other end has closed its pipe."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    size = _HEADER.unpack(header)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


class _Worker:
    """One child process, its two pipes, the two threads that serve them and the
    futures of the tasks it holds."""

    def __init__(self, pool: Processes, number: int, setup: object) -> None:
        self.pool = pool
        self.tasks: SimpleQueue[tuple[int, Future[Any], bytes] | None] = SimpleQueue()
        self.futures: dict[int, Future[Any]] = {}
        self.lock = threading.Lock()  # futures, dead, and every change of a future's state
        self.dead: str | None = None  # why, once the child is gone
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, *[entry for entry in sys.path if entry]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        _write(self.process.stdin, setup)
        self.writer = threading.Thread(target=self._send, name=f"worker-{number}-send")
        self.reader = threading.Thread(target=self._receive, name=f"worker-{number}-receive")
        self.writer.daemon = self.reader.daemon = True
        self.writer.start()
        self.reader.start()

    @property
    def load(self) -> int:
        return len(self.futures)

    def _send(self) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            while (task := self.tasks.get()) is not None:
                number, future, payload = task
                with self.lock:
                    if self.dead is not None:
                        break  # its reader failed this task with the others
                    if not future.set_running_or_notify_cancel():
                        del self.futures[number]
                        continue
                stdin.write(payload)
                stdin.flush()
        except OSError:
            pass  # the child is gone: its reader fails what it held
        finally:
            with contextlib.suppress(OSError):
                stdin.close()  # the child's signal to finish and exit

    def _receive(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            while True:
                number, ok, value = _read(stdout)
                with self.lock:
                    future = self.futures.pop(number)
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except (EOFError, OSError):
            problem = None
        except Exception as exc:  # an answer this side cannot unpickle: the stream is lost
            problem = f"a worker process sent an unreadable answer ({exc!r})"
            self.process.kill()
        stdout.close()
        code = self.process.wait()
        why = problem or f"a worker process exited with code {code}"
        with self.lock:
            self.dead = why
            orphans, self.futures = list(self.futures.values()), {}
            for future in orphans:
                _fail(future, why)
        if orphans or problem or (code != 0 and not self.pool.closing):
            self.pool.broken(why)

    def submit(self, number: int, future: Future[Any], payload: bytes) -> None:
        with self.lock:
            if self.dead is not None:
                _fail(future, self.dead)
                return
            self.futures[number] = future
        self.tasks.put((number, future, payload))

    def stop(self, wait: bool, cancel: bool) -> None:
        if cancel:
            with self.lock:
                for future in self.futures.values():
                    future.cancel()  # only those not sent yet can be
        self.tasks.put(None)
        if wait:
            self.writer.join()
            self.reader.join()


def _fail(future: Future[Any], why: str) -> None:
    """Fail a task of a dead worker, sent or not (under its worker's lock)."""
    if future.running() or future.set_running_or_notify_cancel():
        future.set_exception(BrokenWorkers(why))


class Processes(Executor):
    """``workers`` child interpreters, each given tasks in turn by its load; each
    runs ``initializer(*initargs)`` first."""

    def __init__(
        self,
        workers: int,
        *,
        initializer: Callable[..., object] | None = None,
        initargs: Sequence[object] = (),
    ) -> None:
        if workers < 1:
            raise ValueError("a process pool needs one worker or more")
        self.closing = False
        self._broken: str | None = None
        self._lock = threading.Lock()
        self._numbers = itertools.count()
        setup = (initializer, tuple(initargs))
        self._workers: list[_Worker] = []
        try:
            for number in range(workers):
                self._workers.append(_Worker(self, number, setup))
        except BaseException:
            self.shutdown(wait=False)  # the workers already started go again
            raise

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers]

    def broken(self, why: str) -> None:
        with self._lock:
            self._broken = self._broken or why

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        with self._lock:
            if self._broken is not None:
                raise BrokenWorkers(self._broken)
            if self.closing:
                raise RuntimeError("cannot schedule new futures after shutdown")
            number = next(self._numbers)
            worker = min(self._workers, key=lambda worker: worker.load)
        future: Future[_T] = Future()
        # Pickled here, on the caller's thread: an object that cannot be pickled fails
        # the call that passed it, not a thread of the pool.
        payload = _frame((number, fn, args, kwargs))
        worker.submit(number, future, payload)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self.closing = True
        for worker in self._workers:
            worker.stop(wait=False, cancel=cancel_futures)
        if wait:
            for worker in self._workers:
                worker.stop(wait=True, cancel=False)


def serve() -> None:
    """The child's loop: set up, then answer tasks until the parent closes the pipe.

    The protocol has the child's standard output to itself: anything else written
    there (a stray print, a library's warning) goes to standard error instead.
    """
    tasks = os.fdopen(os.dup(0), "rb")
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        initializer, initargs = _read(tasks)
    except EOFError:
        return
    if initializer is not None:
        initializer(*initargs)
    while True:
        try:
            number, fn, args, kwargs = _read(tasks)
        except EOFError:
            return
        try:
            answer = (number, True, fn(*args, **kwargs))
        except BaseException as error:  # the parent's future raises it
            answer = (number, False, error)
        try:
            _write(answers, answer)
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            _write(answers, (number, False, RuntimeError(f"unpicklable result: {error!r}")))
