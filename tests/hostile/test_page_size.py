"""A served feed page stays under MAX_PAGE_BYTES whatever the database holds.

The poll-side limits bound new articles, but the store may hold anything from before
them or from an import: one 19 MB item made every /atom.xml 50 MB.  Here a real
SQLite store holds a 19 MB title, a body of escapable text too long for any page and
many 300 KB bodies; every format stays under the bound (1 MB here, to stay quick;
the default is 10 MB), and paging still reaches every article.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from aggregator.serve import create_app
from aggregator.store import Store
from aggregator.types import Article, ReadBound

BASE = "https://news.example.org"
T0 = datetime(2024, 3, 1, tzinfo=UTC)
ESCAPABLE = "&<>" * 100  # every character becomes 4-5 bytes in XML
BOUND = 1024 * 1024


def article(index: int, *, title: str = "", body: str = "") -> Article:
    moment = T0 - timedelta(minutes=index)
    return Article(
        source_id="src",
        source_name="Source",
        title=title or f"story {index}",
        link=f"https://example.org/{index}",
        body=body or f"<p>story {index}</p>",
        published=moment,
        fetched=moment,
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    path = tmp_path_factory.mktemp("pages") / "db.sqlite"
    with Store.open(f"sqlite:///{path}") as store:
        articles = [
            article(0, title="T" * 19_000_000),
            article(1, body="<p>" + ESCAPABLE * 1_000 + "</p>"),  # 300 KB: over BOUND / 8
            *(article(index, body="<p>" + "正文" * 50_000 + "</p>") for index in range(2, 40)),
            *(article(index) for index in range(40, 60)),
        ]
        store.import_articles(articles)
        app = create_app(
            store, base_url=BASE, sources={"src": "Source"}, max_limit=500, max_page_bytes=BOUND
        )
        yield TestClient(app, raise_server_exceptions=True)


@pytest.mark.parametrize("path", ["/feed.xml", "/atom.xml", "/feed.json"])
def test_every_page_is_bounded_and_paging_reaches_every_article(
    client: TestClient, path: str
) -> None:
    url: str | None = f"{path}?limit=500"
    seen: set[str] = set()
    pages = 0
    while url is not None and pages < 60:
        response = client.get(url, headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200
        assert len(response.content) <= BOUND
        text = response.text
        seen |= set(re.findall(r"https://example\.org/(\d+)", text))
        current = url.partition("before=")[2]
        tokens = set(re.findall(r"before=([\w-]+)", text)) - {current}
        assert len(tokens) <= 1
        url = f"{path}?limit=500&before={tokens.pop()}" if tokens else None
        pages += 1
    assert seen == {str(index) for index in range(60)}
    assert pages > 1  # the 500-item page was cut, not served whole


def test_an_oversized_item_keeps_its_link_and_says_it_was_cut(client: TestClient) -> None:
    text = client.get("/feed.json?limit=2").json()
    first, second = text["items"]
    assert len(first["title"]) <= 2048
    assert first["url"] == "https://example.org/0"
    assert "Too long to include here" in second["content_html"]
    assert 'href="https://example.org/1"' in second["content_html"]


@pytest.mark.parametrize("sources", [None, ["src"], ["src", "other"]])
def test_a_bounded_read_changes_nothing_for_normal_rows(
    tmp_path: Path, sources: list[str] | None
) -> None:
    """Normal rows come back exactly as unbounded, in all three query shapes; only the
    huge body comes back as its head, with its length."""
    bound = ReadBound(page_chars=BOUND, body_chars=50_000, head_chars=100, title_chars=2049)
    with Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}") as store:
        store.import_articles(
            [article(0, body="<p>" + "x" * 60_000 + "</p>"), *(article(i) for i in range(1, 30))]
        )
        whole = store.latest(sources=sources, limit=31)
        page, more = store.feed_page(sources=sources, limit=30, bound=bound)
        assert not more and len(page) == len(whole) == 30
        assert page[1:] == whole[1:]
        assert page[0].article.body == whole[0].article.body[:100]
        assert page[0].body_length == 60_007
        cut, more = store.feed_page(sources=sources, limit=10, before=page[3].cursor, bound=bound)
        assert cut == whole[4:14] and more
        tight = dataclasses.replace(bound, page_chars=300)  # rows of ~30 characters
        small, more = store.feed_page(sources=sources, limit=30, before=page[0].cursor, bound=tight)
        assert small == whole[1 : 1 + len(small)] and more and 5 < len(small) < 15


@pytest.mark.slow
def test_500_rows_of_1_mb_serve_a_bounded_page_from_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.sqlite"
    with Store.open(f"sqlite:///{path}") as store:
        for start in range(0, 500, 25):
            body = "<p>" + "w" * (1 << 20) + "</p>"  # under a page's bound: served whole
            store.import_articles(article(i, body=body) for i in range(start, start + 25))
    script = textwrap.dedent(
        f"""
        from starlette.testclient import TestClient
        from aggregator.serve import create_app
        from aggregator.store import Store
        with Store.open("sqlite:///{path}") as store:
            app = create_app(store, base_url="{BASE}", sources={{"src": "S"}}, max_limit=500)
            client = TestClient(app)
            sizes = [len(client.get(p + "?limit=500",
                          headers={{"Accept-Encoding": "identity"}}).content)
                     for p in ("/feed.xml", "/atom.xml", "/feed.json", "/")]
        # VmHWM, not ru_maxrss: Linux carries the peak of the process before its exec
        # (the forked pytest process, hundreds of MB late in a run) into ru_maxrss.
        status = open("/proc/self/status").read().split("VmHWM:")[1]
        print(max(sizes), int(status.split()[0]) // 1024)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    largest, peak_mb = map(int, done.stdout.split())
    assert 5_000_000 < largest <= 10_000_000
    # Reading the 500 rows whole took 2 GB; bounded, this process peaks near 150 MB.
    assert peak_mb < 300, done.stdout
