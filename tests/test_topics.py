"""Search and topic feeds over HTTP and in the CLI, on a real store of the seed files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest
from lxml import etree
from starlette.testclient import TestClient
from test_cli import SOURCES, Invoke, config, invoke  # noqa: F401 -- fixtures
from test_feeds import ATOM_SCHEMA, JSON_VALIDATOR

from aggregator import archive
from aggregator.search import Topic, parse_query
from aggregator.serve import create_app
from aggregator.store import Store

SEEDS = sorted((Path(__file__).parent / "fixtures" / "seeds").glob("*.txt"))
TOPICS = """
[[topic]]
id = "defence"
title = "中俄防长"
query = "防長 OR 国防部长"

[[topic]]
id = "zaobao-russia"
title = "Zaobao on Russia"
query = "俄罗斯"
sources = ["zaobao"]
"""


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with Store.open(database_url) as store:
        store.import_articles(archive.read_file(path).article for path in SEEDS)
        topics = [Topic("defence", "中俄防长", parse_query("防長 OR 国防部长"))]
        app = create_app(store, base_url="https://news.example.org", topics=topics)
        yield TestClient(app)


def test_q_filters_every_feed_and_says_so_in_the_title(client: TestClient) -> None:
    everything = feedparser.parse(client.get("/feed.xml").content).entries
    found = feedparser.parse(client.get("/feed.xml", params={"q": "绍伊古"}).content)
    assert 0 < len(found.entries) < len(everything)
    items = client.get("/feed.json", params={"q": "绍伊古"}).json()["items"]
    assert len(items) == len(found.entries)
    assert all("绍伊古" in item["title"] + item["content_html"] for item in items)
    assert "search: 绍伊古" in found.feed.title
    assert client.get("/feed.json", params={"q": "nothingatallxyz"}).json()["items"] == []
    assert client.get("/feed.xml", params={"q": "OR"}).status_code == 400


@pytest.mark.parametrize("path", ["/topics/defence/atom.xml", "/atom.xml?topic=defence"])
def test_topic_feeds_validate_and_answer_304(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    document = etree.fromstring(response.content)
    assert ATOM_SCHEMA.validate(document), ATOM_SCHEMA.error_log
    entries = feedparser.parse(response.content).entries
    assert entries and all(
        "防长" in e.title + e.summary or "国防部长" in e.summary for e in entries
    )
    again = client.get(path, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    other = client.get("/atom.xml")
    assert other.headers["etag"] != response.headers["etag"]


def test_topic_json_feed_validates(client: TestClient) -> None:
    document = client.get("/topics/defence/feed.json").json()
    JSON_VALIDATOR.validate(document)
    assert document["title"].endswith("中俄防长")
    assert client.get("/topics/nope/feed.json").status_code == 400


def test_the_page_searches_and_highlights(client: TestClient) -> None:
    page = client.get("/", params={"q": "防長"}).text
    assert 'name="q" value="防长"' in page
    assert "<mark>防长</mark>" in page or "<mark>防長</mark>" in page
    assert 'class="topic"' in page and "中俄防长" in page


def test_cli_search_and_topic_export(invoke: Invoke, config: Path) -> None:  # noqa: F811
    (config.parent / "sources.toml").write_text(SOURCES + TOPICS, encoding="utf-8")
    invoke("import", *map(str, SEEDS))
    output = invoke("search", "防長")
    assert "matches" in output and "防长" in output
    exported = json.loads(invoke("export", "--format", "json", "--topic", "zaobao-russia"))
    assert exported["items"] and all(
        "俄罗斯" in i["content_html"] + i["title"] for i in exported["items"]
    )
    invoke("export", "--format", "json", "--topic", "missing", code=2)
