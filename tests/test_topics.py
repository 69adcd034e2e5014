"""Search and topic feeds over HTTP and in the CLI, on a real store of the seed files."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest
from lxml import etree
from starlette.testclient import TestClient
from test_cli import SOURCES, Invoke, config, invoke  # noqa: F401 -- fixtures
from test_feeds import ATOM_SCHEMA, JSON_VALIDATOR

from aggregator import archive
from aggregator.adapters import adapter_names
from aggregator.errors import ConfigError
from aggregator.reload import topics_to_serve
from aggregator.search import Topic, parse_query
from aggregator.serve import SourceCatalog, TopicCatalog, create_app
from aggregator.settings import Settings, SourcesFile, read_sources_file
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
    both = client.get("/topics/defence/feed.json", params={"q": "香港"})
    assert both.status_code == 400 and "q and topic cannot be combined" in both.text
    assert client.get("/", params={"topic": "defence", "q": "香港"}).status_code == 400
    assert client.get("/", params={"topic": "defence", "q": " "}).status_code == 200


def test_a_topic_narrowed_to_picked_sources() -> None:
    query = parse_query("防长")
    some = Topic("some", "Some", query, sources=("rfi", "zaobao"))
    anywhere = Topic("anywhere", "Anywhere", query)
    assert some.narrowed([]) == ["rfi", "zaobao"]
    assert some.narrowed(["zaobao", "voa"]) == ["zaobao"]
    assert some.narrowed(["voa"]) == []  # nothing in common: nothing, not everything
    assert anywhere.narrowed([]) is None
    assert anywhere.narrowed(["voa", "rfi", "voa"]) == ["rfi", "voa"]


def test_a_source_picked_on_a_topic_feed_narrows_it(database_url: str) -> None:
    seeds = [archive.read_file(path).article for path in SEEDS]
    owners = {"zaobao": seeds[:3], "rfi": seeds[3:]}
    links = {source: {a.link for a in articles} for source, articles in owners.items()}
    defence = parse_query("防長 OR 国防部长")
    topics = [
        Topic("zb", "Zaobao defence", defence, sources=("zaobao",)),
        Topic("all", "All defence", defence),
    ]
    with Store.open(database_url) as store:
        store.import_articles(
            dataclasses.replace(article, source_id=source, source_name=source.upper())
            for source, articles in owners.items()
            for article in articles
        )
        names = {"zaobao": "ZAOBAO", "rfi": "RFI"}
        client = TestClient(
            create_app(store, base_url="https://news.example.org", sources=names, topics=topics)
        )

        def found(path: str, **params: str) -> set[str]:
            response = client.get(path, params=params)
            assert response.status_code == 200, response.text
            return {item["url"] for item in response.json()["items"]}

        assert found("/topics/all/feed.json") == links["zaobao"] | links["rfi"]
        assert found("/topics/all/feed.json", source="rfi") == links["rfi"]
        assert found("/topics/zb/feed.json") == links["zaobao"]
        assert found("/topics/zb/feed.json", source="zaobao") == links["zaobao"]
        # A pick outside the topic's sources narrows it to nothing; it used to replace
        # them, serving RFI's articles under the Zaobao topic.
        assert found("/topics/zb/feed.json", source="rfi") == set()
        assert found("/feed.json", topic="zb", source="rfi") == set()
        empty = client.get("/topics/zb/feed.json", params={"source": "rfi"})
        whole = client.get("/topics/zb/feed.json")
        assert empty.headers["etag"] != whole.headers["etag"]


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


BAD_TOPICS = """
[[topic]]
id = "broken"
title = "A dangling OR"
query = "香港 OR"

[[topic]]
id = "elsewhere"
title = "Unknown source"
query = "香港"
sources = ["nowhere"]

[[topic]]
id = "defence"
title = "Twice"
query = "防长"
colour = "red"
"""


def _sources_file(tmp_path: Path, text: str) -> SourcesFile:
    (tmp_path / "sources.toml").write_text(text, encoding="utf-8")
    settings = Settings(sources_file=tmp_path / "sources.toml")
    return read_sources_file(settings, adapters=adapter_names())


def test_a_bad_topic_is_reported_in_one_line_and_the_others_are_read(tmp_path: Path) -> None:
    loaded = _sources_file(tmp_path, SOURCES + TOPICS + BAD_TOPICS)
    file = str(tmp_path / "sources.toml")
    assert [topic.id for topic in loaded.topics] == ["defence", "zaobao-russia"]
    assert len(loaded.sources) == 4
    lines = {bad.id: str(bad) for bad in loaded.bad_topics}
    assert lines == {
        "broken": f"{file}:topic[2] (broken).query: OR needs a term on each side",
        "elsewhere": f"{file}:topic[3] (elsewhere).sources: unknown source 'nowhere'",
        "defence": f"{file}:topic[4] (defence).colour: unknown key",
    }
    assert loaded.topic("zaobao-russia").sources == ("zaobao",)
    with pytest.raises(ConfigError, match=r"topic\[2\] \(broken\)\.query: OR needs"):
        loaded.topic("broken")
    with pytest.raises(ConfigError, match="no \\[\\[topic\\]\\] with id 'missing'"):
        loaded.topic("missing")
    with pytest.raises(ConfigError) as every:
        loaded.every_topic()
    assert len(str(every.value).splitlines()) == 3  # every problem, one line each
    # Two problems of one topic still make one line.
    twice = _sources_file(tmp_path, SOURCES + '[[topic]]\nid = "x"\nquery = "OR"\nsize = 1\n')
    assert len(twice.bad_topics) == 1 and "\n" not in str(twice.bad_topics[0])
    assert "topic[0] (x).title: Field required; topic[0] (x).size" in str(twice.bad_topics[0])


def test_a_reload_serves_the_good_topics_and_keeps_a_broken_one_as_it_was(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    in_use = {topic.id: topic for topic in _sources_file(tmp_path, SOURCES + TOPICS).topics}
    edited = TOPICS.replace('query = "防長 OR 国防部长"', 'query = "-防长"')
    edited = edited.replace('query = "俄罗斯"', 'query = "普京"')
    added = '\n[[topic]]\nid = "new"\ntitle = "New"\nquery = "covid"\n[[topic]]\nid = "bad"\n'
    loaded = _sources_file(tmp_path, SOURCES + edited + added)
    with caplog.at_level(logging.INFO, logger="aggregator.reload"):
        served = {topic.id: topic for topic in topics_to_serve(in_use, loaded)}
    assert served.keys() == {"defence", "zaobao-russia", "new"}
    assert served["defence"] == in_use["defence"]  # its edit does not parse: it stays
    assert str(served["zaobao-russia"].query) == "普京"
    messages = [record.getMessage() for record in caplog.records]
    file = tmp_path / "sources.toml"
    assert f"topic not reloaded: {file}:topic[0] (defence).query: " in messages[0]
    assert messages[0].endswith("; the topic stays as it was")
    assert messages[1].startswith(f"topic not served: {file}:topic[3] (bad).title: Field")
    assert messages[2] == (
        "topics reloaded: 3 served; added new; removed none; changed zaobao-russia"
    )
    gone = _sources_file(tmp_path, SOURCES)
    assert topics_to_serve(served, gone) == []


def test_export_needs_only_its_own_topic_to_be_good(invoke: Invoke, config: Path) -> None:  # noqa: F811
    (config.parent / "sources.toml").write_text(SOURCES + TOPICS + BAD_TOPICS, encoding="utf-8")
    invoke("import", *map(str, SEEDS))
    exported = json.loads(invoke("export", "--format", "json", "--topic", "zaobao-russia"))
    assert exported["items"]
    # The service's address for the topic feed: the path names the topic and its
    # sources, so the query does not.
    assert exported["feed_url"] == "https://news.example.org/topics/zaobao-russia/feed.json"
    assert exported["title"] == "aggregator: Zaobao on Russia"
    assert "topic[2] (broken).query" in invoke("export", "-f", "rss", "--topic", "broken", code=2)
    output = invoke("opml", "export", code=2)  # every topic is exported: every problem said
    assert "topic[2] (broken)" in output and "topic[3] (elsewhere)" in output
    assert "topic[4] (defence)" in invoke("run", code=2)  # the daemon does not start


def test_jekyll_export_of_a_topic_writes_only_its_matches(
    invoke: Invoke,  # noqa: F811
    config: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    shoigu = '[[topic]]\nid = "shoigu"\ntitle = "Shoigu"\nquery = "绍伊古"\n'
    (config.parent / "sources.toml").write_text(SOURCES + shoigu, encoding="utf-8")
    invoke("import", *map(str, SEEDS))
    out = tmp_path / "site"
    invoke("export", "--format", "jekyll", "--topic", "shoigu", "--out", str(out))
    posts = [archive.read_file(path).article for path in (out / "_posts").iterdir()]
    assert 0 < len(posts) < len(SEEDS)
    assert all("绍伊古" in post.title + post.body for post in posts)


def test_replacing_the_topics_changes_the_feeds_and_their_validators(database_url: str) -> None:
    with Store.open(database_url) as store:
        store.import_articles(archive.read_file(path).article for path in SEEDS)
        topics = TopicCatalog([Topic("t", "Defence", parse_query("防长"))])
        client = TestClient(create_app(store, base_url="https://news.example.org", topics=topics))
        first = client.get("/topics/t/feed.json")
        seen = {first.headers["etag"]}
        for topic in (
            Topic("t", "Defence", parse_query("俄罗斯")),  # another query
            Topic("t", "Russia", parse_query("俄罗斯")),  # another title
            Topic("t", "Russia", parse_query("俄罗斯"), ("zaobao",)),  # other sources
        ):
            topics.replace([topic])
            response = client.get(
                "/topics/t/feed.json", headers={"If-None-Match": first.headers["etag"]}
            )
            assert response.status_code == 200
            assert response.json()["title"] == f"aggregator: {topic.title}"
            assert response.headers["etag"] not in seen
            seen.add(response.headers["etag"])
        assert 'href="https://news.example.org/?topic=t">Russia<' in client.get("/").text
        topics.replace([])
        assert client.get("/topics/t/feed.json").status_code == 400
        assert "?topic=t" not in client.get("/").text


def test_a_reload_during_a_listing_leaves_the_listing_whole() -> None:
    """The page lists sources and topics while the daemon may replace them."""
    sources = SourceCatalog({"a": "A", "b": "B"})
    topics = TopicCatalog(Topic(name, name, parse_query(name)) for name in ("x", "y"))
    listed = []
    for (source_id, _), topic in zip(sources.items(), topics.values(), strict=True):
        sources.replace({})
        topics.replace([])
        listed.append((source_id, topic.id))
    assert listed == [("a", "x"), ("b", "y")]
