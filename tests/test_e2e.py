"""End to end: the real CLI polls a real loopback HTTP server into a real SQLite file.

Every source's fixture feed is served by :class:`FeedServer`; the daemon's own
entry point (``python -m aggregator``) runs the poll in a subprocess, exactly as
a user would, and the database is then read back through the store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
from feedserver import FeedServer, stall, static, status
from lxml import etree

from aggregator.store import Store
from aggregator.urls import canonical_url

FIXTURES = Path(__file__).parent / "fixtures"
FEEDS = {
    # source id: (adapter, display name, fixture feed)
    "zaobao": ("zaobao", "联合早报", FIXTURES / "feeds" / "zaobao-1.xml"),
    "rfi": ("rfi", "法广", FIXTURES / "adapters" / "seeds-rfi.xml"),
    "rfa": ("rfa", "自由亚洲电台", FIXTURES / "feeds" / "rfa-1.xml"),
    "rfa-seeds": ("rfa", "自由亚洲电台", FIXTURES / "adapters" / "seeds-rfa.xml"),
    "voa": ("voa", "美国之音", FIXTURES / "adapters" / "seeds-voa.xml"),
    # The same two Zaobao stories through two different feeds (mirror and "site").
    "zaobao-seeds": ("zaobao", "联合早报", FIXTURES / "adapters" / "seeds-zaobao.xml"),
    "zaobao-site": ("zaobao", "联合早报网", FIXTURES / "adapters" / "seeds-zaobao.xml"),
}
ADAPTER_OF = {"zaobao-live": "zaobao"}
JUNK = (
    "获取更多RSS",
    "dfp-ad",
    "subscribe.sph.com.sg",
    "weserv.nl",
    "data-src",
    "<script",
    "innity",
)


def _stories(path: Path) -> set[str]:
    """Distinct stories of a fixture feed, read without feedparser: item links, canonical.

    Some fixtures carry one story twice (raw and percent-encoded link, with and
    without a date); those must be stored once.
    """
    tree = etree.parse(str(path))
    links = tree.xpath("//*[local-name()='item']/*[local-name()='link']/text()")
    return {canonical_url(link.strip()) for link in links}


def _write_config(
    tmp_path: Path, server: FeedServer, sources: dict[str, str], database_url: str
) -> Path:
    blocks = []
    for source_id, path in sources.items():
        adapter, name = (
            FEEDS[source_id][:2]
            if source_id in FEEDS
            else (
                ADAPTER_OF.get(source_id, "generic"),
                source_id,
            )
        )
        blocks.append(
            f'[[source]]\nid = "{source_id}"\nname = "{name}"\n'
            f'url = "{server.url(path)}"\nadapter = "{adapter}"\n'
        )
    (tmp_path / "sources.toml").write_text("\n".join(blocks), encoding="utf-8")
    config = tmp_path / "aggregator.toml"
    config.write_text(
        f'database_url = "{database_url}"\n'
        f'sources_file = "{tmp_path / "sources.toml"}"\n'
        "allow_private_addresses = true\n"
        "total_timeout = 3.0\nread_timeout = 2.0\n",
        encoding="utf-8",
    )
    return config


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGGREGATOR_")}
    env["COLUMNS"] = "250"
    return subprocess.run(
        [sys.executable, "-m", "aggregator", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


POLL_STARTED = datetime.now(UTC)
#: The live item's URL carries its Singapore day, as every Zaobao story URL does.
LIVE_STORY = (
    "https://www.zaobao.com/realtime/china/story"
    f"{(POLL_STARTED - timedelta(minutes=10)).astimezone(timezone(timedelta(hours=8))):%Y%m%d}-1"
)


def _skewed_zaobao_feed() -> bytes:
    """One Zaobao item published 10 minutes ago, its Singapore time labelled +0000."""
    singapore_wall_clock = POLL_STARTED + timedelta(hours=8) - timedelta(minutes=10)
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>联合早报</title>'
        "<link>http://www.zaobao.com</link><description>d</description><item><title>时差</title>"
        f"<link>{LIVE_STORY.replace('.com/', '.com//')}?utm_source=x</link>"
        f"<description>&lt;p&gt;正文&lt;/p&gt;</description><pubDate>"
        f"{format_datetime(singapore_wall_clock).replace('-0000', '+0000')}</pubDate></item>"
        "</channel></rss>"
    ).encode()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as feed_server:
        for source_id, (_, _, path) in FEEDS.items():
            feed_server.route(f"/{source_id}.xml", static(path.read_bytes(), etag=f'"{source_id}"'))
        feed_server.route("/zaobao-live.xml", static(_skewed_zaobao_feed()))
        yield feed_server


def test_poll_stores_every_source_once_and_cleanly(
    server: FeedServer, tmp_path: Path, database_url: str
) -> None:
    config = _write_config(
        tmp_path, server, {name: f"/{name}.xml" for name in [*FEEDS, "zaobao-live"]}, database_url
    )
    first = _cli(config, "poll")
    assert first.returncode == 0, first.stderr
    for source_id in FEEDS:
        assert source_id in first.stdout

    store = Store.open(database_url)
    try:
        stored = store.latest(limit=1000)
        counts = store.article_counts()
        backlog = store.search_backlog()
    finally:
        store.close()
    assert backlog == 0  # the one-shot poll indexed what it stored before exiting

    expected = len(set().union(*(_stories(path) for _, _, path in FEEDS.values())))
    assert expected == 20 + 15 + 1 + 1 + 1 + 2
    expected += 1  # zaobao-live
    assert len(stored) == expected
    assert len({item.article.link for item in stored}) == expected  # no duplicates
    # The two Zaobao stories came through two feeds: stored once, with both sources.
    seeds = [item for item in stored if "story2021112" in item.article.link]
    assert len(seeds) == 2
    assert all(
        {p.source_id for p in item.provenance} == {"zaobao-seeds", "zaobao-site"} for item in seeds
    )
    assert counts["zaobao-site"] == 2 and counts["zaobao-seeds"] == 2

    by_link = {item.article.link: item.article for item in stored}
    # UTC times right: "16:48:09 +0800" is 08:48:09Z; the feedx '//' in the path is gone.
    jiang = by_link["https://www.zaobao.com/realtime/china/story20221205-1340446"]
    assert jiang.published == datetime(2022, 12, 5, 8, 48, 9, tzinfo=UTC)
    # The Singapore wall-clock time sent as "+0000" (the seeds' 8-hour bug) is repaired.
    live = by_link[LIVE_STORY]
    assert live.published is not None
    assert abs(live.published - (POLL_STARTED - timedelta(minutes=10))) < timedelta(minutes=2)
    # RFA entries without a feed date get one from the URL (US Eastern), never NaN.
    rfa = by_link[
        "https://www.rfa.org/mandarin/yataibaodao/junshiwaijiao/"
        "lu-china-russia-defense-ministers-meet-10142024110112.html"
    ]
    assert rfa.published == datetime(2024, 10, 14, 15, 1, 12, tzinfo=UTC)
    now = datetime.now(UTC)
    for item in stored:
        article = item.article
        assert article.published is not None  # never NaN
        assert article.published <= now
        for junk in JUNK:
            assert junk not in article.body, (article.link, junk)

    second = _cli(config, "poll")
    assert second.returncode == 0, second.stderr
    store = Store.open(database_url)
    try:
        assert len(store.latest(limit=1000)) == expected  # nothing new the second time
        states = {state.source_id: state for state in store.states()}
    finally:
        store.close()
    # The second poll was conditional: the server saw our ETag and answered 304.
    assert server.requests("/voa.xml")[-1].headers.get("if-none-match") == '"voa"'
    assert all(state.consecutive_failures == 0 for state in states.values())


def test_broken_feeds_do_not_stop_the_others(
    server: FeedServer, tmp_path: Path, database_url: str
) -> None:
    server.route("/status-500.xml", status(500))
    server.route("/invalid.xml", static(b"<html><body>not a feed<p>at all"))
    server.route("/stalled.xml", stall(seconds=30))
    config = _write_config(
        tmp_path,
        server,
        {
            "voa": "/voa.xml",
            "broken-500": "/status-500.xml",
            "broken-xml": "/invalid.xml",
            "broken-slow": "/stalled.xml",
        },
        database_url,
    )
    result = _cli(config, "poll")
    assert result.returncode == 0, result.stderr  # not every source failed
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("│")}
    assert "ok" in lines["voa"]
    assert "failed" in lines["broken-500"] and "500" in lines["broken-500"]
    assert "failed" in lines["broken-xml"]
    assert "failed" in lines["broken-slow"] and "timed out" in lines["broken-slow"]

    store = Store.open(database_url)
    try:
        assert store.article_counts().get("voa") == 1
        states = {state.source_id: state for state in store.states()}
    finally:
        store.close()
    assert states["broken-500"].last_error_kind == "http"
    assert states["broken-xml"].last_error_kind == "parse"
    assert states["broken-slow"].last_error_kind == "timeout"
    assert all(states[name].consecutive_failures == 1 for name in ("broken-500", "broken-xml"))


def test_poll_exits_non_zero_when_every_source_failed(
    server: FeedServer, tmp_path: Path, database_url: str
) -> None:
    server.route("/gone.xml", status(410))
    config = _write_config(tmp_path, server, {"gone": "/gone.xml"}, database_url)
    result = _cli(config, "poll")
    assert result.returncode == 1
    assert "410" in result.stdout


def test_editing_a_source_url_takes_effect_even_after_a_410(
    server: FeedServer, tmp_path: Path, database_url: str
) -> None:
    """A user who fixes the URL of a gone feed gets the new feed polled, not 'disabled'."""
    server.route("/gone.xml", status(410))
    server.route("/voa.xml", static(FEEDS["voa"][2].read_bytes()))
    _write_config(tmp_path, server, {"voa": "/gone.xml"}, database_url)
    assert _cli(tmp_path / "aggregator.toml", "poll").returncode == 1

    config = _write_config(tmp_path, server, {"voa": "/voa.xml"}, database_url)
    result = _cli(config, "poll")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "configured URL changed" in result.stderr
    assert len(server.requests("/voa.xml")) == 1
    assert len(server.requests("/gone.xml")) == 1
