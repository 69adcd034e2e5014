"""Fuzzing response status lines and headers through the real loopback server.

test_fuzz.py fuzzes bodies; this fuzzes what comes before them.  Two contracts:

* the fetcher raises only :class:`FetchError` (or returns a result) whatever the
  status line and header values are, so every header is parsed totally;
* a poll of such a response always ends in a recorded state, and a second poll of
  the same source (which sends back the stored validators) does too.

``HOSTILE_FUZZ_EXAMPLES`` scales the run like test_fuzz.py's (a quarter of it here:
each example is a real HTTP exchange).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from feedserver import Exchange, FeedServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.errors import FetchError
from aggregator.fetch import Fetcher, FetchLimits
from aggregator.pipeline import Poller
from aggregator.store import Store
from aggregator.types import Source, SourceState

EXAMPLES = max(20, int(os.environ.get("HOSTILE_FUZZ_EXAMPLES", "600")) // 4)
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
VOA = (FIXTURES / "adapters" / "seeds-voa.xml").read_bytes()
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
LIMITS = FetchLimits(connect_timeout=2, read_timeout=1, total_timeout=2, allow_private=True)

NAMES = [
    "Retry-After",
    "Content-Length",
    "ETag",
    "Last-Modified",
    "Date",
    "Expires",
    "Location",
    "Content-Type",
    "Content-Encoding",
    "Transfer-Encoding",
    "Connection",
]
_digits = st.one_of(st.sampled_from([310, 400, 4301, 5000]), st.integers(1, 5000)).map(
    lambda n: "9" * n
)
_date = st.sampled_from(
    [
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Fri, 31 Dec 99999 23:59:59 GMT",
        "Mon, 00 Foo 0000 99:99:99 +9999",
        "Thu, 01 Jan 1970 00:00:00 -0000",
        "0",
    ]
)
_params = st.lists(
    st.tuples(st.sampled_from(["charset", "type", "q", ""]), st.text(max_size=40)),
    max_size=4,
).map(lambda pairs: "application/rss+xml" + "".join(f"; {k}={v}" for k, v in pairs))
_latin1 = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=300,
)
_odd = st.sampled_from(["-1", "1e400", "²", "０", " 12 ", "", "\xe9t\xe9", "\xff\xfe"])
VALUES = st.one_of(_digits, _date, _params, _latin1, _odd)
# Each header mostly gets the kind of value its parser expects to be wrong about.
_LIKELY = {
    "Retry-After": st.one_of(_digits, _date, _odd),
    "Content-Length": st.one_of(_digits, _odd),
    "ETag": st.one_of(_latin1, _odd),
    "Last-Modified": st.one_of(_date, _latin1, _odd),
    "Location": st.one_of(_latin1, st.just("http://[::1"), _odd),
    "Content-Type": _params,
}
HEADER = st.sampled_from(NAMES).flatmap(
    lambda name: st.tuples(st.just(name), st.one_of(_LIKELY.get(name, VALUES), VALUES))
)
HEADERS = st.lists(HEADER, max_size=6)
STATUS = st.one_of(
    st.sampled_from([200, 200, 200, 301, 302, 304, 307, 308, 404, 410, 429, 503, 503]),
    st.integers(min_value=0, max_value=999),
    st.text(alphabet="0123456789x -", max_size=6),
)
REASON = st.one_of(st.just("OK"), _latin1)
_IDS = itertools.count()  # a fresh source (no stored state) per example


class RawResponse:
    """One route whose status line and headers each example sets, sent byte for byte."""

    def __init__(self) -> None:
        self.head = b"HTTP/1.1 200 OK"

    def __call__(self, exchange: Exchange) -> None:
        exchange.close = True
        exchange.wfile.write(self.head + b"\r\n\r\n" + VOA)
        exchange.wfile.flush()

    def set(self, status: int | str, reason: str, headers: list[tuple[str, str]]) -> None:
        lines = [f"HTTP/1.1 {status} {reason}"] + [f"{name}: {value}" for name, value in headers]
        self.head = "\r\n".join(lines).encode("latin-1", "replace")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FeedServer, RawResponse]]:
    response = RawResponse()
    with FeedServer() as server:
        server.route("/feed", response)
        yield server, response


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'db.sqlite'}") as opened:
        yield opened


def _source(server: FeedServer, name: str) -> Source:
    return Source(
        id=name,
        name=name,
        url=server.url("/feed"),
        adapter="voa",
        interval=timedelta(minutes=30),
        allow_private=True,
    )


_FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@_FUZZ
@given(status=STATUS, reason=REASON, headers=HEADERS)
def test_fetch_raises_only_fetch_errors(
    served: tuple[FeedServer, RawResponse],
    status: int | str,
    reason: str,
    headers: list[tuple[str, str]],
) -> None:
    server, response = served
    response.set(status, reason, headers)

    source = _source(server, "fuzz")

    async def run() -> None:
        async with Fetcher(LIMITS) as fetcher:
            try:
                result = await fetcher.fetch(source)
                # The validators it kept are sent back on the next fetch.
                state = dataclasses.replace(
                    SourceState.fresh(source), etag=result.etag, last_modified=result.last_modified
                )
                await fetcher.fetch(source, state)
            except FetchError:
                pass

    asyncio.run(run())


@_FUZZ
@given(status=STATUS, reason=REASON, headers=HEADERS)
def test_every_poll_ends_in_a_recorded_state(
    served: tuple[FeedServer, RawResponse],
    store: Store,
    status: int | str,
    reason: str,
    headers: list[tuple[str, str]],
) -> None:
    server, response = served
    response.set(status, reason, headers)
    source = _source(server, f"fuzz{next(_IDS)}")

    async def run() -> None:
        async with Fetcher(LIMITS) as fetcher:
            poller = Poller(store, fetcher, jitter=0, clock=lambda: NOW)
            for _ in range(2):  # the second poll sends back whatever the first stored
                outcome = await poller.poll(source)
                assert outcome.status in ("ok", "not-modified", "failed", "disabled")
                if outcome.error is not None:
                    assert outcome.error.kind != "storage", outcome.error
                    assert "\n" not in str(outcome.error)

    asyncio.run(run())
    state = store.get_state(source)
    assert state.last_attempt == NOW
    assert state.last_success == NOW or state.consecutive_failures >= 1
