"""Log lines an operator can grep: one spelling of the source, zoned timestamps, text or
JSON, tracebacks only at DEBUG."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from feedserver import FeedServer, static, status

from aggregator import log
from aggregator.errors import AdapterError, HTTPStatusError
from aggregator.fetch import Fetcher, FetchLimits
from aggregator.pipeline import Poller
from aggregator.store import Store
from aggregator.types import Source

VOA = (Path(__file__).parent / "fixtures" / "adapters" / "seeds-voa.xml").read_bytes()


@pytest.fixture
def logged(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Our real setup, writing to the captured stderr; the previous handlers after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _raise_and_log() -> None:
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        logging.getLogger("aggregator.test").exception("cannot divide")


def test_an_exception_is_one_line_above_debug(
    logged: None, capsys: pytest.CaptureFixture[str]
) -> None:
    log.setup("INFO")
    _raise_and_log()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("aggregator.test: cannot divide: ZeroDivisionError: division by zero")


def test_an_exception_keeps_its_traceback_at_debug(
    logged: None, capsys: pytest.CaptureFixture[str]
) -> None:
    log.setup("DEBUG")
    _raise_and_log()
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "in _raise_and_log" in err


def test_every_line_of_a_poll_names_its_source_and_url_one_way(
    logged: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    log.setup("DEBUG")
    with FeedServer() as server, Store.open(f"sqlite:///{tmp_path / 'db'}") as store:
        server.route("/voa", static(VOA))
        server.route("/down", status(500))
        sources = [
            Source("voa", "VOA", server.url("/voa"), adapter="voa", allow_private=True),
            Source("down", "Down", server.url("/down"), allow_private=True),
        ]

        async def run() -> None:
            async with Fetcher(FetchLimits()) as fetcher:
                poller = Poller(
                    store, fetcher, clock=lambda: datetime.now(UTC), rng=random.Random(0)
                )
                await asyncio.gather(*(poller.poll(source) for source in sources))

        asyncio.run(run())
    lines = [
        line
        for line in capsys.readouterr().err.splitlines()
        if " aggregator.pipeline: " in line or " aggregator.fetch: " in line
    ]
    by_source = {source.id: f"source={source.id} url={source.url}: " for source in sources}
    assert any(by_source["voa"] + "poll ok: new=1" in line for line in lines), lines
    assert any(by_source["down"] + "poll failed" in line for line in lines), lines
    for line in lines:
        assert sum(prefix in line for prefix in by_source.values()) == 1, line
        # The prefix names the source and URL; nothing after it says them again.
        assert line.count("source=") == 1 and line.count(" url=") == 1, line


def test_an_error_of_ours_on_a_bound_line_leaves_out_the_bound_source_and_url(
    logged: None, capsys: pytest.CaptureFixture[str]
) -> None:
    log.setup("INFO")
    logger = logging.getLogger("aggregator.test")
    error = HTTPStatusError(status=500, source="down", url="https://example.org/f")
    other = HTTPStatusError(status=404, source="voa", url="https://example.org/v")
    with log.bound("down", "https://example.org/f"):
        logger.warning("poll failed: %s", error)
        logger.warning("mirror failed: %s", other)  # another source's error keeps its own
        try:
            raise error
        except HTTPStatusError:
            logger.exception("poll failed")
    failed, mirror, raised = capsys.readouterr().err.splitlines()
    prefix = "source=down url=https://example.org/f: "
    assert failed.endswith(prefix + "poll failed: HTTP 500: status=500")
    assert mirror.endswith(
        prefix + "mirror failed: HTTP 404: source=voa url=https://example.org/v status=404"
    )
    assert raised.endswith(prefix + "poll failed: HTTPStatusError: HTTP 500: status=500")
    # Unbound, the error is the whole line it is stored as.
    assert str(error) == "HTTP 500: source=down url=https://example.org/f status=500"


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
    logged: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = _emit(capsys, "INFO", "text")
    assert len(lines) == 2
    stamp = datetime.fromisoformat(lines[0].split()[0])
    assert stamp.utcoffset() is not None
    assert lines[0].endswith("poll failed [x]")
    assert lines[1].endswith("cannot release source 'voa': ValueError: bad value")


def test_debug_keeps_the_traceback(logged: None, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _emit(capsys, "DEBUG", "text")
    assert "Traceback (most recent call last):" in lines
    assert lines[-1] == "ValueError: bad value"


def test_json_lines_have_bound_fields_as_keys(
    logged: None, capsys: pytest.CaptureFixture[str]
) -> None:
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


def test_json_lines_carry_the_bound_source_and_url(
    logged: None, capsys: pytest.CaptureFixture[str]
) -> None:
    log.setup("INFO", "json")
    with log.bound("voa", "https://example.org/voa.xml"):
        logging.getLogger("aggregator.test").warning("poll failed")
    line = json.loads(capsys.readouterr().err)
    assert (line["source"], line["url"], line["message"]) == (
        "voa",
        "https://example.org/voa.xml",
        "poll failed",
    )


def test_error_context_is_quoted_only_where_a_value_holds_a_space() -> None:
    error = AdapterError("bad entry", source="voa", guid="a b", link="https://e.org/1")
    assert str(error) == "bad entry: source=voa guid='a b' link=https://e.org/1"
