"""The fast path (:mod:`aggregator.parse.fastpath`: RSS 2.0 and Atom) must be exact or step aside.

For every document, ``read_fast`` either declines (``None``, and feedparser reads it
as before) or yields exactly the :class:`RawFeed` feedparser's path yields: same
entries field by field, same feed title and link, same problems.  These tests run
both readers on the same prepared bytes and compare, on the real samples, on the
benchmark corpus, on the malformed inputs that make lenient fast parsers lose data,
on feedparser's own test documents and on generated documents.  They also check the
fast path really accepts the clean feeds, since a fast path that always declines
would pass every equivalence check, and that deliberate mutations of the fast path
make these checks fail.
"""

from __future__ import annotations

import html
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator import parse
from aggregator.errors import ParseError
from aggregator.parse import atom as atom_reader
from aggregator.parse import fastpath, rss2, xmlfeed
from aggregator.types import RawFeed

FIXTURES = Path(__file__).parent / "fixtures"
URL = "https://example.org/rss/feed.xml"
RSS_HEADERS = {"Content-Type": "application/rss+xml"}
HEADER_VARIANTS = [None, RSS_HEADERS, {"Content-Type": "text/html; charset=gb2312"}]

# Real samples, and whether the fast path should take them.  The others carry what it
# leaves to feedparser: RDF, media:* elements and <link isPermaLink>, or two channel
# titles and lower-case <lastbuilddate> next to a stray <url>.
SAMPLES = {
    "feeds/zaobao-1.xml": True,
    "feeds/other-kzaobao-scripts-relative-1.xml": True,
    "feeds/rfa-1.xml": False,
    "feeds/rfa-2.xml": False,
    "feeds/voa-translated-malformed-1.xml": False,
    "adapters/zaobao-1.xml": True,
    "adapters/seeds-rfa.xml": True,
    "adapters/seeds-rfi.xml": True,
    "adapters/seeds-voa.xml": True,
    "adapters/seeds-zaobao.xml": True,
    "adapters/generic-rfa2.xml": False,  # as rfa-2.xml, which it is cut from
}


def read_both(
    content: bytes, headers: dict[str, str] | None = None
) -> tuple[RawFeed | None, RawFeed | ParseError]:
    """``(fast path's RawFeed or None, feedparser path's RawFeed or ParseError)``."""
    document, response_headers, problems = xmlfeed.prepare_xml(content, headers)
    fast = fastpath.read_fast(document, response_headers, url=URL, readers=xmlfeed.FAST_READERS)
    fast_feed = None
    if fast is not None:
        fast_feed = xmlfeed.raw_feed(fast, problems, url=URL, headers=headers, source="test")
    try:
        slow = xmlfeed.read_with_feedparser(document, response_headers, url=URL, source="test")
        return fast_feed, xmlfeed.raw_feed(slow, problems, url=URL, headers=headers, source="test")
    except ParseError as exc:
        return fast_feed, exc


def assert_equivalent(content: bytes, headers: dict[str, str] | None = None) -> RawFeed | None:
    """Assert the fast path declines or agrees with feedparser; return its feed."""
    fast, slow = read_both(content, headers)
    if fast is None:
        return None
    assert isinstance(slow, RawFeed), f"feedparser failed where the fast path read: {slow!r}"
    assert len(fast.entries) == len(slow.entries)
    for index, (mine, theirs) in enumerate(zip(fast.entries, slow.entries, strict=True)):
        for field, value in mine.to_dict().items():
            assert value == getattr(theirs, field), f"entry {index} field {field}"
    assert (fast.title, fast.link, fast.problems) == (slow.title, slow.link, slow.problems)
    assert fast == slow
    return fast


def assert_declined(content: bytes, headers: dict[str, str] | None = None) -> None:
    """Assert the fast path declines and parse_feed still gives feedparser's answer."""
    fast, slow = read_both(content, headers)
    assert fast is None
    if isinstance(slow, ParseError):
        with pytest.raises(ParseError):
            parse.parse_feed(content, url=URL, headers=headers, source="test")
    else:
        assert parse.parse_feed(content, url=URL, headers=headers, source="test") == slow


def rss(items: str, channel: str = "<title>T</title><link>http://example.org/</link>") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:atom="http://www.w3.org/2005/Atom">'
        f"<channel>{channel}{items}</channel></rss>"
    ).encode()


# -- real samples and the benchmark corpus ---------------------------------------------


@pytest.mark.parametrize("headers", HEADER_VARIANTS, ids=["no-headers", "rss", "text-html"])
@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_real_samples(sample: str, headers: dict[str, str] | None) -> None:
    fast = assert_equivalent((FIXTURES / sample).read_bytes(), headers)
    assert (fast is not None) == SAMPLES[sample]


def test_every_xml_sample_is_listed() -> None:
    found = {
        str(path.relative_to(FIXTURES))
        for path in [*FIXTURES.glob("feeds/*.xml"), *FIXTURES.glob("adapters/*.xml")]
    }
    assert found == set(SAMPLES)


def _bench_corpus() -> ModuleType:
    # bench/ is not a package on the test path; load the generator from its file.
    path = Path(__file__).resolve().parent.parent / "bench" / "corpus.py"
    spec = importlib.util.spec_from_file_location("_bench_corpus_for_tests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


BENCH_IDS = (
    [f"f{index:04d}" for index in range(100)]
    + [f"g{index:03d}" for index in range(20)]
    + [f"m{index:03d}" for index in range(40)]
)


FORMAT_IDS = ["rss-cdata", "rss-escaped", "atom"]  # of f0000, f0001, f0004


def test_benchmark_corpus_is_read_by_the_fast_path_exactly() -> None:
    corpus = _bench_corpus()
    entries: dict[str, int] = dict.fromkeys(corpus.FORMATS, 0)
    for feed_id in BENCH_IDS:
        spec = corpus.feed_spec(feed_id)
        fast = assert_equivalent(corpus.render_feed(spec), RSS_HEADERS)
        assert fast is not None, feed_id
        entries[spec.format] += len(fast.entries)
    # Every format of the corpus (Atom, CDATA and escaped RSS) really takes the fast path.
    assert all(count > len(BENCH_IDS) * 4 for count in entries.values()), entries


@pytest.mark.parametrize("feed_id", ["f0000", "f0001", "f0004"], ids=FORMAT_IDS)
def test_parse_feed_serves_clean_feeds_without_feedparser(
    feed_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("feedparser was used")

    corpus = _bench_corpus()
    spec = corpus.feed_spec(feed_id)
    content = corpus.render_feed(spec)
    expected = read_both(content, RSS_HEADERS)[1]
    monkeypatch.setattr(xmlfeed, "read_with_feedparser", refuse)
    feed = parse.parse_feed(content, url=URL, headers=RSS_HEADERS)
    assert feed == expected and len(feed.entries) == spec.items


# -- what lenient parsers get wrong: the fast path must decline ----------------------------

ITEM = "<item><title>t</title><link>http://example.org/a</link><description>d</description></item>"
DECLINED = {
    "bare ampersand in title": rss("<item><title>A & B</title></item>"),
    "bare ampersand in description": rss("<item><description>a & b</description></item>"),
    "empty title with undefined entity": rss(
        "<item><title>&nbsp;</title><link>http://e.org/x</link></item>"
    ),
    "undefined entity in text": rss("<item><title>a&nbsp;b &copy;</title></item>"),
    "doctype with a kept entity": b'<?xml version="1.0"?>'
    b'<!DOCTYPE rss [<!ENTITY nbsp "&#160;">]>'
    + rss("<item><title>a&nbsp;b</title></item>").split(b"?>", 1)[1],
    "doctype with dropped entities": b'<?xml version="1.0"?>'
    b'<!DOCTYPE rss [<!ENTITY a "aa"><!ENTITY b "&a;&a;">]>'
    + rss("<item><title>x&b;y</title></item>").split(b"?>", 1)[1],
    "rss 1.0 rdf": (FIXTURES / "feeds/rfa-1.xml").read_bytes(),
    "rss 0.91": f'<rss version="0.91"><channel><title>T</title>{ITEM}</channel></rss>'.encode(),
    "rss without version": f"<rss><channel><title>T</title>{ITEM}</channel></rss>".encode(),
    "atom with xhtml content": b'<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title>'
    b'<entry><title>e</title><content type="xhtml">'
    b'<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div></content></entry></feed>',
    "xml:base on an item": rss(ITEM.replace("<item>", '<item xml:base="http://other.example/">')),
    "plain base attribute": rss(ITEM.replace("<item>", '<item base="http://other.example/">')),
    "markup inside description": rss("<item><description><p>x</p></description></item>"),
    "markup inside title": rss("<item><title>a <b>b</b></title></item>"),
    "title with a type": rss('<item><title type="html">a &lt;b&gt;</title></item>'),
    "two titles": rss("<item><title></title><title>second</title></item>"),
    "two descriptions": rss(
        "<item><description>one</description><description>two</description></item>"
    ),
    "author and dc:creator": rss(
        "<item><author>a@b.org (A)</author><dc:creator>B</dc:creator></item>"
    ),
    "two channel titles": rss(ITEM, "<title>one</title><title>two</title>"),
    "media content": rss(
        '<item xmlns:media="http://search.yahoo.com/mrss/"><title>t</title>'
        '<media:content url="http://e.org/i.jpg"/></item>'
    ),
    "itunes element": rss(
        '<item xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"><title>t</title>'
        "<itunes:duration>1</itunes:duration></item>"
    ),
    "dc:subject": rss("<item><title>t</title><dc:subject>s</dc:subject></item>"),
    "source element": rss('<item><title>t</title><source url="http://e.org/">S</source></item>'),
    "atom link in an item": rss('<item><title>t</title><atom:link href="http://e.org/x"/></item>'),
    "atom link without rel": rss(ITEM, '<title>T</title><atom:link href="http://e.org/x"/>'),
    "atom link rel alternate": rss(
        ITEM, '<title>T</title><atom:link rel="alternate" href="http://e.org/x"/>'
    ),
    "atom link rel ALTERNATE": rss(
        ITEM, '<title>T</title><atom:link rel="ALTERNATE" href="http://e.org/x"/>'
    ),
    "guid attribute spelled twice": rss(
        '<item><guid isPermaLink="false" ispermalink="true">g</guid></item>'
    ),
    "default namespace": (
        f'<rss version="2.0" xmlns="http://example.org/ns"><channel>{ITEM}</channel></rss>'
    ).encode(),
    "prefix rebound": rss("<item><title>t</title><dc:date>2024</dc:date></item>").replace(
        b'xmlns:dc="http://purl.org/dc/elements/1.1/"', b'xmlns:dc="http://purl.org/dc/terms/"'
    ),
    "rss 1.0 namespace declared": rss(ITEM).replace(
        b"<channel>", b'<channel xmlns:r="http://purl.org/rss/1.0/">'
    ),
    "xlink declared": rss(ITEM.replace("<item>", '<item xmlns:xl="http://www.w3.org/1999/xlink">')),
    "textInput": rss(ITEM, "<title>T</title><textInput><title>q</title><name>n</name></textInput>"),
    "item outside the channel": (
        f'<rss version="2.0"><channel><title>T</title></channel>{ITEM}</rss>'
    ).encode(),
    "junk before the root": b"junk" + rss(ITEM),
}


@pytest.mark.parametrize("content", DECLINED.values(), ids=DECLINED.keys())
def test_fast_path_declines(content: bytes) -> None:
    assert_declined(content)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_truncated_documents_are_declined(cut: float) -> None:
    content = (FIXTURES / "feeds/zaobao-1.xml").read_bytes()
    assert_declined(content[: int(len(content) * cut)])


def test_a_dropped_external_dtd_leaves_a_plain_document() -> None:
    # neutralise_dtd removes a DOCTYPE that declares nothing, for both readers alike.
    content = b'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "http://127.0.0.1:9/rss.dtd">'
    assert assert_equivalent(content + rss(ITEM).split(b"?>", 1)[1]) is not None


def test_gb2312_declared_utf8_is_repaired_before_either_reader() -> None:
    # decode_feed decides the charset for both readers, so the fast path sees the same
    # well-formed UTF-8 feedparser does: it may read it, and must agree, problem included.
    content = rss(ITEM.replace(">t<", ">联合早报<")).replace(b"utf-8", b"gb2312")
    fast = assert_equivalent(content)
    assert fast is not None and fast.entries[0].title == "联合早报"
    assert fast.problems == ("charset mismatch: declared gb18030 but the content is UTF-8",)


def test_utf8_declared_gb18030_is_repaired_before_either_reader() -> None:
    content = rss(ITEM.replace(">t<", ">联合早报<")).decode().encode("gb18030")
    fast = assert_equivalent(content)
    assert fast is not None and fast.entries[0].title == "联合早报"
    assert "the content is gb18030" in fast.problems[0]


# -- feedparser's quirks the fast path reproduces ------------------------------------------

ACCEPTED = {
    "guid is the link when there is none": "<item><guid>http://e.org/g</guid></item>",
    "guid before the link": "<item><guid>http://e.org/g</guid><link>http://e.org/l</link></item>",
    "empty link before a guid": "<item><link/><guid>http://e.org/g</guid></item>",
    "empty link after a guid": "<item><guid>http://e.org/g</guid><link></link></item>",
    "guid not a permalink": '<item><guid isPermaLink="false">http://e.org/g</guid></item>',
    "guid permalink True is not true": '<item><guid isPermaLink="True">abc</guid></item>',
    "relative guid and link": "<item><guid>/a/b</guid><link>c/d?x=1&amp;y=2</link></item>",
    "extra slashes after the scheme": "<item><link>https:////e.org//a</link></item>",
    "link with escaped query": "<item><link>http://e.org/?a=1&amp;amp;b;=2&amp;c</link></item>",
    "title with markup as text": "<item><title>a &lt;b&gt;bold&lt;/b&gt; c</title></item>",
    "title that looks like html": "<item><title>a &amp;amp; b</title></item>",
    "title with unknown tag": "<item><title>&lt;foo&gt;x&lt;/foo&gt;</title></item>",
    "cdata title with markup": "<item><title><![CDATA[ <i>x</i> & y ]]></title></item>",
    "whitespace everywhere": (
        "<item>\n <title>\n\t t \u3000</title>\n <description>\n d \n</description></item>"
    ),
    "escaped html description": (
        "<item><description>&lt;p&gt;a&amp;nbsp;b&lt;/p&gt;</description></item>"
    ),
    "content before description": "<item><content:encoded><![CDATA[<p>long body</p>]]>"
    "</content:encoded><description>short</description></item>",
    "content only": "<item><content:encoded>&lt;p&gt;x&lt;/p&gt;</content:encoded></item>",
    "content equal to description": (
        "<item><description>same</description><content:encoded>same</content:encoded></item>"
    ),
    "empty content": (
        "<item><description>d</description><content:encoded> </content:encoded></item>"
    ),
    "mojibake latin-1": "<item><title>cafÃ© Ã\u00a0 la</title><description>Ã©</description></item>",
    "c1 controls": "<item><title>a\u0080b\u0096c</title><category>\u0093x\u0094</category></item>",
    "dates raw": "<item><pubDate> Mon, 05 Dec 2022 16:48:09 +0800 </pubDate>"
    "<dc:date>2019-06-19T19:32:57Z</dc:date></item>",
    "bad date": "<item><pubDate>not a date</pubDate></item>",
    "author with email": "<item><author>webdesk@voanews.com（威廉·杨） </author></item>",
    "dc creator": "<item><dc:creator>张三</dc:creator></item>",
    "categories": '<item><category domain="d"/><category>a;</category>'
    '<category domain="x">b</category><category>a</category><category> </category></item>',
    "enclosures": '<item><enclosure url=" http://e.org/a.mp3 " length="1" type="audio/mpeg"/>'
    '<enclosure url=""/><enclosure type="x"/><enclosure url="http://e.org/a.mp3"/></item>',
    "lower and upper case names": (
        "<ITEM><Title>t</Title><PUBDATE>x</PUBDATE><LINK>http://e.org/</LINK></ITEM>"
    ),
    "comments and wfw": '<item xmlns:wfw="http://wellformedweb.org/commentAPI/" '
    'xmlns:slash="http://purl.org/rss/1.0/modules/slash/"><comments>http://e.org/c</comments>'
    "<wfw:commentRss>http://e.org/f</wfw:commentRss><slash:comments>3</slash:comments></item>",
    "other prefixes for known modules": '<item xmlns:c="http://purl.org/rss/1.0/modules/content/"'
    ' xmlns:d="http://purl.org/dc/elements/1.1/"><c:encoded>body</c:encoded>'
    "<d:creator>me</d:creator></item>",
    "a relied-on prefix bound to an unknown namespace": '<item xmlns:dc="urn:x:dc">'
    '<dc:creator xmlns:dc="http://purl.org/dc/elements/1.1/">me</dc:creator></item>',
    "empty item": "<item/>",
    "comments and PIs in text": "<item><title>a<!-- c -->b<?pi x?>c</title></item>",
    "astral characters": "<item><title>&#x1F600; \U0001f600</title></item>",
}

CHANNELS = {
    "no channel fields": "",
    "everything the channel may hold": (
        "<title> T &amp; co </title><link>/relative?a=1&amp;b;</link><description>d</description>"
        "<language>zh</language><copyright>c</copyright>"
        "<managingEditor>a@b.org (A)</managingEditor><webMaster>w@b.org</webMaster>"
        "<pubDate>Mon, 05 Dec 2022 16:48:09 +0800</pubDate>"
        "<lastBuildDate>x</lastBuildDate><category>c</category><generator>g</generator>"
        "<docs>http://e.org/docs</docs><ttl>5</ttl>"
        "<image><title>I</title><url>/i.png</url><link>http://e.org/</link><width>x</width>"
        "<height>9</height><description>i</description></image>"
        '<atom:link href="http://e.org/feed" rel="self" type="application/rss+xml"/>'
        '<sy:updatePeriod xmlns:sy="http://purl.org/rss/1.0/modules/syndication/">'
        "hourly</sy:updatePeriod>"
    ),
    "title after items": "",  # the title is appended after the items below
}


@pytest.mark.parametrize("channel", CHANNELS, ids=CHANNELS.keys())
@pytest.mark.parametrize("item", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_fast_path_reproduces_feedparser(item: str, channel: str) -> None:
    if channel == "title after items":
        content = rss(item + "<title>late</title>", "<image><title>I</title></image>")
    else:
        content = rss(item, CHANNELS[channel])
    assert assert_equivalent(content) is not None


CONTENT_TYPES = ["text/plain", "application/octet-stream", "text/xml", "application/atom+xml", ""]


@pytest.mark.parametrize("content_type", [None, *CONTENT_TYPES])
def test_content_type_problems_match(content_type: str | None) -> None:
    headers = None if content_type is None else {"Content-Type": content_type}
    assert assert_equivalent(rss(ITEM), headers) is not None


PROLOGS = [
    b"",
    b"<?xml version='1.1' encoding='UTF-8' standalone='yes'?>",
    b'<?xml version="1.0"?>\n<?xml-stylesheet type="text/xsl" href="/a.xsl"?>\n<!-- comment -->',
    b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?>\r\n',
]


@pytest.mark.parametrize("prolog", PROLOGS)
def test_prologs_match(prolog: bytes) -> None:
    assert assert_equivalent(prolog + rss(ITEM).split(b"?>", 1)[1]) is not None


def test_channel_without_items_matches() -> None:
    assert assert_equivalent(rss("")) is not None
    assert assert_equivalent(b'<rss version="2.0"/>') is not None


# -- generated documents -------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        "news", "联合早报", " lead", "trail ", "\t\n", "\u3000", "\xa0", "<b>bold</b>", "</p>",
        "<p>", "<foo>", "a & b", "&amp;", "&lt;", "&nbsp;", "&bogus;", "&#169;", "&#x80;", "Ã©",
        "\x85", "\x96", "é", "]]>", '"', "'", "http://e.org/?a=1&b=2", "&b;", "//x", "https:///x",
        "/rel", "Mon, 05 Dec 2022 16:48:09 +0800", "2019-06-19T19:32:57Z", "a@b.org (Name)", ";",
        "\U0001f600", "＜",
    ]
)  # fmt: skip
_TEXT = st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=5).map("".join)
_XML_CHAR = str.maketrans({c: None for c in map(chr, range(0x20)) if c not in "\t\n\r"})


@st.composite
def _text_node(draw: st.DrawFn) -> tuple[str, bool]:
    """``(markup, well_formed)``: text escaped, in CDATA, or raw (maybe malformed)."""
    text = draw(_TEXT).translate(_XML_CHAR).replace("\ufffe", "").replace("\uffff", "")
    text = "".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF)
    how = draw(st.sampled_from(["escape", "escape", "cdata", "raw"]))
    if how == "cdata" and "]]>" not in text:
        return f"<![CDATA[{text}]]>", True
    if how == "raw":
        return text, not any(c in text for c in "<&>")
    return html.escape(text, quote=False), True


@st.composite
def _item(draw: st.DrawFn) -> tuple[str, bool]:
    parts: list[str] = []
    ok = True
    simple = ["title", "link", "description", "content:encoded", "pubDate", "dc:date", "comments"]
    for name in draw(st.lists(st.sampled_from(simple), unique=True)):
        text, fine = draw(_text_node())
        parts.append(f"<{name}>{text}</{name}>")
        ok &= fine
    if draw(st.booleans()):
        name = draw(st.sampled_from(["author", "dc:creator"]))
        text, fine = draw(_text_node())
        parts.append(f"<{name}>{text}</{name}>")
        ok &= fine
    if draw(st.booleans()):
        text, fine = draw(_text_node())
        permalink = draw(st.sampled_from(["", ' isPermaLink="false"', ' isPermaLink="true"']))
        parts.append(f"<guid{permalink}>{text}</guid>")
        ok &= fine
    for _ in range(draw(st.integers(0, 3))):
        text, fine = draw(_text_node())
        domain = draw(st.sampled_from(["", ' domain="d"']))
        parts.append(f"<category{domain}>{text}</category>")
        ok &= fine
    for _ in range(draw(st.integers(0, 2))):
        url = html.escape(draw(_TEXT).translate(_XML_CHAR), quote=True)
        url = "".join(c for c in url if not 0xD800 <= ord(c) <= 0xDFFF and c not in "\ufffe\uffff")
        parts.append(f'<enclosure url="{url}" type="audio/mpeg"/>')
    if draw(st.integers(0, 9)) == 0:  # something the fast path leaves to feedparser
        parts.append(
            draw(
                st.sampled_from(
                    ["<title>again</title>", "<source>s</source>", "<dc:subject>s</dc:subject>"]
                )
            )
        )
        ok = False
    return "<item>" + "".join(draw(st.permutations(parts))) + "</item>", ok


@st.composite
def rss_documents(draw: st.DrawFn) -> tuple[bytes, dict[str, str] | None, bool]:
    """``(bytes, headers, the fast path must accept it)``."""
    title, title_ok = draw(_text_node())
    link, link_ok = draw(_text_node())
    items = draw(st.lists(_item(), max_size=4))
    channel = ""
    if draw(st.booleans()):
        channel += f"<title>{title}</title>"
    if draw(st.booleans()):
        channel += f"<link>{link}</link>"
    content = rss("".join(markup for markup, _ in items), channel)
    accept = title_ok and link_ok and all(fine for _, fine in items)
    if not draw(st.integers(0, 4)):
        content = content.replace(b'encoding="utf-8"', b'encoding="gb2312"')
    headers = draw(st.sampled_from([None, RSS_HEADERS, {"Content-Type": "text/html"}]))
    return content, headers, accept


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(rss_documents())
def test_generated_documents(document: tuple[bytes, dict[str, str] | None, bool]) -> None:
    content, headers, accept = document
    fast = assert_equivalent(content, headers)
    if accept:
        assert fast is not None, "a well-formed, whitelisted document was declined"


# -- every XML fixture: feedparser's own test documents included -------------------------

XML_FIXTURES = sorted(
    path for folder in ("feeds", "adapters", "peers") for path in (FIXTURES / folder).rglob("*.xml")
)


def test_every_xml_fixture_is_read_exactly_or_declined() -> None:
    accepted = {"rss20": 0, "atom10": 0}
    for path in XML_FIXTURES:
        fast = assert_equivalent(path.read_bytes())
        if fast is not None:
            document, headers, _problems = xmlfeed.prepare_xml(path.read_bytes(), None)
            reading = fastpath.read_fast(document, headers, url=URL, readers=xmlfeed.FAST_READERS)
            assert reading is not None
            accepted[reading.version] += 1
    # feedparser's suite holds hundreds of plain documents of each format.
    assert min(accepted.values()) > 100, accepted


# -- Atom 1.0 ------------------------------------------------------------------------------


def atom(entries: str, feed: str = '<title>T</title><link href="http://example.org/"/>') -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
        f"{feed}{entries}</feed>"
    ).encode()


ATOM_ACCEPTED = {
    "id is the link": "<entry><id>http://e.org/1</id></entry>",
    "urn id is the link": "<entry><id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id></entry>",
    "alternate link after the id": '<entry><id>tag:e.org,1:a</id><link href="/a"/></entry>',
    "alternate link before the id": '<entry><link href="http://e.org/a"/><id>x</id></entry>',
    "two alternate links": '<entry><link href="http://e.org/a"/><link href="http://e.org/b"/></entry>',
    "non-html alternate": '<entry><id>i</id><link type="application/pdf" href="http://e.org/p"/></entry>',
    "xhtml alternate": '<entry><link type="application/xhtml+xml" href="http://e.org/x"/></entry>',
    "empty href": '<entry><id>http://e.org/i</id><link href=""/></entry>',
    "link rels": '<entry><link rel="self" href="http://e.org/s"/><link rel="EDIT" href="e"/>'
    '<link rel="enclosure" type="audio/mpeg" length="1" href=" http://e.org/a.mp3 "/>'
    '<link rel="Enclosure" href="http://e.org/b.mp3"/><link rel="enclosure" href=""/></entry>',
    "html title": '<entry><title type="html">a &lt;b&gt;bold&lt;/b&gt;</title></entry>',
    "text title with markup": "<entry><title>a &lt;b&gt; &amp;amp; c</title></entry>",
    "type spelled as a media type": '<entry><title type="TEXT/HTML">x &lt;i&gt;</title></entry>',
    "summary and html content": "<entry><summary>short &amp; plain</summary>"
    '<content type="html">&lt;p&gt;long&lt;/p&gt;</content></entry>',
    "content before summary": '<entry><content type="html"><![CDATA[<p>x</p>]]></content>'
    '<summary type="html">s</summary></entry>',
    "text content only": "<entry><content>a &lt;p&gt; b</content></entry>",
    "cdata everywhere": "<entry><title><![CDATA[ <i>x</i> & y ]]></title>"
    '<summary type="html"><![CDATA[<b>s</b>]]></summary></entry>',
    "author name and email": (
        "<entry><author><name> N </name><email>n@e.org</email></author></entry>"
    ),
    "author email only": "<entry><author><email>n@e.org</email><uri>/me</uri></author></entry>",
    "author uri only": "<entry><author><uri>http://e.org/me</uri></author></entry>",
    "empty author": "<entry><author> </author></entry>",
    "author name mojibake": "<entry><author><name>cafÃ©\u0080</name></author></entry>",
    "categories": '<entry><category term="a"/><category term="b" scheme="s" label="B"/>'
    '<category term="a"/><category label="L"/><category>text</category>'
    '<category term="t">more</category><category term=""/></entry>',
    "dates": "<entry><published>2024-01-01T08:00:00+08:00</published>"
    "<updated> 2024-01-02T00:00:00Z </updated></entry>",
    "bad date": "<entry><updated>not a date</updated></entry>",
    "rights and xml:lang": '<entry xml:lang="zh"><rights type="html">&lt;b&gt;c&lt;/b&gt;</rights>'
    '<title xml:lang="en">t</title></entry>',
    "c1 controls and mojibake": "<entry><title>a\u0080b Ã©</title><summary>\x96</summary></entry>",
    "upper-case names": "<ENTRY><Title>t</Title><ID>http://e.org/u</ID></ENTRY>",
    "empty entry": "<entry/>",
    "comments and PIs": "<entry><title>a<!-- c -->b<?pi x?>c</title></entry>",
}

ATOM_FEEDS = {
    "no feed fields": "",
    "everything the feed may hold": (
        '<title type="html">T &amp;amp; co</title><subtitle type="html">&lt;b&gt;s</subtitle>'
        '<link rel="self" href="http://e.org/feed"/><link rel="alternate" type="text/html" '
        'href="/home"/><id>urn:x</id><updated>2024-01-01T00:00:00Z</updated>'
        "<author><name>A</name><email>a@e.org</email><uri>http://e.org/</uri></author>"
        '<generator uri="http://g.org/" version="1">G</generator><icon>/i.png</icon>'
        '<logo>/l.png</logo><rights>c</rights><category term="c"/>'
    ),
    "id before the link": '<id>http://e.org/id</id><link href="http://e.org/"/>',
    "id is the link": "<id>http://e.org/id</id><title>T</title>",
}


@pytest.mark.parametrize("feed", ATOM_FEEDS, ids=ATOM_FEEDS.keys())
@pytest.mark.parametrize("entry", ATOM_ACCEPTED.values(), ids=ATOM_ACCEPTED.keys())
def test_atom_fast_path_reproduces_feedparser(entry: str, feed: str) -> None:
    assert assert_equivalent(atom(entry, ATOM_FEEDS[feed])) is not None


def test_atom_with_a_prefix_and_after_entries() -> None:
    prefixed = (
        b'<a:feed xmlns:a="http://www.w3.org/2005/Atom"><a:entry><a:title>t</a:title>'
        b"</a:entry><a:title>late</a:title></a:feed>"
    )
    fast = assert_equivalent(prefixed)
    assert fast is not None and fast.title == "late"


ATOM_ENTRY = "<entry><id>http://e.org/1</id><title>t</title></entry>"
ATOM_DECLINED = {
    "xhtml content": '<entry><content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">'
    "x</div></content></entry>",
    "xhtml title without markup": '<entry><title type="xhtml">a &amp; b</title></entry>',
    "base64 content": '<entry><content type="image/png">aGVsbG8=</content></entry>',
    "content with src": '<entry><content src="http://e.org/c"/></entry>',
    "xml:base": '<entry xml:base="http://other.example/"><link href="a"/></entry>',
    "link without href": "<entry><link>http://e.org/a</link></entry>",
    "link with a url attribute": '<entry><link url="http://e.org/u" href="http://e.org/h"/></entry>',
    "two authors": "<entry><author><name>A</name><email>a@e.org</email></author>"
    "<author><name>B</name></author></entry>",
    "text directly in an author": "<entry><author>me <name>A</name></author></entry>",
    "two summaries": "<entry><summary>a</summary><summary>b</summary></entry>",
    "two ids": "<entry><id>a</id><id>b</id></entry>",
    "contributor": "<entry><contributor><name>c</name></contributor></entry>",
    "source": "<entry><source><title>s</title></source></entry>",
    "extension element": '<entry xmlns:media="http://search.yahoo.com/mrss/">'
    '<media:thumbnail url="http://e.org/t.jpg"/></entry>',
    "markup in a summary": "<entry><summary><p>x</p></summary></entry>",
    "namespaced attribute": '<entry><link xmlns:t="urn:t" t:x="1" href="http://e.org/"/></entry>',
    "summary with mode": '<entry><summary mode="escaped">x</summary></entry>',
    "atom 0.3 namespace": "",  # the namespace is swapped below
    "no namespace": "",
    "rss 1.0 namespace declared": "",
}


@pytest.mark.parametrize("name", ATOM_DECLINED, ids=ATOM_DECLINED.keys())
def test_atom_fast_path_declines(name: str) -> None:
    content = atom(ATOM_DECLINED[name] or ATOM_ENTRY)
    if name == "atom 0.3 namespace":
        content = content.replace(b"http://www.w3.org/2005/Atom", b"http://purl.org/atom/ns#")
    elif name == "no namespace":
        content = content.replace(b' xmlns="http://www.w3.org/2005/Atom"', b"")
    elif name == "rss 1.0 namespace declared":
        content = content.replace(b"<feed ", b'<feed xmlns:r="http://purl.org/rss/1.0/" ')
    assert_declined(content)


@st.composite
def _atom_text(draw: st.DrawFn) -> tuple[str, str, bool]:
    """``(attributes, markup, well_formed)`` of a text construct."""
    text, fine = draw(_text_node())
    kind = draw(st.sampled_from(["", ' type="text"', ' type="html"', ' type="xhtml"']))
    return kind, text, fine and "xhtml" not in kind


@st.composite
def _atom_entry(draw: st.DrawFn) -> tuple[str, bool]:
    parts: list[str] = []
    ok = True
    for name in draw(st.lists(st.sampled_from(["title", "summary", "content"]), unique=True)):
        attrs, text, fine = draw(_atom_text())
        parts.append(f"<{name}{attrs}>{text}</{name}>")
        ok &= fine
    for name in draw(st.lists(st.sampled_from(["id", "published", "updated"]), unique=True)):
        text, fine = draw(_text_node())
        parts.append(f"<{name}>{text}</{name}>")
        ok &= fine
    for _ in range(draw(st.integers(0, 3))):
        href = html.escape(draw(_TEXT).translate(_XML_CHAR), quote=True)
        href = "".join(
            c for c in href if not 0xD800 <= ord(c) <= 0xDFFF and c not in "\ufffe\uffff"
        )
        rel = draw(st.sampled_from(["", ' rel="alternate"', ' rel="enclosure"', ' rel="self"']))
        kind = draw(st.sampled_from(["", ' type="text/html"', ' type="audio/mpeg"']))
        parts.append(f'<link{rel}{kind} href="{href}"/>')
    if draw(st.booleans()):
        children = []
        for name in draw(st.lists(st.sampled_from(["name", "email", "uri"]), unique=True)):
            text, fine = draw(_text_node())
            children.append(f"<{name}>{text}</{name}>")
            ok &= fine
        parts.append("<author>" + "".join(children) + "</author>")
    for _ in range(draw(st.integers(0, 3))):
        term = draw(st.sampled_from(["", ' term="a"', ' term="b"', ' term=""']))
        label = draw(st.sampled_from(["", ' label="L"', ' scheme="s"']))
        text, fine = draw(_text_node())
        parts.append(f"<category{term}{label}>{text}</category>")
        ok &= fine
    if draw(st.integers(0, 9)) == 0:  # something the fast path leaves to feedparser
        parts.append(draw(st.sampled_from(["<id>again</id>", "<source/>", '<link rel="x"/>'])))
        ok = False
    return "<entry>" + "".join(draw(st.permutations(parts))) + "</entry>", ok


@st.composite
def atom_documents(draw: st.DrawFn) -> tuple[bytes, dict[str, str] | None, bool]:
    """``(bytes, headers, the fast path must accept it)``."""
    feed = ""
    ok = True
    if draw(st.booleans()):
        attrs, text, fine = draw(_atom_text())
        feed += f"<title{attrs}>{text}</title>"
        ok &= fine
    if draw(st.booleans()):
        text, fine = draw(_text_node())
        feed += f"<id>{text}</id>"
        ok &= fine
    if draw(st.booleans()):
        feed += draw(st.sampled_from(['<link href="/home"/>', '<link rel="self" href="/f"/>']))
    entries = draw(st.lists(_atom_entry(), max_size=4))
    content = atom("".join(markup for markup, _ in entries), feed)
    headers = draw(st.sampled_from([None, {"Content-Type": "application/atom+xml"}]))
    return content, headers, ok and all(fine for _, fine in entries)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(atom_documents())
def test_generated_atom_documents(document: tuple[bytes, dict[str, str] | None, bool]) -> None:
    content, headers, accept = document
    fast = assert_equivalent(content, headers)
    if accept:
        assert fast is not None, "a well-formed, whitelisted document was declined"


# -- the checks above can fail: deliberate mutations of the fast path must be caught -------


def _suite_catches_it() -> bool:
    """Whether the hand-written cases above (some of them) fail: True if any does."""
    checks: list[tuple[bytes, bool]] = [
        *(
            (atom(entry, feed), True)
            for entry in ATOM_ACCEPTED.values()
            for feed in ATOM_FEEDS.values()
        ),
        *(
            (rss(item, channel), True)
            for item in ACCEPTED.values()
            for channel in CHANNELS.values()
        ),
        *((atom(entry), False) for entry in ATOM_DECLINED.values() if entry),
        *((content, False) for content in DECLINED.values()),
    ]
    for content, accept in checks:
        try:
            if accept:
                assert assert_equivalent(content) is not None
            else:
                assert_declined(content)
        except AssertionError:
            return True
    return False


def _wrap_end_text(after: Callable[[Any, str], None], reader: type[Any]) -> Callable[..., None]:
    original = reader.end_text

    def end_text(self: Any, kind: str, text: str) -> None:
        original(self, kind, text)
        after(self, kind)

    return end_text


def _drop(key: str, when: str) -> Callable[[Any, str], None]:
    def after(self: Any, kind: str) -> None:
        if kind == when:
            self._item.pop(key, None)

    return after


MUTATIONS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "atom: no mojibake repair": lambda mp: mp.setattr(atom_reader, "stored", str.strip),
    "rss: no mojibake repair": lambda mp: mp.setattr(rss2, "stored", str.strip),
    "atom: every text construct is html": lambda mp: mp.setattr(
        atom_reader, "_content_type", lambda attrs: "text/html"
    ),
    "atom: id never stands in for the link": lambda mp: mp.setattr(
        atom_reader.AtomReader,
        "end_text",
        _wrap_end_text(_drop("link", "id"), atom_reader.AtomReader),
    ),
    "atom: content not copied to the summary": lambda mp: mp.setattr(
        atom_reader.AtomReader,
        "end_text",
        _wrap_end_text(_drop("summary", "content"), atom_reader.AtomReader),
    ),
    "atom: author is the name only": lambda mp: mp.setattr(
        atom_reader.AtomReader,
        "end_container",
        lambda self, kind: (
            self._item.__setitem__("author", self._author.get("name", ""))
            if kind == "author"
            else None
        ),
    ),
    "atom: repeats allowed": lambda mp: mp.setattr(atom_reader.AtomReader, "ONCE", frozenset()),
    "rss: guid never stands in for the link": lambda mp: mp.setattr(
        rss2.Rss2Reader, "end_text", _wrap_end_text(_drop("link", "guid"), rss2.Rss2Reader)
    ),
    "any namespace declaration allowed": lambda mp: mp.setattr(
        fastpath.ExpatReader, "_namespace", lambda self, prefix, uri: None
    ),
}


def test_the_unmutated_fast_path_passes_the_mutation_suite() -> None:
    assert not _suite_catches_it()


@pytest.mark.parametrize("mutate", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_a_mutated_fast_path_is_caught(
    mutate: Callable[[pytest.MonkeyPatch], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    mutate(monkeypatch)
    assert _suite_catches_it()


def test_stored_maps_c1_controls_and_leaves_other_latin1_alone() -> None:
    # feedparser's cp1252 table maps C1 controls only: a no-break space (whose UTF-8
    # starts with the same byte C2) or a copyright sign stays as it is.
    assert fastpath.stored("中\u00a0文 ©") == "中\u00a0文 ©"
    assert fastpath.stored("中\x80文\x9f\u00a0") == "中€文Ÿ\u00a0"
