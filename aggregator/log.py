"""Logging setup.  Only the CLI (and each parse worker) calls :func:`setup`; modules just log.

Two formats, chosen by the ``log_format`` setting: ``text``, one line per event for a
terminal or ``journalctl``, and ``json``, one object per line for a log collector
(fields bound to a record, such as ``source`` and ``url``, become keys of their own).
Timestamps carry their UTC offset, so lines from hosts in different zones, or from
before and after a daylight-saving change, still sort and compare.

A traceback is written only at DEBUG: at other levels an exception logged with
``logger.exception`` adds its type and message to the line instead, because a
40-line traceback in a months-long log buries the one line an operator needs.
Noisy libraries are held at WARNING: their per-request INFO lines would drown ours.
"""

from __future__ import annotations

import copy
import logging
import sys
from datetime import datetime
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

__all__ = ["LogFormat", "setup"]

LogFormat = Literal["text", "json"]
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
JSON_FIELDS = ("asctime", "levelname", "name", "message")
QUIET_LIBRARIES = ("httpx2", "httpcore2", "apscheduler", "uvicorn.access", "alembic")


def _timestamp(record: logging.LogRecord) -> str:
    """ISO 8601 in the local zone with its offset: ``2026-12-06T12:30:25.123+00:00``."""
    return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


def _brief(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of ``record`` whose exception is one ``Type: message`` at the end of the line."""
    assert record.exc_info is not None
    _type, error, _traceback = record.exc_info
    brief = copy.copy(record)
    brief.msg = f"{record.getMessage()}: {type(error).__name__}: {error}"
    brief.args = None
    brief.exc_info = brief.exc_text = brief.stack_info = None
    return brief


class _OneLine(logging.Formatter):
    """Zoned timestamps, and an exception as one line unless tracebacks are wanted."""

    tracebacks = False

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and not self.tracebacks:
            record = _brief(record)
        return super().format(record)


class _TextFormatter(_OneLine):
    def __init__(self, *, tracebacks: bool) -> None:
        super().__init__(FORMAT)
        self.tracebacks = tracebacks


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
