"""Logging setup, and the one way a line names the source it is about.

Only the CLI (and a parse worker, for itself) calls :func:`setup`; library modules
just log.  Everything logged inside ``with bound(source, url):`` (one poll: its
fetch, its parse in a thread, its store) carries that source and URL: a text line
starts with ``source=ID url=URL: ``, the one spelling, so ``grep 'source=voa '``
finds every line about that feed; a JSON line has ``source`` and ``url`` keys.  The
binding lives in a context variable: each poll's asyncio task, and the threads it
hands work to, carry their own.

Two formats, chosen by the ``log_format`` setting: ``text``, one line per event for a
terminal or ``journalctl``, and ``json``, one object per line for a log collector.
Timestamps carry their UTC offset, so lines from hosts in different zones, or from
before and after a daylight-saving change, still sort and compare.

A traceback is written only at DEBUG: at other levels an exception logged with
``logger.exception`` adds its type and message to the line instead, because a
40-line traceback in a months-long log buries the one line an operator needs.
Noisy libraries are held at WARNING: their per-request INFO lines would drown ours.
An error of ours on a bound line leaves out the source and URL the line starts with.

Imports from the package: ``errors`` only (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import datetime
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

from aggregator.errors import AggregatorError

__all__ = ["LogFormat", "bound", "setup"]

LogFormat = Literal["text", "json"]
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
JSON_FIELDS = ("asctime", "levelname", "name", "message")
QUIET_LIBRARIES = ("httpx2", "httpcore2", "uvicorn.access", "alembic")

_bound: ContextVar[tuple[str, str] | None] = ContextVar("aggregator_log_bound", default=None)


@contextlib.contextmanager
def bound(source: str, url: str) -> Iterator[None]:
    """Name ``source`` and ``url`` on every line logged inside the block."""
    token = _bound.set((source, url))
    try:
        yield
    finally:
        _bound.reset(token)


def _timestamp(record: logging.LogRecord) -> str:
    """ISO 8601 in the local zone with its offset: ``2026-12-06T12:30:25.123+00:00``."""
    return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


def _prepared(record: logging.LogRecord, *, tracebacks: bool) -> logging.LogRecord:
    """A copy of ``record`` with the bound source and URL as attributes, and its
    exception as one ``Type: message`` at the end of the line unless tracebacks are wanted."""
    brief = copy.copy(record)
    binding = _bound.get()
    if binding is not None and not hasattr(record, "source"):
        brief.source, brief.url = binding
    known = {"source": getattr(brief, "source", None), "url": getattr(brief, "url", None)}
    if known["source"] is not None and isinstance(record.args, tuple):
        # Our errors leave out the source and URL the line already starts with.
        brief.args = tuple(
            arg.render(known) if isinstance(arg, AggregatorError) else arg for arg in record.args
        )
    if record.exc_info and record.exc_info[1] is not None and not tracebacks:
        error = record.exc_info[1]
        text = error.render(known) if isinstance(error, AggregatorError) else str(error)
        brief.msg = f"{brief.getMessage()}: {type(error).__name__}: {text}"
        brief.args = None
        brief.exc_info = brief.exc_text = brief.stack_info = None
    return brief


class _OneLine(logging.Formatter):
    """Zoned timestamps, bound fields, and an exception as one line unless tracebacks
    are wanted."""

    tracebacks = False

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)

    def format(self, record: logging.LogRecord) -> str:
        return super().format(_prepared(record, tracebacks=self.tracebacks))


class _TextFormatter(_OneLine):
    def __init__(self, *, tracebacks: bool) -> None:
        super().__init__(FORMAT)
        self.tracebacks = tracebacks

    def formatMessage(self, record: logging.LogRecord) -> str:
        source = getattr(record, "source", None)
        if source is not None:
            record.message = f"source={source} url={getattr(record, 'url', '')}: {record.message}"
        return super().formatMessage(record)


class _JsonFormatter(_OneLine, JsonFormatter):
    def __init__(self, *, tracebacks: bool) -> None:
        super().__init__(
            JSON_FIELDS,
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
        )
        self.tracebacks = tracebacks


def setup(level: str = "INFO", log_format: LogFormat = "text") -> None:
    tracebacks = level == "DEBUG"
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter = (
        _JsonFormatter(tracebacks=tracebacks)
        if log_format == "json"
        else _TextFormatter(tracebacks=tracebacks)
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
