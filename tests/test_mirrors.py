"""Mirror failover: a source with several URLs keeps flowing while any one answers.

Against the loopback server and a real database.  The first URL's host does not
resolve: its name is one the resolver refuses (``.invalid``), and the one test
that needs it to "come back" points that name at 127.0.0.1 by wrapping anyio's
resolver, the only part with no real stand-in.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import RunCli
from feedserver import FeedServer, redirect, static, status

from aggregator.fetch import Fetcher, FetchLimits
from aggregator.metrics import Metrics
from aggregator.pipeline import Poller, PollOutcome
from aggregator.store import Store
from aggregator.types import Source

FIXTURES = Path(__file__).parent / "fixtures"
VOA = (FIXTURES / "adapters" / "seeds-voa.xml").read_bytes()
START = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
INTERVAL = timedelta(minutes=30)
RETRY = timedelta(hours=6)
DEAD_HOST = "feedx.invalid"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _source(*urls: str) -> Source:
    primary, *mirrors = urls
    return Source(
        id="voa",
        name="VOA",
        url=primary,
        mirrors=tuple(mirrors),
        adapter="voa",
        interval=INTERVAL,
        allow_private=True,
    )


def _poll(
    store: Store, source: Source, clock: Clock, metrics: Metrics | None = None
) -> PollOutcome:
    async def run() -> PollOutcome:
        async with Fetcher(FetchLimits(total_timeout=3, read_timeout=2)) as fetcher:
            poller = Poller(
                store,
                fetcher,
                jitter=0,
                clock=clock,
                rng=random.Random(0),
                mirror_retry=RETRY,
                metrics=metrics or Metrics(),
            )
            return await poller.poll(source)

    return asyncio.run(run())


def _dead_url(server: FeedServer) -> str:
    return f"http://{DEAD_HOST}:{server.port}/feed"


def test_unresolvable_then_500_then_a_feed(
    server: FeedServer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.route("/broken", status(500))
    server.route("/feed", static(VOA, etag='"v1"'))
    source = _source(_dead_url(server), server.url("/broken"), server.url("/feed"))
    clock = Clock()
    metrics = Metrics()

    first = _poll(store, source, clock, metrics)
    assert (first.status, first.counts.new) == ("ok", 1)
    state = store.get_state(source)
    assert [record.configured for record in state.url_states] == list(source.urls)
    dead, broken, good = state.url_states
    assert (dead.error_kind, broken.error_kind, good.error_kind) == ("fetch", "http", None)
    assert "500" in (broken.error or "")
    assert good.last_success == START and good.etag == '"v1"'
    assert (state.url, state.consecutive_failures, state.last_error) == (good.url, 0, None)
    failures = metrics.registry.get_sample_value(
        "aggregator_source_url_failures_total",
        {"source": "voa", "url": source.urls[1], "kind": "http"},
    )
    assert failures == 1
    metrics.observe_states([state])
    up = [
        metrics.registry.get_sample_value("aggregator_source_url_up", {"source": "voa", "url": url})
        for url in source.urls
    ]
    assert up == [0, 0, 1]

    # Next time the URL that answered goes first (conditionally): nothing else is tried.
    clock.now += INTERVAL
    second = _poll(store, source, clock)
    assert second.status == "not-modified"
    assert len(server.requests("/broken")) == 1
    assert server.requests("/feed")[-1].headers["if-none-match"] == '"v1"'

    # Once the primary's retry is due it goes first again; answering, it is the source's
    # URL from then on, with validators of its own.
    real = anyio.getaddrinfo

    async def resolve(host: Any, port: Any, **kwargs: Any) -> Any:
        return await real("127.0.0.1" if host == DEAD_HOST else host, port, **kwargs)

    monkeypatch.setattr(anyio, "getaddrinfo", resolve)
    clock.now = START + RETRY
    third = _poll(store, source, clock)
    assert third.status == "ok"
    state = store.get_state(source)
    assert state.url == source.url
    assert state.url_states[0].last_success == clock.now
    assert state.url_states[0].etag == '"v1"'
    requests_before = len(server.requests("/feed"))
    clock.now += INTERVAL
    assert _poll(store, source, clock).status == "not-modified"
    assert len(server.requests("/feed")) == requests_before + 1
    assert len(server.requests("/broken")) == 1


def test_primary_not_retried_before_its_period(server: FeedServer, store: Store) -> None:
    server.route("/feed", static(VOA))
    source = _source(_dead_url(server), server.url("/feed"))
    clock = Clock()
    _poll(store, source, clock)
    tried = store.get_state(source).url_states[0].last_attempt
    clock.now = START + RETRY - timedelta(minutes=1)
    _poll(store, source, clock)
    assert store.get_state(source).url_states[0].last_attempt == tried == START


def test_every_url_failing_fails_the_source_with_each_error(
    server: FeedServer, store: Store
) -> None:
    server.route("/a", status(404))
    server.route("/b", static(b"<html><body>parked domain</body></html>", content_type="text/html"))
    source = _source(server.url("/a"), server.url("/b"))
    outcome = _poll(store, source, Clock())
    assert outcome.status == "failed" and outcome.error is not None
    assert outcome.error.kind == "mirrors"
    state = store.get_state(source)
    assert state.consecutive_failures == 1 and state.next_poll is not None
    assert state.next_poll > START
    assert [record.error_kind for record in state.url_states] == ["http", "parse"]
    assert source.urls[0] in (state.last_error or "") and source.urls[1] in (state.last_error or "")


def test_410_retires_only_that_url_and_redirect_moves_only_that_url(
    server: FeedServer, store: Store
) -> None:
    server.route("/gone", status(410))
    server.route("/old", redirect("/feed", 301))
    server.route("/feed", static(VOA))
    source = _source(server.url("/gone"), server.url("/old"))
    clock = Clock()
    assert _poll(store, source, clock).status == "ok"
    state = store.get_state(source)
    gone, moved = state.url_states
    assert gone.gone is not None and gone.url == source.url
    assert (moved.configured, moved.url) == (source.urls[1], server.url("/feed"))
    assert state.disabled_reason is None
    clock.now = START + RETRY * 2  # the retired primary is never due again
    assert _poll(store, source, clock).status == "ok"
    assert len(server.requests("/gone")) == 1
    assert len(server.requests("/old")) == 1


def test_every_url_gone_disables_the_source(server: FeedServer, store: Store) -> None:
    server.route("/a", status(410))
    server.route("/b", status(410))
    source = _source(server.url("/a"), server.url("/b"))
    clock = Clock()
    _poll(store, source, clock)
    clock.now += INTERVAL
    _poll(store, source, clock)
    assert store.get_state(source).disabled_reason is not None


def test_articles_through_different_mirrors_are_one_article(
    server: FeedServer, store: Store
) -> None:
    # The same feed on two mirror hosts (here two ports' worth of paths): the first
    # poll reads one, the next the other; dedupe by guid/link keeps one article.
    server.route("/one", static(VOA))
    server.route("/two", static(VOA.replace(b"</channel>", b"<!-- mirror --></channel>")))
    source = _source(server.url("/one"), server.url("/two"))
    clock = Clock()
    assert _poll(store, source, clock).counts.new == 1
    server.route("/one", status(503))
    clock.now = START + RETRY
    second = _poll(store, source, clock)
    assert (second.status, second.counts.new, second.counts.unchanged) == ("ok", 0, 1)
    assert store.get_state(source).url == server.url("/two")
    assert sum(store.article_counts().values()) == 1


def test_source_without_mirrors_keeps_no_url_records(server: FeedServer, store: Store) -> None:
    server.route("/feed", static(VOA))
    source = _source(server.url("/feed"))
    _poll(store, source, Clock())
    assert store.get_state(source).url_states == ()


def test_getaddrinfo_refuses_the_dead_host() -> None:
    # The premise of the tests above: the resolver answers at once that it has no such name.
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo(DEAD_HOST, 80)


def test_sources_command_lists_each_urls_state(
    server: FeedServer, store: Store, monkeypatch: pytest.MonkeyPatch, run_cli: RunCli
) -> None:
    server.route("/broken", status(500))
    server.route("/feed", static(VOA))
    source = _source(_dead_url(server), server.url("/broken"), server.url("/feed"))
    _poll(store, source, Clock())
    monkeypatch.setenv("COLUMNS", "300")
    result = run_cli(
        store,
        f'[[source]]\nid = "voa"\nname = "VOA"\nurls = {json.dumps(list(source.urls))}\n'
        'adapter = "voa"\nallow_private = true\n',
        "sources",
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for url, status_text in zip(
        source.urls, ("fetch: network error", "http: HTTP 500", "ok"), strict=True
    ):
        (line,) = [line for line in lines if url in line]
        assert status_text in line
