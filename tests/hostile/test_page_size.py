"""A served feed page stays under MAX_PAGE_BYTES whatever the database holds.

The poll-side limits bound new articles, but the store may hold anything from before
them or from an import: one 19 MB item made every /atom.xml 50 MB.  Here a real
SQLite store holds a 19 MB title, a body of escapable text too long for any page and
many 300 KB bodies; every format stays under the bound (1 MB here, to stay quick;
the default is 10 MB), and paging still reaches every article.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from aggregator.serve import create_app
from aggregator.store import Store
from aggregator.types import Article

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
