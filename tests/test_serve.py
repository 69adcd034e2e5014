"""The HTTP service against a hand-written in-memory reader (a fake, not a mock).

Most tests go through Starlette's in-process TestClient; one runs the real uvicorn
server in this test's event loop, the way the CLI runs it beside the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any

import feedparser
import httpx2
import pytest
from fakereader import LatestReader
from starlette.testclient import TestClient

from aggregator.errors import StorageError
from aggregator.export import encode_cursor
from aggregator.metrics import Metrics
from aggregator.serve import SourceCatalog, build_server, create_app
from aggregator.types import (
    UTC,
    Article,
    Cursor,
    Provenance,
    SourceState,
    StoredArticle,
    UrlState,
)

BASE = "https://news.example.org"
SOURCES = {"zaobao": "联合早报", "rfa": "自由亚洲电台", "voa": "美国之音"}
T0 = datetime(2024, 3, 1, 8, 0, 0, 123000, tzinfo=UTC)


@dataclass
class FakeReader(LatestReader):
    """An in-memory ArticleReader with the store's ordering and filtering rules."""

    articles: list[StoredArticle] = field(default_factory=list)
    source_states: list[SourceState] = field(default_factory=list)
    down: bool = False
    latest_calls: int = 0
    backlog: int = 0

    def _check(self) -> None:
        if self.down:
            raise StorageError(
                "connection refused", url="postgresql://aggregator:s3cret@db/aggregator"
            )

    def _select(self, sources: Sequence[str] | None) -> list[StoredArticle]:
        return [
            stored
            for stored in self.articles
            if sources is None or any(p.source_id in sources for p in stored.provenance)
        ]

    def latest(
        self,
        *,
        sources: Sequence[str] | None = None,
        limit: int = 50,
        before: Cursor | None = None,
    ) -> list[StoredArticle]:
        self._check()
        self.latest_calls += 1
        rows = sorted(self._select(sources), key=lambda s: s.cursor, reverse=True)
        if before is not None:
            rows = [row for row in rows if row.cursor < before]
        return rows[:limit]

    def last_updated(self, sources: Sequence[str] | None = None) -> datetime | None:
        self._check()
        return max((s.updated for s in self._select(sources)), default=None)

    def article(self, article_id: int) -> StoredArticle | None:
        self._check()
        return next((s for s in self.articles if s.id == article_id), None)

    def ping(self) -> None:
        self._check()

    def states(self) -> list[SourceState]:
        self._check()
        return list(self.source_states)

    def article_counts(self) -> dict[str, int]:
        self._check()
        return dict(Counter(p.source_id for s in self.articles for p in s.provenance))

    def search_backlog(self) -> int:
        self._check()
        return self.backlog


def make_article(
    store_id: int,
    title: str,
    *,
    sources: Sequence[str] = ("zaobao",),
    published: datetime | None = None,
    link: str | None = None,
) -> StoredArticle:
    moment = published or T0 - timedelta(minutes=store_id)
    url = link or f"https://{sources[0]}.example.com/story/{store_id}"
    article = Article(
        source_id=sources[0],
        source_name=SOURCES[sources[0]],
        title=title,
        link=url,
        body=f"<p>{title} 正文</p>" * 20,  # long enough for gzip to kick in
        published=moment,
        fetched=moment,
    )
    provenance = tuple(Provenance(s, SOURCES[s], url, None, moment) for s in sources)
    return StoredArticle(store_id, article, provenance, moment + timedelta(minutes=1))


def sample_reader() -> FakeReader:
    articles = [
        make_article(1, "中俄防长视频通话", sources=("zaobao", "rfa")),
        make_article(2, "Second <b>story</b> & more", sources=("rfa",)),
        make_article(3, "美国之音报道", sources=("voa",)),
        make_article(4, "另一篇早报", sources=("zaobao",)),
        # Two articles in the very same millisecond: paging must keep both.
        make_article(5, "同一时刻 A", published=T0 - timedelta(hours=2)),
        make_article(6, "同一时刻 B", published=T0 - timedelta(hours=2)),
    ]
    states = [
        SourceState(
            "zaobao",
            "https://feedx.net/rss/zaobao.xml",
            last_success=T0,
            last_attempt=T0,
            url_states=(
                UrlState(
                    "https://feedx.net/rss/zaobao.xml",
                    "https://feedx.net/rss/zaobao.xml",
                    last_attempt=T0,
                    error_kind="http",
                    error="HTTP 503",
                ),
                UrlState(
                    "https://feedx.run/rss/zaobao.xml",
                    "https://feedx.run/rss/zaobao.xml",
                    last_attempt=T0,
                    last_success=T0,
                ),
            ),
        ),
        SourceState(
            "rfa",
            "https://www.rfa.org/mandarin/RSS",
            last_attempt=T0,
            consecutive_failures=3,
            last_error_kind="timeout",
        ),
    ]
    return FakeReader(articles, states)


@pytest.fixture
def reader() -> FakeReader:
    return sample_reader()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(reader: FakeReader, metrics: Metrics) -> TestClient:
    app = create_app(
        reader, base_url=BASE, title="新闻汇总", sources=SOURCES, max_limit=100, metrics=metrics
    )
    return TestClient(app, raise_server_exceptions=False)


def ids_in(response: httpx2.Response) -> list[str]:
    return [entry.id for entry in feedparser.parse(response.content).entries]


# --- feeds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/feed.xml", "application/rss+xml; charset=utf-8"),
        ("/atom.xml", "application/atom+xml; charset=utf-8"),
        ("/feed.json", "application/feed+json; charset=utf-8"),
    ],
)
def test_feed_endpoints_serve_the_newest_articles(
    client: TestClient, path: str, media_type: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    if path.endswith(".json"):
        titles = [item["title"] for item in response.json()["items"]]
    else:
        titles = [entry.title for entry in feedparser.parse(response.content).entries]
    assert titles == [
        "中俄防长视频通话",
        "Second <b>story</b> & more",
        "美国之音报道",
        "另一篇早报",
        "同一时刻 B",
        "同一时刻 A",
    ]


def test_source_filter_and_links_built_from_base_url(client: TestClient) -> None:
    response = client.get("/atom.xml?source=rfa", headers={"Host": "evil.example"})
    parsed = feedparser.parse(response.content)
    assert [entry.title for entry in parsed.entries] == [
        "中俄防长视频通话",
        "Second <b>story</b> & more",
    ]
    assert parsed.feed.title == "新闻汇总: 自由亚洲电台"
    links = {link.rel: link.href for link in parsed.feed.links}
    assert links["self"] == f"{BASE}/atom.xml?source=rfa"
    assert links["alternate"] == f"{BASE}/?source=rfa"
    assert b"evil.example" not in response.content


def test_several_sources_in_any_order_are_one_selection(client: TestClient) -> None:
    one = client.get("/feed.json?source=voa&source=rfa")
    other = client.get("/feed.json?source=rfa&source=voa&source=rfa")
    assert one.status_code == other.status_code == 200
    assert one.headers["etag"] == other.headers["etag"]
    assert [i["title"] for i in one.json()["items"]] == [
        "中俄防长视频通话",
        "Second <b>story</b> & more",
        "美国之音报道",
    ]
    assert one.json()["feed_url"] == f"{BASE}/feed.json?source=rfa&source=voa"


@pytest.mark.parametrize("path", ["/feed.xml", "/atom.xml", "/feed.json"])
def test_paging_walks_every_article_once(client: TestClient, path: str) -> None:
    seen: list[str] = []
    url: str | None = f"{BASE}{path}?limit=2"
    pages = 0
    while url:
        assert url.startswith(BASE)
        response = client.get(url.removeprefix(BASE))
        assert response.status_code == 200
        pages += 1
        if path.endswith(".json"):
            document = response.json()
            seen += [item["id"] for item in document["items"]]
            url = document.get("next_url")
        else:
            parsed = feedparser.parse(response.content)
            seen += [entry.id for entry in parsed.entries]
            url = next((link.href for link in parsed.feed.links if link.rel == "next"), None)
    assert pages == 3
    assert len(seen) == len(set(seen)) == 6
    assert [s.rsplit("/", 1)[1] for s in seen] == ["1", "2", "3", "4", "6", "5"]


def test_next_link_encodes_the_last_items_cursor(client: TestClient, reader: FakeReader) -> None:
    document = client.get("/feed.json?limit=2").json()
    second = next(s for s in reader.articles if s.id == 2)
    assert document["next_url"] == f"{BASE}/feed.json?limit=2&before={encode_cursor(second.cursor)}"


@pytest.mark.parametrize(
    "query",
    [
        "limit=-1",
        "limit=0",
        "limit=abc",
        "limit=1.5",
        "limit=",
        "limit=101",
        "limit=99999999999999999999",
        "limit=%EF%BC%91",  # a fullwidth digit one: int() would accept it
        "limit=1&limit=2",
        "source=nope",
        "source=",
        "source=%FF%FE",
        "source=rfa%00",
        "source=" + "x" * 5000,
        "before=garbage",
        "before=",
        "before=%00%01",
        "before=MTo5OTk5OTk5OTk5OTk5OTk5OjE",
        "before=%E4%B8%AD%E6%96%87",
    ],
)
@pytest.mark.parametrize("path", ["/feed.xml", "/atom.xml", "/feed.json", "/"])
def test_bad_parameters_are_short_plain_400s(client: TestClient, path: str, query: str) -> None:
    response = client.get(f"{path}?{query}")
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert len(response.text) < 200
    assert "Traceback" not in response.text


def test_unknown_parameters_are_ignored(client: TestClient) -> None:
    response = client.get("/feed.xml?utm_source=x&fbclid=y")
    assert response.status_code == 200


def test_storage_failure_is_503_without_details(client: TestClient, reader: FakeReader) -> None:
    reader.down = True
    for path in ("/feed.xml", "/atom.xml", "/feed.json", "/"):
        response = client.get(path)
        assert response.status_code == 503
        assert "s3cret" not in response.text
        assert "Traceback" not in response.text


def test_unknown_path_and_method(client: TestClient) -> None:
    assert client.get("/nope").status_code == 404
    assert client.post("/feed.xml").status_code == 405
    head = client.head("/feed.xml")
    assert head.status_code == 200 and head.content == b""


# --- caching -------------------------------------------------------------------------


def test_etag_and_if_none_match(client: TestClient, reader: FakeReader) -> None:
    first = client.get("/feed.xml")
    etag = first.headers["etag"]
    assert re.fullmatch(r'W/"[0-9a-f]{32}"', etag)
    assert first.headers["last-modified"] == "Fri, 01 Mar 2024 08:00:00 GMT"

    calls = reader.latest_calls
    again = client.get("/feed.xml", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert reader.latest_calls == calls, "a 304 must not query or render the articles"

    listed = client.get("/feed.xml", headers={"If-None-Match": f'"other", {etag}'})
    assert listed.status_code == 304
    strong = client.get("/feed.xml", headers={"If-None-Match": etag.removeprefix("W/")})
    assert strong.status_code == 304
    assert client.get("/feed.xml", headers={"If-None-Match": "*"}).status_code == 304

    # Each format and each query has its own validator.
    assert client.get("/atom.xml").headers["etag"] != etag
    assert client.get("/feed.xml?limit=3").headers["etag"] != etag

    reader.articles.append(make_article(7, "新文章", published=T0 + timedelta(hours=1)))
    changed = client.get("/feed.xml", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert "新文章" in changed.text


def test_if_modified_since(client: TestClient, reader: FakeReader) -> None:
    last = client.get("/atom.xml").headers["last-modified"]
    assert client.get("/atom.xml", headers={"If-Modified-Since": last}).status_code == 304
    earlier = format_datetime(T0 - timedelta(seconds=1), usegmt=True)
    assert client.get("/atom.xml", headers={"If-Modified-Since": earlier}).status_code == 200
    assert client.get("/atom.xml", headers={"If-Modified-Since": "yesterday"}).status_code == 200
    # If-None-Match wins: a stale ETag with a fresh date is a full response.
    both = {"If-Modified-Since": last, "If-None-Match": '"stale"'}
    assert client.get("/atom.xml", headers=both).status_code == 200


def test_empty_selection_has_etag_but_no_last_modified(reader: FakeReader) -> None:
    app = create_app(FakeReader(), base_url=BASE, sources=SOURCES, metrics=Metrics())
    response = TestClient(app).get("/atom.xml")
    assert response.status_code == 200
    assert "etag" in response.headers and "last-modified" not in response.headers
    assert feedparser.parse(response.content).entries == []


def test_gzip_when_asked(client: TestClient) -> None:
    response = client.get("/feed.xml", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["vary"]
    assert len(ids_in(response)) == 6  # httpx2 decompressed it transparently
    plain = client.get("/feed.xml", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers


# --- HTML index ----------------------------------------------------------------------


def test_index_lists_articles_escaped_with_autodiscovery(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert "Second &lt;b&gt;story&lt;/b&gt; &amp; more" in page
    assert "<b>story</b>" not in page
    assert '<a href="https://zaobao.example.com/story/1">中俄防长视频通话</a>' in page
    for media_type, path in [
        ("application/rss+xml", "/feed.xml"),
        ("application/atom+xml", "/atom.xml"),
        ("application/feed+json", "/feed.json"),
    ]:
        assert re.search(
            rf'<link rel="alternate" type="{re.escape(media_type)}"[^>]*href="{BASE}{path}"', page
        )
    for source_id in SOURCES:
        assert f'href="{BASE}/?source={source_id}"' in page
    assert "联合早报 (4)" in page
    assert "<script" not in page
    assert "default-src 'none'" in response.headers["content-security-policy"]


def test_index_filters_by_source_and_pages(client: TestClient) -> None:
    page = client.get("/?source=voa").text
    assert "美国之音报道" in page and "中俄防长视频通话" not in page
    assert f'href="{BASE}/feed.xml?source=voa"' in page
    first = client.get("/?limit=4").text
    match = re.search(r'<a rel="next" href="([^"]+)">', first)
    assert match is not None
    older = client.get(match[1].replace("&amp;", "&").removeprefix(BASE)).text
    assert "同一时刻 A" in older and "中俄防长视频通话" not in older


def test_index_never_links_script_urls(reader: FakeReader, client: TestClient) -> None:
    reader.articles.append(make_article(9, "<script>alert(1)</script>", link="javascript:alert(1)"))
    page = client.get("/").text
    assert "javascript:" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- operations ----------------------------------------------------------------------


def test_healthz_reports_database_and_sources(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    # rfa's last poll failed: degraded, still 200 (a feed outage is no reason to restart).
    assert body["status"] == "degraded" and body["database"] == "ok"
    assert [problem["source"] for problem in body["failing"]] == ["rfa"]
    assert body["failing"][0]["since"] == T0.isoformat()
    assert body["sources"]["zaobao"]["last_success"] == T0.isoformat()
    assert body["sources"]["zaobao"]["name"] == "联合早报"
    assert body["sources"]["rfa"]["last_success"] is None
    assert body["sources"]["rfa"]["consecutive_failures"] == 3
    assert body["sources"]["rfa"]["last_error_kind"] == "timeout"
    # A source with mirrors shows each URL: which failed how, which answered.
    primary, mirror = body["sources"]["zaobao"]["urls"]
    assert (primary["url"], primary["error_kind"]) == ("https://feedx.net/rss/zaobao.xml", "http")
    assert (mirror["error_kind"], mirror["last_success"]) == (None, T0.isoformat())
    assert "urls" not in body["sources"]["rfa"]


def test_healthz_is_ok_when_no_enabled_source_fails(reader: FakeReader) -> None:
    app = create_app(
        reader, base_url=BASE, sources=SourceCatalog(SOURCES, enabled=["zaobao", "voa"])
    )
    body = TestClient(app).get("/healthz").json()
    assert body["status"] == "ok"  # rfa fails, but it is not polled any more
    assert body["failing"] == []


def test_healthz_is_503_when_database_is_down(client: TestClient, reader: FakeReader) -> None:
    reader.down = True
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable"}
    assert "s3cret" not in response.text


def test_metrics_endpoint(client: TestClient, metrics: Metrics, reader: FakeReader) -> None:
    metrics.record_poll("rfa", "ok", new=3, updated=1, duration=0.4)
    metrics.record_poll("rfa", "error", new=0, updated=0, duration=30.0, error_kind="timeout")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'aggregator_polls_total{outcome="ok",source="rfa"} 1.0' in text
    assert 'aggregator_poll_failures_total{kind="timeout",source="rfa"} 1.0' in text
    assert 'aggregator_articles_new_total{source="rfa"} 3.0' in text
    assert 'aggregator_articles_updated_total{source="rfa"} 1.0' in text
    assert 'aggregator_poll_duration_seconds_bucket{le="0.5",source="rfa"} 1.0' in text
    assert 'aggregator_poll_duration_seconds_count{source="rfa"} 2.0' in text
    assert 'aggregator_source_consecutive_failures{source="rfa"} 3.0' in text
    success = re.search(
        r'^aggregator_source_last_success_timestamp_seconds\{source="zaobao"\} (\S+)$', text, re.M
    )
    assert success is not None and float(success[1]) == T0.timestamp()
    assert "aggregator_database_up 1.0" in text
    assert "aggregator_search_backlog 0.0" in text
    reader.backlog = 7
    assert "aggregator_search_backlog 7.0" in client.get("/metrics").text
    assert client.get("/healthz").json()["search_backlog"] == 7

    reader.down = True
    down = client.get("/metrics")
    assert down.status_code == 200
    assert "aggregator_database_up 0.0" in down.text


def test_metrics_instances_are_isolated() -> None:
    one, two = Metrics(), Metrics()
    one.record_poll("voa", "ok", new=1, updated=0, duration=0.1)
    assert b'source="voa"' in one.render()[0]
    assert b'source="voa"' not in two.render()[0]


def test_create_app_rejects_a_relative_base_url() -> None:
    with pytest.raises(ValueError, match="base_url"):
        create_app(FakeReader(), base_url="/news")


# --- the real server -----------------------------------------------------------------


async def trickled_request(port: int, header_bytes: int) -> str:
    """Send a GET whose header block arrives in 1 KiB pieces; return the status line.

    Trickling matters: h11 only limits data buffered *before* the header block is
    complete, so a big header arriving in one read would not exercise the limit.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * header_bytes}\r\n\r\n").encode()
    try:
        for start in range(0, len(request), 1024):
            writer.write(request[start : start + 1024])
            await writer.drain()
            await asyncio.sleep(0.002)
        status = await asyncio.wait_for(reader.readline(), timeout=5)
    except ConnectionError:
        status = b"closed"
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return status.decode().strip()


def test_real_uvicorn_server_gzip_and_304_in_one_event_loop() -> None:
    app = create_app(sample_reader(), base_url=BASE, sources=SOURCES, metrics=Metrics())
    server = build_server(app, access_log=False, max_header_bytes=8 * 1024)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    async def scenario() -> dict[str, Any]:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started
        results: dict[str, Any] = {}
        url = f"http://127.0.0.1:{port}/feed.xml"
        async with httpx2.AsyncClient(timeout=5) as http:
            response = await http.get(url, headers={"Accept-Encoding": "gzip"})
            results["status"] = response.status_code
            results["encoding"] = response.headers.get("content-encoding")
            results["ids"] = ids_in(response)
            results["not_modified"] = await http.get(
                url, headers={"If-None-Match": response.headers["etag"]}
            )
        results["small_header"] = await trickled_request(port, 4 * 1024)
        results["big_header"] = await trickled_request(port, 12 * 1024)
        server.stop()
        await asyncio.wait_for(task, timeout=10)
        return results

    try:
        results = asyncio.run(scenario())
    finally:
        sock.close()
    assert results["status"] == 200
    assert results["encoding"] == "gzip"
    assert len(results["ids"]) == 6
    assert results["not_modified"].status_code == 304
    assert results["not_modified"].content == b""
    # A header block over max_header_bytes (8 KiB here; h11's default is 16 KiB) is
    # refused rather than buffered.
    assert results["small_header"] == "HTTP/1.1 200 OK"
    assert results["big_header"] in ("HTTP/1.1 400 Bad Request", "closed")


def test_feed_json_is_valid_json_with_unicode(client: TestClient) -> None:
    raw = client.get("/feed.json").content
    assert "中俄防长视频通话".encode() in raw
    assert json.loads(raw)["version"] == "https://jsonfeed.org/version/1.1"


def test_every_answer_carries_security_headers() -> None:
    client = TestClient(create_app(FakeReader(), base_url=BASE, sources=SOURCES))
    for path in ("/", "/feed.xml", "/feed.xml?limit=-1", "/healthz", "/metrics", "/nope"):
        response = client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert "default-src 'none'" in response.headers["content-security-policy"], path


# --- the response cache --------------------------------------------------------------


def test_a_repeated_request_is_answered_from_the_cache(
    client: TestClient, reader: FakeReader
) -> None:
    first = client.get("/atom.xml", headers={"Accept-Encoding": "identity"})
    calls = reader.latest_calls
    again = client.get("/atom.xml", headers={"Accept-Encoding": "identity"})
    zipped = client.get("/atom.xml", headers={"Accept-Encoding": "gzip"})
    assert reader.latest_calls == calls, "a cached page must not query the articles again"
    assert again.content == first.content
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.content == first.content  # the client inflated the cached gzip form


def test_a_change_is_rendered_at_once_not_served_stale(
    client: TestClient, reader: FakeReader
) -> None:
    before = client.get("/feed.json").json()
    # Newer than everything: the selection's update time, and so its ETag, moves on.
    reader.articles.append(make_article(7, "刚到的新闻", published=T0 + timedelta(minutes=5)))
    after = client.get("/feed.json").json()
    assert after["items"][0]["title"] == "刚到的新闻"
    assert before["items"][0]["title"] != "刚到的新闻"


def test_no_cache_when_max_age_is_zero(reader: FakeReader) -> None:
    app = create_app(reader, base_url=BASE, sources=SOURCES, cache_max_age=0)
    with TestClient(app) as client:
        client.get("/feed.xml")
        calls = reader.latest_calls
        client.get("/feed.xml")
    assert reader.latest_calls == calls + 1


def test_the_cache_is_bounded_by_entries_bytes_and_age() -> None:
    from aggregator.serve import _ResponseCache

    by_count = _ResponseCache(ttl=60, entries=2, size=1000)
    for key in ("a", "b", "c"):
        by_count.put(key, b"x" * 10)
    assert by_count.get("a") is None  # the least recently used went first
    assert by_count.get("b") is not None and by_count.get("c") is not None

    by_size = _ResponseCache(ttl=60, entries=10, size=100)
    by_size.put("big", b"x" * 26)  # over a quarter of the budget: never kept
    assert by_size.get("big") is None
    for key in ("a", "b", "c", "d"):
        by_size.put(key, b"x" * 25)
    by_size.get("a")  # a is used again: b is now the oldest
    by_size.put("e", b"x" * 25)
    assert by_size.get("b") is None and by_size.get("a") is not None

    short = _ResponseCache(ttl=0.05)
    short.put("a", b"x")
    assert short.get("a") is not None
    time.sleep(0.1)
    assert short.get("a") is None
