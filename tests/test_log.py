"""Log lines: zoned timestamps, text or JSON, tracebacks only at DEBUG."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from aggregator import log


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _emit(capsys: pytest.CaptureFixture[str], level: str, log_format: log.LogFormat) -> list[str]:
    log.setup(level, log_format)
    logger = logging.getLogger("aggregator.test")
    logger.warning("poll failed [x]", extra={"source": "voa", "url": "https://example.org/f"})
    try:
        raise ValueError("bad value")
    except ValueError:
        logger.exception("cannot release source %r", "voa")
    return capsys.readouterr().err.splitlines()


def test_text_lines_carry_a_zone_and_exceptions_stay_on_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = _emit(capsys, "INFO", "text")
    assert len(lines) == 2
    stamp = datetime.fromisoformat(lines[0].split()[0])
    assert stamp.utcoffset() is not None
    assert lines[0].endswith("poll failed [x]")
    assert lines[1].endswith("cannot release source 'voa': ValueError: bad value")


def test_debug_keeps_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _emit(capsys, "DEBUG", "text")
    assert "Traceback (most recent call last):" in lines
    assert lines[-1] == "ValueError: bad value"


def test_json_lines_have_bound_fields_as_keys(capsys: pytest.CaptureFixture[str]) -> None:
    first, second = (json.loads(line) for line in _emit(capsys, "INFO", "json"))
    assert first["message"] == "poll failed [x]"
    assert (first["source"], first["url"], first["level"]) == (
        "voa",
        "https://example.org/f",
        "WARNING",
    )
    assert datetime.fromisoformat(first["time"]).utcoffset() is not None
    assert second["message"] == "cannot release source 'voa': ValueError: bad value"
    assert "exc_info" not in second
