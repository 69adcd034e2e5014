"""Logging setup, and the one way a line names the source it is about.

Only the CLI (and a parse worker, for itself) calls :func:`setup`; library modules
just log.  Everything logged inside ``with bound(source, url):`` (one poll: its
fetch, its parse in a thread, its store) starts with ``source=ID url=URL: ``, the
one spelling, so ``grep 'source=voa '`` finds every line about that feed.  The
binding lives in a context variable: each poll's asyncio task, and the threads it
hands work to, carry their own.

Tracebacks are for DEBUG: above it an exception is logged as one line,
``message: Type: text``.  Noisy libraries are held at WARNING: their per-request
INFO lines would drown ours.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["bound", "setup"]

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(bound)s%(message)s"
QUIET_LIBRARIES = ("httpx2", "httpcore2", "apscheduler", "uvicorn.access", "alembic")

_bound: ContextVar[str] = ContextVar("aggregator_log_bound", default="")


@contextlib.contextmanager
def bound(source: str, url: str) -> Iterator[None]:
    """Name ``source`` and ``url`` on every line logged inside the block."""
    token = _bound.set(f"source={source} url={url}: ")
    try:
        yield
    finally:
        _bound.reset(token)


class _Formatter(logging.Formatter):
    def __init__(self, *, tracebacks: bool) -> None:
        super().__init__(FORMAT)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        record.bound = _bound.get()
        if record.exc_info and record.exc_info[1] is not None and not self.tracebacks:
            error = record.exc_info[1]
            record = logging.makeLogRecord(
                dict(
                    record.__dict__,
                    msg=f"{record.getMessage()}: {type(error).__name__}: {error}",
                    args=None,
                    exc_info=None,
                    exc_text=None,
                )
            )
        return super().format(record)


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    handler.setFormatter(_Formatter(tracebacks=root.level <= logging.DEBUG))
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
