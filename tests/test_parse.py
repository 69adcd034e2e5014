from __future__ import annotations

import json
from pathlib import Path

import pytest

from aggregator.errors import ParseError
from aggregator.parse import decode_feed, parse_feed

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
ZAOBAO = (FEEDS / "zaobao-1.xml").read_bytes()
FIRST_TITLE = "港媒：江泽民遗体上午火化 301医院一带交通管制"


def test_zaobao_sample() -> None:
    feed = parse_feed(
        ZAOBAO, url="https://feedx.net/rss/zaobao.xml", headers={"Content-Type": "application/xml"}
    )
    assert (feed.title, feed.link, len(feed.entries)) == ("联合早报", "http://www.zaobao.com", 20)
    entry = feed.entries[0]
    assert entry.title == FIRST_TITLE
    assert (
        entry.link == "https://www.zaobao.com//realtime/china/story20221205-1340446"
    )  # raw; adapters fix
    assert entry.guid is None
    assert entry.published == "Mon, 05 Dec 2022 16:48:09 +0800"
    assert entry.content is not None and 'data-s="EpXHE======"' in entry.content
    assert feed.problems == ()


def test_rfa_rdf_prefers_content_encoded_and_keeps_raw_dc_date() -> None:
    feed = parse_feed((FEEDS / "rfa-1.xml").read_bytes(), url="https://www.rfa.org/mandarin/RSS")
    entry = feed.entries[0]
    assert entry.content is not None and entry.summary is not None
    assert len(entry.content) > len(entry.summary)
    assert entry.updated == "2019-06-19T19:32:57Z" and entry.published is None
    assert entry.tags == ("香港",)  # trailing ';' of dc:subject dropped


def test_uuid_guid_is_not_resolved_against_the_feed_url() -> None:
    feed = parse_feed((FEEDS / "rfa-2.xml").read_bytes(), url="https://www.rfa.org/rss2.xml")
    assert feed.entries[0].guid == "0a29ee59-eeca-444a-a2e1-68450d752612"


def test_relative_entry_link_resolved_against_feed_url() -> None:
    doc = b'<rss version="2.0"><channel><title>t</title><item><title>a</title><link>/x/1.html</link></item></channel></rss>'  # noqa: E501
    feed = parse_feed(doc, url="https://example.org/feed/rss.xml")
    assert feed.entries[0].link == "https://example.org/x/1.html"


def _as(encoding: str, declared: str) -> bytes:
    text = ZAOBAO.decode("utf-8").replace('encoding="utf-8"', f'encoding="{declared}"', 1)
    return text.encode(encoding)


@pytest.mark.parametrize(
    ("encoding", "declared", "header", "mismatch"),
    [
        ("utf-8", "utf-8", None, False),
        ("gb18030", "gb18030", None, False),
        ("gb18030", "GB2312", "text/xml; charset=gbk", False),
        ("gb18030", "utf-8", None, True),  # declared UTF-8, sent GB18030
        ("utf-8", "GB2312", None, True),  # declared GB2312, sent UTF-8
        ("utf-8", "utf-8", "application/rss+xml; charset=gbk", True),  # header lies
    ],
)
def test_charset_mismatch_never_mojibake(
    encoding: str, declared: str, header: str | None, mismatch: bool
) -> None:
    headers = {"Content-Type": header} if header else None
    feed = parse_feed(
        _as(encoding, declared), url="https://feedx.net/rss/zaobao.xml", headers=headers
    )
    assert len(feed.entries) == 20
    assert feed.entries[0].title == FIRST_TITLE
    assert any("charset mismatch" in p for p in feed.problems) is mismatch


def test_undecodable_bytes_reported_not_hidden() -> None:
    doc = (
        b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        b"<item><title>ok</title><link>https://e.org/1</link></item></channel></rss>"
    )
    doc = doc.replace(b"<title>ok", b"<title>\x80\x81\xff ok")
    text, _encoding, problems = decode_feed(doc)
    assert problems and "undecodable" in problems[0]
    feed = parse_feed(doc, url="https://e.org/feed")
    assert feed.entries[0].link == "https://e.org/1"
    assert any("undecodable" in p for p in feed.problems)


def test_broken_feed_with_entries_keeps_them_and_records_problem() -> None:
    doc = (
        b'<rss version="2.0"><channel><title>t</title>'
        b"<item><title>one</title><link>https://e.org/1</link></item>"
        b"<item><title>two &bogus; </title><link>https://e.org/2</link></item>"
    )
    feed = parse_feed(
        doc, url="https://e.org/feed", headers={"content-type": "application/rss+xml"}
    )
    assert [e.link for e in feed.entries][:1] == ["https://e.org/1"]
    assert feed.problems


@pytest.mark.parametrize(
    "doc", [b"", b"<html><body>hello</body></html>", b"not xml at all <<<", b"<rss><channel"]
)
def test_unreadable_raises_parse_error_with_source_and_url(doc: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_feed(doc, url="https://e.org/feed", source="src")
    assert info.value.source == "src" and info.value.url == "https://e.org/feed"
    assert info.value.__cause__ is not None


def test_empty_valid_feed_is_not_an_error() -> None:
    feed = parse_feed(
        b'<rss version="2.0"><channel><title>t</title></channel></rss>', url="https://e.org/f"
    )
    assert feed.entries == () and feed.title == "t"


def test_atom() -> None:
    doc = b"""<feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>
      <entry><id>urn:x:1</id><title type="html">a &amp;lt;b&amp;gt;</title><link href="/p/1"/>
      <published>2024-01-31T19:33:00+01:00</published><updated>2024-02-01T00:00:00Z</updated>
      <summary>short</summary><content type="html">&lt;p&gt;long body&lt;/p&gt;</content></entry></feed>"""  # noqa: E501
    entry = parse_feed(doc, url="https://e.org/atom.xml").entries[0]
    assert (entry.guid, entry.link) == ("urn:x:1", "https://e.org/p/1")
    assert (entry.published, entry.updated) == ("2024-01-31T19:33:00+01:00", "2024-02-01T00:00:00Z")
    assert entry.content == "<p>long body</p>" and entry.summary == "short"


@pytest.mark.parametrize("version", ["1", "1.1"])
def test_json_feed(version: str) -> None:
    author = (
        {"authors": [{"name": "A"}, {"name": "B"}]}
        if version == "1.1"
        else {"author": {"name": "A"}}
    )
    doc = {
        "version": f"https://jsonfeed.org/version/{version}",
        "title": "J",
        "home_page_url": "https://e.org/",
        "items": [
            {"id": "1", "url": "/a", "title": "T", "content_html": "<p>x</p>", "summary": "s",
             "date_published": "2024-01-31T19:33:00+01:00", "tags": ["x", "x", " y "],
             "attachments": [{"url": "https://e.org/a.mp3", "mime_type": "audio/mpeg"}], **author},
            {"id": "2", "external_url": "https://o.org/b", "content_text": "a < b\n\nc"},
            "junk",
        ],
    }  # fmt: skip
    feed = parse_feed(json.dumps(doc).encode(), url="https://e.org/feed.json")
    first, second = feed.entries
    assert (feed.title, feed.link) == ("J", "https://e.org/")
    assert (first.guid, first.link, first.content, first.summary) == (
        "1",
        "https://e.org/a",
        "<p>x</p>",
        "s",
    )
    assert first.published == "2024-01-31T19:33:00+01:00"
    assert first.tags == ("x", "y") and first.enclosures == ("https://e.org/a.mp3",)
    assert first.author == ("A, B" if version == "1.1" else "A")
    assert (second.link, second.content) == ("https://o.org/b", "<p>a &lt; b</p><p>c</p>")
    assert any("item 2" in p for p in feed.problems)


@pytest.mark.parametrize(
    "doc",
    [b"{", b'{"version": "x", "items": []}', b'{"version": "https://jsonfeed.org/version/1"}'],
)
def test_bad_json_feed(doc: bytes) -> None:
    with pytest.raises(ParseError):
        parse_feed(doc, url="https://e.org/feed.json")


def test_parse_never_fetches(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(urllib.request, "urlopen", boom)
    monkeypatch.setattr(urllib.request.OpenerDirector, "open", boom)
    with pytest.raises(ParseError):
        parse_feed(b"https://example.org/feed.xml", url="https://example.org/feed.xml")


def test_plain_text_titles_keep_text_that_looks_like_markup() -> None:
    """An Atom ``type="text"`` title is text: ``a<b c> d`` must not lose ``<b c>`` as a tag.

    (RSS titles are ambiguous; feedparser sniffs them, and so do we.)
    """
    from datetime import UTC, datetime

    from aggregator.adapters import get_adapter
    from aggregator.types import Source

    doc = (
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        b"<id>urn:x</id><updated>2026-01-01T00:00:00Z</updated><entry><id>urn:1</id>"
        b'<title type="text">a&lt;b c&gt; d &amp;amp; e</title>'
        b'<link href="https://example.org/1"/><updated>2026-01-01T00:00:00Z</updated>'
        b"</entry></feed>"
    )
    (entry,) = parse_feed(doc, url="https://example.org/feed").entries
    source = Source("s", "S", "https://example.org/feed")
    article = get_adapter("generic")(entry, source, datetime(2026, 1, 2, tzinfo=UTC))
    # The tag-like text stays; the entity the text still spells is decoded, as every
    # entity left in a title is (feeds double-escape), so the title is plain text.
    assert article.title == "a<b c> d & e"


def test_a_body_naming_a_local_file_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # feedparser open()s bytes as a file name before parsing them; a feed server
    # answering "local.xml" must not get a file from our disk into the store.
    (tmp_path / "local.xml").write_text(
        '<rss version="2.0"><channel><item><title>secret</title></item></channel></rss>'
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParseError):
        parse_feed(b"local.xml", url="https://example.org/feed.xml")
