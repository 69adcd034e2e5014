"""Reading here: the article page, ?script= conversion, display_timezone and feed_token."""

from __future__ import annotations

import html
import re
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import feedparser
import pytest
from httpx2 import Response
from lxml import etree
from starlette.applications import Starlette
from starlette.testclient import TestClient

from aggregator import archive
from aggregator.export.feeds import ATOM_NS
from aggregator.search import Topic, parse_query
from aggregator.search.script import chinese_script, convert, convert_html
from aggregator.serve import create_app
from aggregator.settings import Settings
from aggregator.store import Store

SEEDS = sorted((Path(__file__).parent / "fixtures" / "seeds").glob("*.txt"))
TOKEN = "s3cret-token-0123456789"
BASE = "https://news.example.org"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'aggregator.db'}") as opened:
        opened.import_articles(archive.read_file(path).article for path in SEEDS)
        yield opened


def _first_id(client: TestClient) -> int:
    match = re.search(r'href="https://news\.example\.org/articles/(\d+)"', client.get("/").text)
    assert match, "the index links no article page"
    return int(match.group(1))


def test_the_article_page_shows_the_cleaned_article(store: Store) -> None:
    client = TestClient(create_app(store, base_url=BASE, display_timezone="Asia/Shanghai"))
    article_id = _first_id(client)
    stored = store.article(article_id)
    assert stored is not None
    response = client.get(f"/articles/{article_id}")
    assert response.status_code == 200
    page = response.text
    assert stored.article.body in page  # the cleaned body, as stored
    assert '<article lang="zh-Hans">' in page
    assert "prefers-color-scheme: dark" in page and "Noto Sans CJK SC" in page
    assert 'name="viewport"' in page and "<script" not in page
    assert "script-src" not in response.headers["content-security-policy"]
    local = stored.updated.astimezone(zoneinfo.ZoneInfo("Asia/Shanghai"))
    assert (
        f'updated <time datetime="{stored.updated.isoformat()}">{local:%Y-%m-%d %H:%M} CST<' in page
    )
    published = stored.article.published
    assert "Published unknown" in page if published is None else published.isoformat() in page
    assert " UTC<" not in page
    names = {route.source_name for route in stored.provenance}
    assert all(name in page for name in names)
    assert client.get("/articles/999999").status_code == 404


def test_search_results_link_the_article_page(store: Store) -> None:
    client = TestClient(create_app(store, base_url=BASE))
    page = client.get("/", params={"q": "防长"}).text
    ids = re.findall(r'/articles/(\d+)"', page)
    assert ids and "<mark>" in page
    assert "防长" in client.get(f"/articles/{ids[0]}").text


def test_script_converts_text_and_keeps_markup() -> None:
    fragment = '<p title="头发"><a href="https://x.example/头发">头发</a> 后来<!-- 头发 --></p>'
    assert convert_html(fragment, "hant") == (
        '<p title="头发"><a href="https://x.example/头发">頭髮</a> 後來<!-- 头发 --></p>'
    )
    assert convert_html("<b>軟體</b>與滑鼠", "hans") == "<b>软体</b>与滑鼠"
    assert chinese_script("中國防長訪問俄羅斯") == "hant"
    assert chinese_script("中国防长访问俄罗斯") == "hans"
    assert chinese_script("no Han here") is None


def test_script_on_feeds_and_pages(store: Store) -> None:
    client = TestClient(create_app(store, base_url=BASE))
    plain = feedparser.parse(client.get("/feed.xml").content).entries
    hant = client.get("/feed.xml", params={"script": "hant"})
    converted = feedparser.parse(hant.content).entries
    assert [e.link for e in converted] == [e.link for e in plain]  # URLs untouched
    assert any("國防" in e.title + e.summary for e in converted)
    assert not any("国防" in e.title for e in converted)
    assert hant.headers["etag"] != client.get("/feed.xml").headers["etag"]
    article_id = _first_id(client)
    page = client.get(f"/articles/{article_id}", params={"script": "hant"}).text
    stored = store.article(article_id)
    assert stored is not None
    title = convert(stored.article.title, "hant")
    assert '<article lang="zh-Hant">' in page and title in page and title != stored.article.title
    index = client.get("/", params={"script": "hant"}).text
    assert "國防" in index and '<input type="hidden" name="script" value="hant">' in index
    assert client.get("/feed.xml", params={"script": "latin"}).status_code == 400


@pytest.mark.parametrize("path", ["/", "/feed.xml", "/atom.xml", "/feed.json", "/metrics"])
def test_feed_token_guards_everything_but_healthz(store: Store, path: str) -> None:
    client = TestClient(create_app(store, base_url=BASE, feed_token=TOKEN))
    refused = client.get(path)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert client.get(path, params={"token": TOKEN[:-1] + "x"}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.get(path, headers=wrong).status_code == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get(path, headers=bearer).status_code == 200
    assert TestClient(client.app).get(path, params={"token": TOKEN}).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_a_page_visit_with_the_token_lets_the_page_links_work(store: Store) -> None:
    app = create_app(store, base_url=BASE, feed_token=TOKEN)
    client = TestClient(app, base_url="https://testserver")  # the cookie is Secure
    first = client.get("/", params={"token": TOKEN})
    assert first.status_code == 200
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
    assert client.get("/", params={"q": "防长"}).status_code == 200  # the cookie now
    assert TestClient(client.app).get("/", params={"q": "防长"}).status_code == 401


def test_settings_check_the_time_zone_and_hide_the_token() -> None:
    assert Settings().display_timezone == "UTC"
    with pytest.raises(ValueError, match="time zone"):
        Settings(display_timezone="Mars/Olympus_Mons")
    settings = Settings(feed_token=TOKEN)
    assert settings.feed_token is not None
    assert settings.feed_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)
    with pytest.raises(ValueError):
        Settings(feed_token="short")


# -- the token in the links back to the service ------------------------------------------

HERE = "http://testserver"  # the base URL is the test client's, so every link can be followed


def _links(response: Response) -> list[str]:
    """Every URL a feed or page answer writes: hrefs, form actions, RSS links, JSON URLs."""
    kind = response.headers["content-type"]
    if "json" in kind:
        document = response.json()
        found = [document.get(key) for key in ("home_page_url", "feed_url", "next_url")]
        for item in document["items"]:
            found += [item["url"], *(source["url"] for source in item["_aggregator"]["sources"])]
        return [url for url in found if url]
    if "html" in kind:
        hrefs = [html.unescape(url) for url in re.findall(r'href="([^"]*)"', response.text)]
        return hrefs + _searched(response.text)
    root = etree.fromstring(response.content)
    hrefs = [str(url) for url in root.xpath("//@href")]
    texts = [str(url) for url in root.xpath("//*[local-name()='link']/text()")]
    return hrefs + texts


def _searched(page: str) -> list[str]:
    """The URL a browser asks for when the page's search form is sent: a GET form's
    fields replace the query of its action."""
    form = re.search(r'<form [^>]*action="([^"]*)"(.*?)</form>', page)
    if form is None:
        return []
    hidden = re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', form.group(2))
    fields = [("q", "防长"), *((name, html.unescape(value)) for name, value in hidden)]
    return [f"{html.unescape(form.group(1))}?{urlencode(fields)}"]


def _crawl(app: Starlette, starts: list[str]) -> dict[str, Response]:
    """Every answer reachable from ``starts`` through links back to the service, each
    fetched as a feed reader would: with a new client (no cookie), by its URL alone."""
    fetched: dict[str, Response] = {}
    waiting = list(starts)
    while waiting and len(fetched) < 200:
        url = waiting.pop()
        if url in fetched:
            continue
        fetched[url] = response = TestClient(app, base_url=HERE).get(url)
        assert response.status_code == 200, (url, response.status_code, response.text[:200])
        waiting += [link for link in _links(response) if link.startswith(HERE)]
    assert not waiting, "more than 200 answers"
    return fetched


def _token_app(store: Store) -> Starlette:
    topics = [Topic("defence", "中俄防长", parse_query("防長 OR 国防部长"))]
    return create_app(store, base_url=HERE, feed_token=TOKEN, default_limit=2, topics=topics)


STARTS = [
    "/feed.xml",
    "/atom.xml",
    "/feed.json",
    "/topics/defence/feed.xml",
    "/topics/defence/atom.xml",
    "/topics/defence/feed.json",
    "/feed.json?q=防长&limit=1&script=hant",
    "/",
    "/?q=防长",
]


def test_links_back_carry_the_token_of_a_query_and_lead_to_200(store: Store) -> None:
    app = _token_app(store)
    token = urlencode({"token": TOKEN})
    fetched = _crawl(
        app, [f"{HERE}{start}{'&' if '?' in start else '?'}{token}" for start in STARTS]
    )
    links = [link for response in fetched.values() for link in _links(response)]
    ours = [link for link in links if link.startswith(HERE)]
    others = [link for link in links if not link.startswith(HERE)]
    assert ours and others
    assert all(parse_qs(urlsplit(link).query)["token"] == [TOKEN] for link in ours)
    assert not any(TOKEN in link for link in others)  # never to other sites
    kinds = {urlsplit(url).path.rpartition("/")[2] or "/" for url in fetched}
    assert {"feed.xml", "atom.xml", "feed.json", "/"} <= kinds
    assert any(urlsplit(url).path.startswith("/articles/") for url in fetched)
    assert sum("before=" in url for url in fetched) >= 6  # next pages of every format
    for url, response in fetched.items():
        if urlsplit(url).path.endswith("atom.xml"):  # the feed's id is no secret
            feed_id = etree.fromstring(response.content).findtext(f"{{{ATOM_NS}}}id")
            assert feed_id and TOKEN not in feed_id and feed_id.startswith(HERE)
        assert response.headers.get("cache-control", "").startswith(("private", "no-cache"))


@pytest.mark.parametrize("how", ["bearer", "cookie"])
def test_links_back_carry_no_token_when_it_came_otherwise(store: Store, how: str) -> None:
    app = _token_app(store)
    if how == "bearer":
        client = TestClient(app, base_url=HERE, headers={"Authorization": f"Bearer {TOKEN}"})
    else:
        client = TestClient(app, base_url=HERE)
        client.get("/", params={"token": TOKEN})  # sets the cookie
    for start in STARTS:
        response = client.get(start)
        assert response.status_code == 200
        assert TOKEN not in response.text, start
    # The header wins over a query token: its client sends the header again.
    both = TestClient(app, base_url=HERE, headers={"Authorization": f"Bearer {TOKEN}"})
    assert TOKEN not in both.get("/feed.json", params={"token": TOKEN}).text
