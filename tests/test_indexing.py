"""The search index written behind the writes: the daemon takes the backlog in the
pauses between polls, and during a long burst only once it passes its bound."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from aggregator import scheduler
from aggregator.scheduler import Daemon
from aggregator.search import parse_query
from aggregator.search.text import tokens_of
from aggregator.settings import Settings
from aggregator.store import Store, _search
from aggregator.types import Article, RawEntry, Source, SourceState
from aggregator.workers import start_tokens

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _articles(count: int) -> list[Article]:
    return [
        Article("a", "A", f"防长 {n}", f"https://a.example/{n}", "<p>x</p>", NOW, NOW)
        for n in range(count)
    ]


def _poll_saver(store: Store) -> Callable[[Article], None]:
    """Stores an article as a poll of source ``a`` does (a rewrite when its link is
    stored already)."""
    source = Source("a", "A", "https://a.example/feed")

    def save(article: Article) -> None:
        entry = RawEntry(guid=article.link, link=article.link, title=article.title)
        store.save_poll(source, [(entry, article)], SourceState("a", source.url), now=NOW)

    return save


def _daemon(store: Store, executor: Executor | None) -> Daemon:
    # Only the indexing is exercised: of the poller, only its parse pool is read.
    poller = SimpleNamespace(executor=executor)
    return Daemon(Settings(database_url="sqlite://"), [], store, poller)  # type: ignore[arg-type]


@pytest.mark.parametrize("pool", [False, True], ids=["in-thread", "pool"])
def test_the_daemon_indexes_in_a_pause_and_waits_while_polls_run(
    database_url: str, monkeypatch: pytest.MonkeyPatch, pool: bool
) -> None:
    with (
        Store.open(database_url) as store,
        ThreadPoolExecutor(2) if pool else contextlib.nullcontext() as executor,
    ):
        store.import_articles(_articles(30), now=NOW)
        daemon = _daemon(store, executor)

        async def run() -> None:
            poll = asyncio.get_running_loop().create_future()
            daemon.in_flight["x"] = poll  # type: ignore[assignment]
            await daemon.index_behind()
            assert store.search_backlog() == 30  # a poll runs: the index waits
            monkeypatch.setattr(scheduler, "INDEX_BACKLOG_MAX", 10)
            await daemon.index_behind()
            assert store.search_backlog() == 0  # past the bound it goes on anyway
            poll.cancel()

        asyncio.run(run())
        store.import_articles(_articles(40)[30:], now=NOW)

        async def pause() -> None:
            daemon.in_flight.clear()
            await daemon.index_soon()  # what the tick does
            await daemon.index_soon()  # a second tick meanwhile starts nothing more
            await asyncio.gather(*daemon._background)

        asyncio.run(pause())
        assert store.search_backlog() == 0
        assert len(store.search(parse_query("防长"), limit=100)) == 40


def test_the_queue_is_taken_oldest_first_in_bounded_batches(database_url: str) -> None:
    with Store.open(database_url) as store:
        store.import_articles(_articles(7), now=NOW)
        ids = sorted(item.id for item in store.latest(limit=100))

        def indexed() -> set[int]:
            with store.engine.connect() as conn:
                return _search.candidates(conn, parse_query("防长"))

        assert store.index_pending(limit=3) == 3
        assert indexed() == set(ids[:3])
        assert [store.index_pending(limit=3) for _ in range(3)] == [3, 1, 0]
        assert indexed() == set(ids)
        assert store.search_backlog() == 0


def test_an_article_rewritten_while_its_tokens_are_made_stays_queued(database_url: str) -> None:
    """The tokens are made outside the write transaction: a rewrite that lands in
    between must not be covered by the old text's tokens."""
    first = Article("a", "A", "防长 shoigu", "https://a.example/1", "<p>x</p>", NOW, NOW)
    with Store.open(database_url) as store:
        save = _poll_saver(store)
        save(first)

        def rewriting_meanwhile(texts: Sequence[tuple[str, str]]) -> list[str]:
            save(replace(first, title="防长 lavrov"))
            return tokens_of(texts)

        assert store.index_pending(tokenize=rewriting_meanwhile) == 1
        assert store.search_backlog() == 1  # the new text still waits
        with store.engine.connect() as conn:
            assert _search.candidates(conn, parse_query("shoigu")) == set()
        assert store.index_pending() == 1
        assert store.search_backlog() == 0
        [found] = store.search(parse_query("lavrov"))
        with store.engine.connect() as conn:
            assert _search.candidates(conn, parse_query("lavrov")) == {found.id}
            assert _search.candidates(conn, parse_query("shoigu")) == set()


def test_the_backlog_indexer_begins_the_next_batch_before_it_writes_this_one(
    database_url: str,
) -> None:
    with Store.open(database_url) as store:
        store.import_articles(_articles(7), now=NOW)
        ids = sorted(item.id for item in store.latest(limit=100))
        begun: list[tuple[int, int]] = []  # (batch size, backlog when its tokens began)

        def start(texts: Sequence[tuple[str, str]]) -> Callable[[], list[str]]:
            begun.append((len(texts), store.search_backlog()))
            made = tokens_of(texts)
            return lambda: made

        indexer = store.backlog_indexer(start, limit=3)
        steps = []
        while done := indexer.step():
            steps.append(done)
        assert steps == [3, 3, 1]
        # The second batch began while the first still waited, and so on; each batch's
        # tokens were begun once.
        assert begun == [(3, 7), (3, 7), (1, 4)]
        assert store.search_backlog() == 0
        with store.engine.connect() as conn:
            assert _search.candidates(conn, parse_query("防长")) == set(ids)


def test_the_backlog_indexer_takes_an_article_rewritten_meanwhile_on_a_later_pass(
    database_url: str,
) -> None:
    first = Article("a", "A", "防长 shoigu", "https://a.example/one", "<p>x</p>", NOW, NOW)
    with Store.open(database_url) as store:
        save = _poll_saver(store)
        save(first)
        store.import_articles(_articles(4), now=NOW)
        rewrites = [replace(first, title="防长 lavrov")]

        def start(texts: Sequence[tuple[str, str]]) -> Callable[[], list[str]]:
            made = tokens_of(texts)

            def tokens() -> list[str]:
                if rewrites:  # lands between the first batch's read and its write
                    save(rewrites.pop())
                return made

            return tokens

        indexer = store.backlog_indexer(start, limit=2)
        steps = []
        while done := indexer.step():
            steps.append(done)
        # 5 articles in batches of two past the cursor, then the rewritten one from
        # the head of the queue, then nothing.
        assert steps == [2, 2, 1, 1]
        assert store.search_backlog() == 0
        [found] = store.search(parse_query("lavrov"))
        with store.engine.connect() as conn:
            assert _search.candidates(conn, parse_query("lavrov")) == {found.id}
            assert _search.candidates(conn, parse_query("shoigu")) == set()


def test_a_batch_of_tokens_started_on_a_pool_is_collected_in_order() -> None:
    texts = [(f"防长 {n}", "<p>x</p>") for n in range(7)]
    with ThreadPoolExecutor(2) as pool:
        collect = start_tokens(pool)(texts)
        assert collect() == tokens_of(texts)
    assert start_tokens(None)(texts)() == tokens_of(texts)
