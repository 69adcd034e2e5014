"""Full text for summary-only feeds, against the loopback server and a real database.

The feed carries teasers; its items link to realistic article pages (navigation,
related links, comments, ads, a cookie banner around the article).  Every other
test file leaves ``fulltext`` off, so no test reaches for a page it did not serve.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

import pytest
from conftest import RunCli
from feedserver import Exchange, FeedServer, redirect, static, status

from aggregator.adapters import register
from aggregator.adapters.generic import AdapterSpec, GenericAdapter
from aggregator.fetch import Fetcher, FetchLimits
from aggregator.fulltext import wants_page
from aggregator.pipeline import Poller, PollOutcome
from aggregator.store import Store
from aggregator.types import Article, RawEntry, Source

PAGE = (Path(__file__).parent / "fixtures" / "pages" / "article.html").read_text(encoding="utf-8")
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
CHROME = ("Cookie", "相关新闻", "网友甲", "限时优惠", "热门推荐", "订阅我们的通讯", "版权所有")
TITLES = ("市政府宣布新的基础设施计划", "河流治理工程进入第二阶段", "新图书馆下月开放")

register("selector-test")(GenericAdapter(AdapterSpec(content_selector=("#comments",))))


def _page(n: int) -> str:
    lead = f"第{n}篇：{TITLES[n - 1]}，这是文章的导语部分。"
    return PAGE.replace("{title}", TITLES[n - 1]).replace("{lead}", lead).replace("{n}", str(n))


def _feed(server: FeedServer, *, updated: str = "2026-11-21T10:00:00Z", count: int = 3) -> str:
    entries = "".join(
        f"""<entry><id>urn:test:{n}</id><title>{TITLES[n - 1]}</title>
        <link href="{server.url(f"/a/{n}")}"/><updated>{updated}</updated>
        <summary type="html">{escape(f"<p>第{n}篇：{TITLES[n - 1]}……</p>")}</summary></entry>"""
        for n in range(1, count + 1)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>Teasers</title><id>urn:test</id><updated>{updated}</updated>{entries}</feed>"
    )


def _source(server: FeedServer, adapter: str = "generic") -> Source:
    return Source(
        id="teasers",
        name="Teasers",
        url=server.url("/feed"),
        adapter=adapter,
        interval=timedelta(minutes=30),
        allow_private=True,
        fulltext="auto",
    )


def _serve(server: FeedServer, *, etag: str | None = None, count: int = 3) -> None:
    server.route("/feed", static(_feed(server, count=count), content_type="application/atom+xml"))
    for n in range(1, count + 1):
        server.route(
            f"/a/{n}", static(_page(n), content_type="text/html; charset=utf-8", etag=etag)
        )


def _articles(store: Store) -> dict[str, Article]:
    return {stored.article.link: stored.article for stored in store.latest(limit=50)}


def _poll(
    store: Store, source: Source, *, wait: float = 10, pages_per_poll: int = 20
) -> PollOutcome:
    async def run() -> PollOutcome:
        async with Fetcher(FetchLimits(total_timeout=5, read_timeout=5)) as fetcher:
            polling = Poller(
                store,
                fetcher,
                jitter=0,
                clock=lambda: NOW,
                rng=random.Random(0),
                pages_per_poll=pages_per_poll,
            )
            outcome = await polling.poll(source)
            await polling.wait_for_pages(wait)
            return outcome

    return asyncio.run(run())


def test_summary_only_feed_stores_each_articles_full_text_without_chrome(
    server: FeedServer, store: Store
) -> None:
    _serve(server)
    source = _source(server)
    assert _poll(store, source).counts.new == 3
    articles = _articles(store)
    assert len(articles) == 3
    for n in (1, 2, 3):
        article = articles[server.url(f"/a/{n}")]
        assert article.body_source == "page"
        assert f"这是第{n}篇文章的最后一段" in article.body
        assert "经济学家" in article.body and "<img" in article.body
        for chrome in CHROME:
            assert chrome not in article.body, chrome
    assert server.requests("/a/1")[0].headers["accept"].startswith("text/html")


def test_feed_summaries_are_stored_first_when_pages_are_slow(
    server: FeedServer, store: Store
) -> None:
    _serve(server, count=1)

    def slow(exchange: Exchange) -> None:
        exchange.sleep(1.5)
        static(_page(1), content_type="text/html")(exchange)

    server.route("/a/1", slow)
    source = _source(server)

    async def run() -> tuple[Article, Article]:
        async with Fetcher(FetchLimits(total_timeout=5, read_timeout=5)) as fetcher:
            poller = Poller(store, fetcher, jitter=0, clock=lambda: NOW)
            outcome = await poller.poll(source)
            assert outcome.counts.new == 1
            (before,) = _articles(store).values()
            await poller.wait_for_pages(10)
            (after,) = _articles(store).values()
            return before, after

    before, after = asyncio.run(run())
    assert before.body_source == "feed" and "最后一段" not in before.body
    assert after.body_source == "page" and "这是第1篇文章的最后一段" in after.body


def test_page_redirecting_to_another_private_address_is_refused(
    server: FeedServer, store: Store
) -> None:
    _serve(server, count=2)
    server.route("/a/1", redirect(f"http://127.0.0.2:{server.port}/a/1", 302))
    source = _source(server)
    _poll(store, source)
    articles = _articles(store)
    refused = articles[server.url("/a/1")]
    assert refused.body_source == "feed" and "最后一段" not in refused.body
    assert articles[server.url("/a/2")].body_source == "page"  # the feed's own host is fine
    (page,) = store.pages_for(source.id, [server.url("/a/1")]).values()
    assert page.failure is not None and "127.0.0.2" in page.failure and "not public" in page.failure
    # A refusal is permanent: the next poll does not try that page again.
    _poll(store, source)
    assert len(server.requests("/a/1")) == 1


def test_unchanged_page_is_not_downloaded_again(server: FeedServer, store: Store) -> None:
    _serve(server, etag='"p1"', count=1)
    source = _source(server)
    _poll(store, source)
    _poll(store, source)  # same entry: the stored page is reused, nothing is fetched
    assert len(server.requests("/a/1")) == 1
    (article,) = _articles(store).values()
    assert article.body_source == "page"  # a re-poll does not put the summary back

    # The entry changed: its page is asked for again, conditionally, and is unchanged.
    feed = _feed(server, updated="2026-11-21T11:00:00Z", count=1)
    server.route("/feed", static(feed, content_type="application/atom+xml"))
    _poll(store, source)
    again = server.requests("/a/1")
    assert len(again) == 2 and again[1].headers["if-none-match"] == '"p1"'
    (article,) = _articles(store).values()
    assert article.body_source == "page" and "这是第1篇文章的最后一段" in article.body


def test_a_page_that_is_not_found_is_not_fetched_again_but_a_500_is(
    server: FeedServer, store: Store
) -> None:
    _serve(server, count=2)
    server.route("/a/1", status(404))
    server.route("/a/2", status(500))
    source = _source(server)
    _poll(store, source)
    _poll(store, source)
    assert (len(server.requests("/a/1")), len(server.requests("/a/2"))) == (1, 2)
    assert {article.body_source for article in _articles(store).values()} == {"feed"}


def test_pages_per_poll_are_capped(server: FeedServer, store: Store) -> None:
    _serve(server)
    source = _source(server)
    _poll(store, source, pages_per_poll=2)
    fetched = sum(len(server.requests(f"/a/{n}")) for n in (1, 2, 3))
    assert fetched == 2
    _poll(store, source, pages_per_poll=2)
    assert {article.body_source for article in _articles(store).values()} == {"page"}


def test_adapter_content_selector_wins_over_the_generic_extraction(
    server: FeedServer, store: Store
) -> None:
    _serve(server, count=1)
    _poll(store, _source(server, adapter="selector-test"))
    (article,) = _articles(store).values()
    assert "网友甲" in article.body and "最后一段" not in article.body


def test_renormalize_extracts_from_stored_pages_without_refetching(
    server: FeedServer, store: Store, run_cli: RunCli
) -> None:
    _serve(server, count=1)
    source = _source(server)
    _poll(store, source)
    requests = len(server.requests())
    result = run_cli(
        store,
        f'[[source]]\nid = "teasers"\nname = "Teasers"\nurl = "{source.url}"\n'
        'allow_private = true\nfulltext = "auto"\n',
        "renormalize",
    )
    assert result.exit_code == 0, result.output
    assert len(server.requests()) == requests
    # The raw entry is the teaser: without the stored page this would be the summary again.
    (article,) = _articles(store).values()
    assert article.body_source == "page" and "这是第1篇文章的最后一段" in article.body


@pytest.mark.parametrize(
    ("content", "summary", "mode", "expected"),
    [
        ("<p>短短一句话。</p>", None, "auto", True),
        ("<p>" + "长" * 300 + "</p>", None, "auto", False),
        ("<p>" + "长" * 300 + "...more</p>", None, "auto", True),
        ("<p>" + "长" * 300 + '<a href="/x">阅读全文</a></p>', None, "auto", True),
        ("<p>" + "长" * 300 + "…</p>", None, "auto", True),
        ("<p>" + "长" * 300 + "</p>", "<div>" + "长" * 300 + "</div>", "auto", True),
        ("<p>" + "长" * 300 + "</p>", "<p>导语</p>", "auto", False),
        ("<p>" + "长" * 300 + "</p>", None, True, True),
        ("<p>短</p>", None, False, False),
    ],
)
def test_which_entries_are_summaries(
    content: str, summary: str | None, mode: bool | str, expected: bool
) -> None:
    assert wants_page(RawEntry(content=content, summary=summary), mode) is expected


def test_pruning_an_article_deletes_its_page(server: FeedServer, store: Store) -> None:
    _serve(server, count=1)
    source = _source(server)
    _poll(store, source)
    link = server.url("/a/1")
    assert store.pages_for(source.id, [link])
    later = datetime.now(UTC) + timedelta(days=2)  # retention counts from the first store
    report = store.prune(now=later, default_retention=timedelta(days=1), per_source={})
    assert report.pruned == 1
    assert store.pages_for(source.id, [link]) == {}
