"""A poll always ends in a recorded state, whatever a source's response or content raises.

Before, ``Poller.poll`` caught only our own errors: a ``Retry-After`` of 400 nines
(``OverflowError`` in the fetcher) or a JSON Feed nested 2,000 deep
(``RecursionError`` in the reader) escaped it, so the source's state was never
written and the daemon claimed it again every tick.  Every case here runs against the
real loopback server, beside a good source that must still be stored.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from feedserver import Exchange, FeedServer, Handler, static, status
from typer.testing import CliRunner

from aggregator.cli import app
from aggregator.fetch import RETRY_AFTER_MAX, Fetcher, FetchLimits, parse_retry_after
from aggregator.pipeline import Poller, PollOutcome
from aggregator.store import Store
from aggregator.types import Source

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
VOA = (FIXTURES / "adapters" / "seeds-voa.xml").read_bytes()
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
INTERVAL = timedelta(minutes=30)
NESTED_JSON = (
    b'{"version": "https://jsonfeed.org/version/1.1", "items": ' + b"[" * 2000 + b"]" * 2000 + b"}"
)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}") as opened:
        yield opened


def source(server: FeedServer, path: str, source_id: str) -> Source:
    return Source(
        id=source_id,
        name=source_id,
        url=server.url(path),
        adapter="voa",
        interval=INTERVAL,
        allow_private=True,
    )


def poll(store: Store, *sources: Source) -> dict[str, PollOutcome]:
    async def run() -> list[PollOutcome]:
        async with Fetcher(FetchLimits(total_timeout=5, read_timeout=3)) as fetcher:
            poller = Poller(store, fetcher, jitter=0, clock=lambda: NOW, rng=random.Random(0))
            return list(await asyncio.gather(*(poller.poll(one) for one in sources)))

    return {outcome.source_id: outcome for outcome in asyncio.run(run())}


def raw(head: bytes, body: bytes = b"") -> Handler:
    """A handler that writes ``head`` (status line and headers) exactly as given."""

    def handle(exchange: Exchange) -> None:
        exchange.close = True
        exchange.wfile.write(head + b"\r\n\r\n" + body)
        exchange.wfile.flush()

    return handle


def test_retry_after_of_400_digits_is_clamped_and_recorded(
    server: FeedServer, store: Store
) -> None:
    server.route("/good", static(VOA))
    server.route("/nines", status(503, retry_after="9" * 400))
    good, nines = source(server, "/good", "good"), source(server, "/nines", "nines")
    outcomes = poll(store, good, nines)
    assert outcomes["nines"].error is not None
    assert outcomes["nines"].error.kind == "rate-limited"
    state = store.get_state(nines)
    assert state.consecutive_failures == 1
    # Backed off to the cap (one day by default), not retried at the next tick.
    assert state.next_poll is not None and state.next_poll >= NOW + timedelta(hours=23)
    assert store.article_counts() == {"good": 1}


@pytest.mark.parametrize(
    "value",
    ["9" * 400, "9" * 5000, "²", "١٢٣", "-1", "1e9", "Fri, 31 Dec 99999 23:59:59 GMT", "\x00"],
)
def test_retry_after_parsing_is_total(value: str) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or 0.0 <= seconds <= RETRY_AFTER_MAX


def test_an_exception_from_the_content_fails_only_its_source(
    server: FeedServer, store: Store
) -> None:
    """Any exception, not just our own, becomes a one-line failure with backoff."""
    server.route("/good", static(VOA))
    server.route("/nested", static(NESTED_JSON, content_type="application/feed+json"))
    good, nested = source(server, "/good", "good"), source(server, "/nested", "nested")
    outcomes = poll(store, good, nested)
    assert outcomes["nested"].failed
    state = store.get_state(nested)
    assert state.consecutive_failures == 1
    assert state.last_error is not None and "\n" not in state.last_error
    assert state.next_poll is not None and state.next_poll > NOW
    assert store.article_counts() == {"good": 1}


@pytest.mark.parametrize(
    "header",
    [
        b"Content-Length: \xb2",  # "superscript two": str.isdigit() says yes, int() says no
        b"Content-Length: " + b"9" * 5000,  # more digits than int() accepts
        b'ETag: "\xe9t\xe9"',  # not ASCII: could not be sent back as If-None-Match
        b"ETag: " + b"x" * 4000,
        b"Last-Modified: \xff\xfe",
        b'Content-Type: application/rss+xml; charset="' + b"x" * 3000,
        b"Content-Type: application/rss+xml; charset=\xe9\xe9",
    ],
)
def test_hostile_header_values_are_ignored_or_clamped(
    server: FeedServer, store: Store, header: bytes
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n" + header
    server.route("/feed", raw(head, VOA))
    feed = source(server, "/feed", "feed")
    first = poll(store, feed)["feed"]
    assert first.error is None or first.error.kind != "source", first.error
    # The next poll must not fail on what the first one stored (validators echoed back).
    server.route("/feed", static(VOA))
    second = poll(store, feed)["feed"]
    assert second.error is None, second.error
    assert store.article_counts() == {"feed": 1}


@pytest.mark.parametrize(
    "location",
    [
        b"http://[::1",
        b"http://\xe9\xe9\xe9.example/",
        b"http://a\xadb.example/",
        b"//" + b"a" * 300,
    ],
)
def test_hostile_locations_are_fetch_errors(
    server: FeedServer, store: Store, location: bytes
) -> None:
    server.route("/moved", raw(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\nLocation: " + location))
    moved = source(server, "/moved", "moved")
    outcome = poll(store, moved)["moved"]
    assert outcome.error is not None and outcome.error.kind in ("fetch", "blocked"), outcome.error
    assert store.get_state(moved).consecutive_failures == 1


def test_an_exception_in_a_parse_worker_fails_only_its_source(
    server: FeedServer, store: Store
) -> None:
    """The same through the process pool: the exception crosses the process boundary."""
    server.route("/good", static(VOA))
    server.route("/nested", static(NESTED_JSON, content_type="application/feed+json"))
    good, nested = source(server, "/good", "good"), source(server, "/nested", "nested")

    async def run() -> list[PollOutcome]:
        async with Fetcher(FetchLimits(total_timeout=5, read_timeout=3)) as fetcher:
            poller = Poller(store, fetcher, jitter=0, clock=lambda: NOW, executor=pool)
            return list(await asyncio.gather(poller.poll(good), poller.poll(nested)))

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        outcomes = {outcome.source_id: outcome for outcome in asyncio.run(run())}
        assert pool.submit(abs, -1).result() == 1  # the worker survived
    assert outcomes["nested"].failed and not outcomes["good"].failed
    assert store.get_state(nested).consecutive_failures == 1
    assert store.article_counts() == {"good": 1}


def test_aggregator_poll_prints_its_table_and_exits_as_documented(
    server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 0 while any source succeeded; the failures are rows of the table."""
    for name in [name for name in os.environ if name.startswith("AGGREGATOR_")]:
        monkeypatch.delenv(name)
    server.route("/good", static(VOA))
    server.route("/nines", status(503, retry_after="9" * 400))
    server.route("/nested", static(NESTED_JSON, content_type="application/feed+json"))
    sources = "".join(
        f'[[source]]\nid = "{name}"\nname = "{name}"\nurl = "{server.url("/" + name)}"\n'
        'adapter = "voa"\n'
        for name in ("good", "nines", "nested")
    )
    (tmp_path / "sources.toml").write_text(sources, encoding="utf-8")
    config = tmp_path / "aggregator.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path / "db.sqlite"}"\n'
        f'sources_file = "{tmp_path / "sources.toml"}"\n'
        "allow_private_addresses = true\nparse_processes = 0\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["--config", str(config), "poll"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if "│" in line}
    assert "ok" in rows["good"] and "failed" in rows["nines"] and "failed" in rows["nested"]
    with Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}") as stored:
        assert stored.article_counts() == {"good": 1}
