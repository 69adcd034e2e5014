"""One poll, end to end inside the process: real loopback server, real database.

Each fault a feed server can produce must leave the state row and the log line
a user would expect, and must never cost another source its poll.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gzip
import logging
import random
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ParamSpec, TypeVar

import pytest
from feedserver import FeedServer, redirect, reset, static, status, wrong_charset

from aggregator.errors import ParseError, StorageError
from aggregator.fetch import Fetcher, FetchLimits
from aggregator.pipeline import Poller, PollOutcome, _GroupCommit
from aggregator.store import Store
from aggregator.types import Source, SourceState

FIXTURES = Path(__file__).parent / "fixtures"
VOA = (FIXTURES / "adapters" / "seeds-voa.xml").read_bytes()
ZAOBAO = (FIXTURES / "feeds" / "zaobao-1.xml").read_bytes()
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
INTERVAL = timedelta(minutes=30)
_P = ParamSpec("_P")
_T = TypeVar("_T")


def _source(server: FeedServer, path: str, source_id: str = "voa", adapter: str = "voa") -> Source:
    return Source(
        id=source_id,
        name=source_id.upper(),
        url=server.url(path),
        adapter=adapter,
        interval=INTERVAL,
        allow_private=True,
    )


def _poll(store: Store, *sources: Source, max_entries: int = 500) -> list[PollOutcome]:
    async def run() -> list[PollOutcome]:
        limits = FetchLimits(total_timeout=3, read_timeout=2)
        async with Fetcher(limits) as fetcher:
            poller = Poller(
                store,
                fetcher,
                jitter=0,
                max_entries=max_entries,
                clock=lambda: NOW,
                rng=random.Random(0),
            )
            return list(await asyncio.gather(*(poller.poll(source) for source in sources)))

    return asyncio.run(run())


def test_second_poll_is_conditional_and_a_304_writes_only_state(
    server: FeedServer, store: Store
) -> None:
    server.route("/voa", static(VOA, etag='"v1"'))
    source = _source(server, "/voa")
    (first,) = _poll(store, source)
    assert (first.status, first.counts.new) == ("ok", 1)
    updated_before = store.last_updated()
    (second,) = _poll(store, source)
    assert second.status == "not-modified"
    assert server.requests("/voa")[-1].headers["if-none-match"] == '"v1"'
    assert store.last_updated() == updated_before
    state = store.get_state(source)
    assert state.etag == '"v1"'
    assert state.next_poll == NOW + INTERVAL
    assert state.last_success == NOW


def test_permanent_redirect_moves_the_stored_url_temporary_does_not(
    server: FeedServer, store: Store
) -> None:
    server.route("/new", static(VOA))
    server.route("/moved", redirect("/new", 301))
    server.route("/elsewhere", redirect("/new", 302))
    moved, visiting = _source(server, "/moved", "moved"), _source(server, "/elsewhere", "visit")
    _poll(store, moved, visiting)
    assert store.get_state(moved).url == server.url("/new")
    assert store.get_state(visiting).url == server.url("/elsewhere")
    _poll(store, moved)
    assert len(server.requests("/moved")) == 1  # the second poll went straight to /new


def test_gone_disables_the_source_and_says_so(
    server: FeedServer, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    server.route("/gone", status(410))
    source = _source(server, "/gone", "gone")
    with caplog.at_level(logging.INFO):
        (first,) = _poll(store, source)
        (second,) = _poll(store, source)
    assert first.status == "failed" and first.error is not None and first.error.kind == "gone"
    assert second.status == "disabled"
    assert len(server.requests("/gone")) == 1
    assert "410" in (store.get_state(source).disabled_reason or "")
    # The line names the source through log.bound (see test_log.py).
    assert any("not polling a disabled source" in message for message in caplog.messages)


def test_rate_limit_honours_retry_after(server: FeedServer, store: Store) -> None:
    server.route("/busy", status(429, retry_after="7200"))
    source = _source(server, "/busy", "busy")
    (outcome,) = _poll(store, source)
    state = store.get_state(source)
    assert outcome.error is not None and outcome.error.kind == "rate-limited"
    assert state.next_poll == NOW + timedelta(hours=2)  # Retry-After beats the short backoff
    assert state.consecutive_failures == 1


def test_failures_back_off_and_recover(server: FeedServer, store: Store) -> None:
    server.route("/flaky", status(500))
    source = _source(server, "/flaky", "flaky")
    delays = []
    for _ in range(3):
        _poll(store, source)
        state = store.get_state(source)
        assert state.next_poll is not None
        delays.append(state.next_poll - NOW)
    assert delays == [INTERVAL / 4, INTERVAL / 2, INTERVAL]
    assert (state.consecutive_failures, state.last_error_kind) == (3, "http")
    assert "500" in (state.last_error or "")
    server.route("/flaky", static(VOA))
    _poll(store, source)
    state = store.get_state(source)
    assert (state.consecutive_failures, state.last_error, state.next_poll) == (
        0,
        None,
        NOW + INTERVAL,
    )


def test_every_fault_is_reported_by_name_and_the_good_source_is_stored(
    server: FeedServer, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    server.route("/good", static(VOA))
    server.route("/reset", reset())
    server.route("/invalid", static(b"<rss><channel><item><title>x</ti"))
    server.route("/html", static(b"<html><body><p>no feed here</p></body></html>"))
    sources = [
        _source(server, "/good", "good"),
        _source(server, "/reset", "resetting"),
        _source(server, "/invalid", "invalid"),
        _source(server, "/html", "html"),
        _source(server, "/missing", "missing"),
    ]
    with caplog.at_level(logging.WARNING):
        outcomes = {outcome.source_id: outcome for outcome in _poll(store, *sources)}
    assert outcomes["good"].counts.new == 1
    for name in ("resetting", "invalid", "html", "missing"):
        assert outcomes[name].failed, name
        assert any(f"source={name} " in message for message in caplog.messages), name
    assert store.article_counts() == {"good": 1}
    assert store.get_state(sources[4]).last_error_kind == "http"


def test_wrong_charset_is_decoded_not_stored_as_mojibake(server: FeedServer, store: Store) -> None:
    text = ZAOBAO.decode("utf-8")
    server.route("/gbk", wrong_charset(text, actual="gb18030", declared="utf-8"))
    source = _source(server, "/gbk", "zaobao", adapter="zaobao")
    (outcome,) = _poll(store, source)
    assert outcome.counts.new == 20
    titles = {stored.article.title for stored in store.latest(limit=50)}
    assert "港媒：江泽民遗体上午火化 301医院一带交通管制" in titles


def test_entries_per_poll_are_bounded(server: FeedServer, store: Store) -> None:
    server.route("/zaobao", static(ZAOBAO))
    (outcome,) = _poll(store, _source(server, "/zaobao", "zaobao", "zaobao"), max_entries=5)
    assert outcome.counts.new == 5
    assert store.article_counts() == {"zaobao": 5}


def test_storage_failure_is_reported_not_raised(server: FeedServer, tmp_path: Path) -> None:
    server.route("/voa", static(VOA))
    with Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}") as broken:
        broken.engine.dispose()
        (tmp_path / "db.sqlite").unlink()
        (tmp_path / "db.sqlite").mkdir()  # the database path is now a directory
        (outcome,) = _poll(broken, _source(server, "/voa"))
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error.kind == "storage"


def _poll_with(store: Store, source: Source, executor: object) -> PollOutcome:
    async def run() -> PollOutcome:
        async with Fetcher(FetchLimits()) as fetcher:
            poller = Poller(store, fetcher, jitter=0, clock=lambda: NOW, executor=executor)  # type: ignore[arg-type]
            return await poller.poll(source)

    return asyncio.run(run())


def test_a_process_pool_gives_the_same_articles_as_a_thread(
    server: FeedServer, tmp_path: Path
) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    server.route("/zaobao", static(ZAOBAO))
    source = _source(server, "/zaobao", "zaobao", "zaobao")
    results = []
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        for name, executor in (("thread", None), ("pool", pool)):
            with Store.open(f"sqlite:///{tmp_path / name}.db") as store:
                assert _poll_with(store, source, executor).counts.new == 20
                results.append([stored.article for stored in store.latest(limit=50)])
    assert results[0] == results[1]


def test_a_non_feed_fails_with_the_same_one_line_error_in_a_process_pool_and_a_thread(
    server: FeedServer, tmp_path: Path
) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from aggregator.normalize import init_worker

    markdown = b"# Notes\n\nNot a feed: *Markdown* with a [link](https://example.org).\n"
    server.route("/notes.md", static(markdown, content_type="text/markdown"))
    source = _source(server, "/notes.md", "notes", "generic")
    errors = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        1, mp_context=context, initializer=init_worker, initargs=("INFO",)
    ) as pool:
        for name, executor in (("thread", None), ("pool", pool)):
            with Store.open(f"sqlite:///{tmp_path / name}.db") as store:
                outcome = _poll_with(store, source, executor)
                state = store.get_state(source)
            assert outcome.status == "failed"
            errors.append((type(outcome.error), str(outcome.error), state.last_error))
    (thread_error, pool_error) = errors
    assert pool_error == thread_error
    kind, message, last_error = pool_error
    assert kind is ParseError
    assert last_error == message
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith("not a readable feed: source=notes url=")


def test_a_compressed_feed_is_inflated_by_the_parse_within_the_fetch_cap(
    server: FeedServer, tmp_path: Path
) -> None:
    """The poller leaves a feed's gzip to the parse (in a worker when there is one):
    the same articles as inflated in the fetch, and a bomb or a broken stream fails
    its own poll with the fetch's one-line error, stored, while the others store."""
    from aggregator.workers import ParsePool

    cap = FetchLimits().max_bytes
    server.route("/zaobao", static(ZAOBAO, content_encoding="gzip"))
    server.route("/bomb", static(b" " * (cap + 1), content_encoding="gzip"))
    server.route(
        "/broken", static(gzip.compress(ZAOBAO)[:-12], headers={"Content-Encoding": "gzip"})
    )
    good = _source(server, "/zaobao", "zaobao", "zaobao")
    bomb = _source(server, "/bomb", "bomb", "generic")
    broken = _source(server, "/broken", "broken", "generic")
    pool = ParsePool(1)
    pool.start()
    assert pool.wait_started(60)
    stored = []
    try:
        for name, executor in (("thread", None), ("pool", pool)):
            with Store.open(f"sqlite:///{tmp_path / name}.db") as store:
                outcomes = {
                    source.id: _poll_with(store, source, executor)
                    for source in (good, bomb, broken)
                }
                assert outcomes["zaobao"].counts.new == 20, name
                stored.append([item.article for item in store.latest(limit=50)])
                too_large, corrupt = outcomes["bomb"].error, outcomes["broken"].error
                assert too_large is not None and too_large.kind == "too-large", name
                assert str(too_large).startswith(
                    f"body is over the {cap} byte cap after decompression: source=bomb url="
                )
                assert corrupt is not None and corrupt.kind == "fetch", name
                assert str(corrupt).startswith("corrupt compressed body: source=broken url=")
                assert store.get_state(bomb).last_error == str(too_large)
    finally:
        pool.shutdown()
    assert stored[0] == stored[1]


def test_the_poller_hands_the_parse_a_feed_still_compressed(
    server: FeedServer, store: Store
) -> None:
    sent: list[tuple[bytes, object]] = []

    class Recording(ThreadPoolExecutor):
        def submit(
            self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
        ) -> Future[_T]:
            assert isinstance(fn, functools.partial)  # the parse of one document
            sent.append((fn.args[0], fn.keywords["encodings"]))
            return super().submit(fn, *args, **kwargs)

    server.route("/zaobao", static(ZAOBAO, content_encoding="gzip"))
    with Recording(1) as executor:
        outcome = _poll_with(store, _source(server, "/zaobao", "zaobao", "zaobao"), executor)
    assert outcome.counts.new == 20
    [(content, encodings)] = sent
    assert encodings == ("gzip",)
    assert gzip.decompress(content) == ZAOBAO


def test_a_broken_pool_falls_back_to_threads(server: FeedServer, store: Store) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    server.route("/voa", static(VOA))
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    pool.submit(int).result()  # start the worker
    for process in list(pool._processes.values()):  # a worker dies (OOM killer, kill -9)
        process.kill()
        process.join()
    try:
        outcome = _poll_with(store, _source(server, "/voa"), pool)
    finally:
        pool.shutdown()
    assert (outcome.status, outcome.counts.new) == ("ok", 1)


@pytest.mark.parametrize("route", ["/voa", "/missing"])  # stored articles, and a failure
def test_a_claimed_poll_gives_its_lease_back_with_its_final_write(
    server: FeedServer, store: Store, route: str
) -> None:
    from sqlalchemy import select

    from aggregator.store.tables import leases

    server.route("/voa", static(VOA))
    source = _source(server, route)
    (state,) = store.claim_due_states([source], now=NOW, owner="me", lease=INTERVAL, limit=5)

    async def run() -> PollOutcome:
        async with Fetcher(FetchLimits()) as fetcher:
            poller = Poller(store, fetcher, jitter=0, clock=lambda: NOW)
            return await poller.poll(source, state=state, owner="me")

    outcome = asyncio.run(run())
    assert outcome.released
    with store.engine.connect() as connection:
        owner = connection.execute(select(leases.c.owner).where(leases.c.source_id == "voa"))
        assert owner.scalar_one() is None
    assert store.get_state(source).last_attempt == NOW


# -- group commit of polls that stored nothing --------------------------------------------


def test_ends_of_polls_are_written_in_batches_and_a_bad_row_fails_only_its_poll(
    store: Store,
) -> None:
    """304s and failures finishing together share transactions; each still gets its result.

    A state row the database refuses (NULL in a NOT NULL column) fails its own poll with
    a StorageError naming it, and the other polls of its batch are saved all the same.
    """
    batches: list[int] = []
    finish_polls = store.finish_polls

    def recording(finished: Sequence[tuple[SourceState, str | None]]) -> None:
        batches.append(len(finished))
        finish_polls(finished)

    store.finish_polls = recording  # type: ignore[method-assign]
    states = [SourceState(f"s{n}", f"https://example.org/{n}", etag=f'"{n}"') for n in range(12)]
    bad = dataclasses.replace(states[5], consecutive_failures=None)  # type: ignore[arg-type]

    async def run() -> list[BaseException | None]:
        commits = _GroupCommit(store)
        results = await asyncio.gather(
            *(commits.commit(state, None) for state in [*states[:5], bad, *states[6:]]),
            return_exceptions=True,
        )
        return list(results)

    results = asyncio.run(run())
    assert isinstance(results[5], StorageError) and "s5" in str(results[5])
    assert [r for n, r in enumerate(results) if n != 5] == [None] * 11
    # All twelve ends arrived before the writer ran: one transaction, which the bad row
    # failed; then each poll alone, so only the bad one fails.
    assert batches == [12] + [1] * 12
    saved = {state.source_id: state for state in store.states()}
    assert sorted(saved) == sorted(f"s{n}" for n in range(12) if n != 5)
    assert saved["s7"].etag == '"7"'
