"""The merged-feed renderers, checked by independent parsers and validators.

Each document is read back by feedparser (what real readers use) *and* by a parser
that shares no code with it: lxml + an RFC 4287 RELAX NG schema for Atom, lxml + the
W3C validator's main rules for RSS, and a JSON Schema written from the JSON Feed 1.1
spec.  feedparser 6 has no JSON Feed support, so JSON Feed is read with ``json``.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import re
from dataclasses import replace
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import feedparser
import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from aggregator.export import (
    ATOM,
    FORMATS,
    JSON_FEED,
    RSS,
    FeedMeta,
    decode_cursor,
    encode_cursor,
    item_id,
    render_atom,
    render_json_feed,
    render_rss,
)
from aggregator.types import UTC, Article, Cursor, Provenance, StoredArticle

ATOM_NS = "http://www.w3.org/2005/Atom"
NS = {
    "atom": ATOM_NS,
    "content": "http://purl.org/rss/1.0/modules/content/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "dcterms": "http://purl.org/dc/terms/",
}
AUTHORITY = "news.example.org,2025"
SOURCE_SCHEME = f"tag:{AUTHORITY}:source"

T0 = datetime(2021, 11, 24, 1, 38, 51, 387000, tzinfo=UTC)


def stored(
    store_id: int,
    title: str,
    *,
    link: str,
    published: datetime | None,
    fetched: datetime,
    body: str = "<p>正文</p>",
    routes: tuple[tuple[str, str, str], ...] = (("zaobao", "联合早报", ""),),
    categories: tuple[str, ...] = (),
    updated: datetime | None = None,
) -> StoredArticle:
    first_id, first_name, _ = routes[0]
    article = Article(
        source_id=first_id,
        source_name=first_name,
        title=title,
        link=link,
        body=body,
        published=published,
        fetched=fetched,
        categories=categories,
    )
    provenance = tuple(
        Provenance(sid, name, route_link or link, None, fetched + timedelta(minutes=n))
        for n, (sid, name, route_link) in enumerate(routes)
    )
    return StoredArticle(store_id, article, provenance, updated or fetched)


MERGED = stored(
    3,
    "中俄防长视频通话：将持续深化两军战略协作",
    link="https://www.zaobao.com/realtime/china/story20211124-1216540",
    published=T0,
    fetched=T0 + timedelta(minutes=5),
    body="<p>中国国务委员兼国防部长魏凤和昨天与俄罗斯国防部长绍伊古举行视频通话。</p>",
    routes=(
        ("zaobao", "联合早报", ""),
        ("rfa", "自由亚洲电台", "https://www.rfa.org/mandarin/story-1216540.html"),
    ),
    categories=("中国", "军事"),
    updated=T0 + timedelta(hours=2),
)
UNDATED = stored(
    2,
    "Title with <angle> & ampersand",
    link="https://www.voanews.com/a/story?id=1&lang=zh",
    published=None,
    fetched=T0 - timedelta(hours=1),
    body='<p>A & B: <a href="https://example.com/?a=1&amp;b=2">x</a> ]]> end</p>',
    routes=(("voa", "美国之音", ""),),
)
PLAIN = stored(
    1,
    "RFA 英文",
    link="https://www.rfa.org/english/news/1.html",
    published=T0 - timedelta(days=1),
    fetched=T0 - timedelta(days=1),
    routes=(("rfa", "自由亚洲电台", ""),),
)
ARTICLES = [MERGED, UNDATED, PLAIN]

META = FeedMeta(
    title="新闻汇总",
    self_url="https://news.example.org/feed.xml?limit=3",
    first_url="https://news.example.org/feed.xml?limit=3",
    next_url="https://news.example.org/feed.xml?limit=3&before=" + encode_cursor(PLAIN.cursor),
    html_url="https://news.example.org/",
    updated=T0 + timedelta(hours=2),
    id_authority=AUTHORITY,
    description="Merged news",
    language="zh",
)


def expected_items() -> list[dict[str, Any]]:
    """What every format must say about ARTICLES, written from the inputs by hand."""
    return [
        {
            "id": f"tag:{AUTHORITY}:article/3",
            "title": "中俄防长视频通话：将持续深化两军战略协作",
            "link": "https://www.zaobao.com/realtime/china/story20211124-1216540",
            "published": T0,
            "updated": T0 + timedelta(hours=2),
            "sources": ["联合早报", "自由亚洲电台"],
        },
        {
            "id": f"tag:{AUTHORITY}:article/2",
            "title": "Title with <angle> & ampersand",
            "link": "https://www.voanews.com/a/story?id=1&lang=zh",
            # no published time: the fetched time stands in
            "published": T0 - timedelta(hours=1),
            "updated": T0 - timedelta(hours=1),
            "sources": ["美国之音"],
        },
        {
            "id": f"tag:{AUTHORITY}:article/1",
            "title": "RFA 英文",
            "link": "https://www.rfa.org/english/news/1.html",
            "published": T0 - timedelta(days=1),
            "updated": T0 - timedelta(days=1),
            "sources": ["自由亚洲电台"],
        },
    ]


def whole_seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def from_struct(parsed: Any) -> datetime:
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC)


def xml(data: bytes) -> etree._Element:
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))


# --- RFC 4287 Appendix B, compact syntax translated to RELAX NG XML by hand ----------
# (Schematron rules of the appendix are checked separately in test_atom_rfc4287_rules.)

ATOM_RNG = """<?xml version="1.0"?>
<grammar xmlns="http://relaxng.org/ns/structure/1.0"
         xmlns:atom="http://www.w3.org/2005/Atom"
         datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes"
         ns="http://www.w3.org/2005/Atom">
  <start><choice><ref name="atomFeed"/><ref name="atomEntry"/></choice></start>

  <define name="atomCommonAttributes">
    <optional><attribute name="xml:base"><ref name="atomUri"/></attribute></optional>
    <optional><attribute name="xml:lang"><ref name="atomLanguageTag"/></attribute></optional>
    <zeroOrMore><ref name="undefinedAttribute"/></zeroOrMore>
  </define>
  <define name="atomPlainTextConstruct">
    <ref name="atomCommonAttributes"/>
    <optional><attribute name="type" ns=""><choice><value>text</value><value>html</value></choice>
      </attribute></optional>
    <text/>
  </define>
  <define name="atomXHTMLTextConstruct">
    <ref name="atomCommonAttributes"/>
    <attribute name="type" ns=""><value>xhtml</value></attribute>
    <ref name="xhtmlDiv"/>
  </define>
  <define name="atomTextConstruct">
    <choice><ref name="atomPlainTextConstruct"/><ref name="atomXHTMLTextConstruct"/></choice>
  </define>
  <define name="atomPersonConstruct">
    <ref name="atomCommonAttributes"/>
    <interleave>
      <element name="name"><text/></element>
      <optional><element name="uri"><ref name="atomUri"/></element></optional>
      <optional><element name="email"><ref name="atomEmailAddress"/></element></optional>
      <zeroOrMore><ref name="extensionElement"/></zeroOrMore>
    </interleave>
  </define>
  <define name="atomDateConstruct">
    <ref name="atomCommonAttributes"/>
    <data type="dateTime"/>
  </define>

  <define name="atomFeed">
    <element name="feed">
      <ref name="atomCommonAttributes"/>
      <interleave>
        <zeroOrMore><ref name="atomAuthor"/></zeroOrMore>
        <zeroOrMore><ref name="atomCategory"/></zeroOrMore>
        <zeroOrMore><ref name="atomContributor"/></zeroOrMore>
        <optional><ref name="atomGenerator"/></optional>
        <optional><ref name="atomIcon"/></optional>
        <ref name="atomId"/>
        <zeroOrMore><ref name="atomLink"/></zeroOrMore>
        <optional><ref name="atomLogo"/></optional>
        <optional><ref name="atomRights"/></optional>
        <optional><ref name="atomSubtitle"/></optional>
        <ref name="atomTitle"/>
        <ref name="atomUpdated"/>
        <zeroOrMore><ref name="extensionElement"/></zeroOrMore>
      </interleave>
      <zeroOrMore><ref name="atomEntry"/></zeroOrMore>
    </element>
  </define>
  <define name="atomEntry">
    <element name="entry">
      <ref name="atomCommonAttributes"/>
      <interleave>
        <zeroOrMore><ref name="atomAuthor"/></zeroOrMore>
        <zeroOrMore><ref name="atomCategory"/></zeroOrMore>
        <optional><ref name="atomContent"/></optional>
        <zeroOrMore><ref name="atomContributor"/></zeroOrMore>
        <ref name="atomId"/>
        <zeroOrMore><ref name="atomLink"/></zeroOrMore>
        <optional><ref name="atomPublished"/></optional>
        <optional><ref name="atomRights"/></optional>
        <optional><ref name="atomSource"/></optional>
        <optional><ref name="atomSummary"/></optional>
        <ref name="atomTitle"/>
        <ref name="atomUpdated"/>
        <zeroOrMore><ref name="extensionElement"/></zeroOrMore>
      </interleave>
    </element>
  </define>

  <define name="atomContent">
    <element name="content">
      <ref name="atomCommonAttributes"/>
      <choice>
        <group>
          <optional><attribute name="type" ns=""><choice><value>text</value><value>html</value>
            </choice></attribute></optional>
          <text/>
        </group>
        <group>
          <attribute name="type" ns=""><value>xhtml</value></attribute>
          <ref name="xhtmlDiv"/>
        </group>
        <group>
          <attribute name="src" ns=""><ref name="atomUri"/></attribute>
          <optional><attribute name="type" ns=""><ref name="atomMediaType"/></attribute></optional>
          <empty/>
        </group>
        <group>
          <attribute name="type" ns=""><ref name="atomMediaType"/></attribute>
          <zeroOrMore><choice><text/><ref name="anyElement"/></choice></zeroOrMore>
        </group>
      </choice>
    </element>
  </define>
  <define name="atomAuthor"><element name="author"><ref name="atomPersonConstruct"/></element>
    </define>
  <define name="atomContributor"><element name="contributor"><ref name="atomPersonConstruct"/>
    </element></define>
  <define name="atomCategory">
    <element name="category">
      <ref name="atomCommonAttributes"/>
      <attribute name="term" ns=""/>
      <optional><attribute name="scheme" ns=""><ref name="atomUri"/></attribute></optional>
      <optional><attribute name="label" ns=""/></optional>
      <ref name="undefinedContent"/>
    </element>
  </define>
  <define name="atomGenerator">
    <element name="generator">
      <ref name="atomCommonAttributes"/>
      <optional><attribute name="uri" ns=""><ref name="atomUri"/></attribute></optional>
      <optional><attribute name="version" ns=""/></optional>
      <text/>
    </element>
  </define>
  <define name="atomIcon"><element name="icon"><ref name="atomCommonAttributes"/>
    <ref name="atomUri"/></element></define>
  <define name="atomId"><element name="id"><ref name="atomCommonAttributes"/><ref name="atomUri"/>
    </element></define>
  <define name="atomLogo"><element name="logo"><ref name="atomCommonAttributes"/>
    <ref name="atomUri"/></element></define>
  <define name="atomLink">
    <element name="link">
      <ref name="atomCommonAttributes"/>
      <attribute name="href" ns=""><ref name="atomUri"/></attribute>
      <optional><attribute name="rel" ns=""><choice><ref name="atomNCName"/><ref name="atomUri"/>
        </choice></attribute></optional>
      <optional><attribute name="type" ns=""><ref name="atomMediaType"/></attribute></optional>
      <optional><attribute name="hreflang" ns=""><ref name="atomLanguageTag"/></attribute>
        </optional>
      <optional><attribute name="title" ns=""/></optional>
      <optional><attribute name="length" ns=""/></optional>
      <ref name="undefinedContent"/>
    </element>
  </define>
  <define name="atomPublished"><element name="published"><ref name="atomDateConstruct"/></element>
    </define>
  <define name="atomUpdated"><element name="updated"><ref name="atomDateConstruct"/></element>
    </define>
  <define name="atomRights"><element name="rights"><ref name="atomTextConstruct"/></element>
    </define>
  <define name="atomSubtitle"><element name="subtitle"><ref name="atomTextConstruct"/></element>
    </define>
  <define name="atomSummary"><element name="summary"><ref name="atomTextConstruct"/></element>
    </define>
  <define name="atomTitle"><element name="title"><ref name="atomTextConstruct"/></element></define>
  <define name="atomSource">
    <element name="source">
      <ref name="atomCommonAttributes"/>
      <interleave>
        <zeroOrMore><ref name="atomAuthor"/></zeroOrMore>
        <zeroOrMore><ref name="atomCategory"/></zeroOrMore>
        <zeroOrMore><ref name="atomContributor"/></zeroOrMore>
        <optional><ref name="atomGenerator"/></optional>
        <optional><ref name="atomIcon"/></optional>
        <optional><ref name="atomId"/></optional>
        <zeroOrMore><ref name="atomLink"/></zeroOrMore>
        <optional><ref name="atomLogo"/></optional>
        <optional><ref name="atomRights"/></optional>
        <optional><ref name="atomSubtitle"/></optional>
        <optional><ref name="atomTitle"/></optional>
        <optional><ref name="atomUpdated"/></optional>
        <zeroOrMore><ref name="extensionElement"/></zeroOrMore>
      </interleave>
    </element>
  </define>

  <define name="atomUri"><text/></define>
  <define name="atomNCName"><data type="string"><param name="minLength">1</param>
    <param name="pattern">[^:]*</param></data></define>
  <define name="atomMediaType"><data type="string"><param name="pattern">.+/.+</param></data>
    </define>
  <define name="atomLanguageTag"><data type="string">
    <param name="pattern">[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*</param></data></define>
  <define name="atomEmailAddress"><data type="string"><param name="pattern">.+@.+</param></data>
    </define>

  <define name="extensionElement">
    <element>
      <anyName><except><nsName/></except></anyName>
      <zeroOrMore><choice><attribute><anyName/></attribute><text/><ref name="anyElement"/></choice>
        </zeroOrMore>
    </element>
  </define>
  <define name="undefinedAttribute">
    <attribute>
      <anyName><except>
        <name ns="http://www.w3.org/XML/1998/namespace">base</name>
        <name ns="http://www.w3.org/XML/1998/namespace">lang</name>
        <nsName ns=""/>
      </except></anyName>
    </attribute>
  </define>
  <define name="undefinedContent">
    <zeroOrMore><choice><text/><ref name="anyForeignElement"/></choice></zeroOrMore>
  </define>
  <define name="anyElement">
    <element><anyName/>
      <zeroOrMore><choice><attribute><anyName/></attribute><text/><ref name="anyElement"/></choice>
        </zeroOrMore>
    </element>
  </define>
  <define name="anyForeignElement">
    <element><anyName><except><nsName/></except></anyName>
      <zeroOrMore><choice><attribute><anyName/></attribute><text/><ref name="anyElement"/></choice>
        </zeroOrMore>
    </element>
  </define>
  <define name="xhtmlDiv">
    <element name="div" ns="http://www.w3.org/1999/xhtml">
      <zeroOrMore><choice><attribute><anyName/></attribute><text/><ref name="anyElement"/></choice>
        </zeroOrMore>
    </element>
  </define>
</grammar>
"""

ATOM_SCHEMA = etree.RelaxNG(etree.fromstring(ATOM_RNG.encode()))

# --- JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/) as JSON Schema --------------

RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
URL = {"type": "string", "pattern": r"^https?://[^\s]+$"}
EXTENSIONS: dict[str, Any] = {"^_": {}}
AUTHOR = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "url": URL, "avatar": URL},
    "patternProperties": EXTENSIONS,
    "additionalProperties": False,
    "anyOf": [{"required": ["name"]}, {"required": ["url"]}, {"required": ["avatar"]}],
}
JSON_FEED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["version", "title", "items"],
    "properties": {
        "version": {"const": "https://jsonfeed.org/version/1.1"},
        "title": {"type": "string"},
        "home_page_url": URL,
        "feed_url": URL,
        "description": {"type": "string"},
        "user_comment": {"type": "string"},
        "next_url": URL,
        "icon": URL,
        "favicon": URL,
        "authors": {"type": "array", "items": AUTHOR},
        "language": {"type": "string"},
        "expired": {"type": "boolean"},
        "hubs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "url"],
                "properties": {"type": {"type": "string"}, "url": URL},
            },
        },
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id"],
                "anyOf": [{"required": ["content_html"]}, {"required": ["content_text"]}],
                "properties": {
                    "id": {"type": "string", "minLength": 1},
                    "url": URL,
                    "external_url": URL,
                    "title": {"type": "string"},
                    "content_html": {"type": "string"},
                    "content_text": {"type": "string"},
                    "summary": {"type": "string"},
                    "image": URL,
                    "banner_image": URL,
                    "date_published": {"type": "string", "pattern": RFC3339},
                    "date_modified": {"type": "string", "pattern": RFC3339},
                    "authors": {"type": "array", "items": AUTHOR},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "language": {"type": "string"},
                    "attachments": {"type": "array"},
                },
                "patternProperties": EXTENSIONS,
                "additionalProperties": False,
            },
        },
    },
    "patternProperties": EXTENSIONS,
    "additionalProperties": False,
}
jsonschema.Draft202012Validator.check_schema(JSON_FEED_SCHEMA)
JSON_VALIDATOR = jsonschema.Draft202012Validator(JSON_FEED_SCHEMA)


# --- reading the three formats back into comparable records ---------------------------


def rss_items_lxml(data: bytes) -> list[dict[str, Any]]:
    channel = xml(data).find("channel")
    assert channel is not None
    return [
        {
            "id": item.findtext("guid"),
            "title": item.findtext("title"),
            "link": item.findtext("link"),
            "published": parsedate_to_datetime(item.findtext("pubDate") or ""),
            "updated": datetime.fromisoformat(
                item.findtext("dcterms:modified", namespaces=NS) or ""
            ),
            "sources": [
                c.text for c in item.findall("category") if c.get("domain") == SOURCE_SCHEME
            ],
        }
        for item in channel.findall("item")
    ]


def atom_items_lxml(data: bytes) -> list[dict[str, Any]]:
    return [
        {
            "id": entry.findtext("atom:id", namespaces=NS),
            "title": entry.findtext("atom:title", namespaces=NS),
            "link": entry.find("atom:link[@rel='alternate']", NS).get("href"),  # type: ignore[union-attr]
            "published": datetime.fromisoformat(
                entry.findtext("atom:published", namespaces=NS) or ""
            ),
            "updated": datetime.fromisoformat(entry.findtext("atom:updated", namespaces=NS) or ""),
            "sources": [
                c.get("label")
                for c in entry.findall("atom:category", NS)
                if c.get("scheme") == SOURCE_SCHEME
            ],
        }
        for entry in xml(data).findall("atom:entry", NS)
    ]


def json_items(data: bytes) -> list[dict[str, Any]]:
    return [
        {
            "id": item["id"],
            "title": item["title"],
            "link": item["url"],
            "published": datetime.fromisoformat(item["date_published"]),
            "updated": datetime.fromisoformat(item["date_modified"]),
            "sources": [source["name"] for source in item["_aggregator"]["sources"]],
        }
        for item in json.loads(data)["items"]
    ]


def feedparser_items(data: bytes) -> list[dict[str, Any]]:
    parsed = feedparser.parse(data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return [
        {
            "id": entry.id,
            "title": entry.title,
            "link": entry.link,
            "published": from_struct(entry.published_parsed),
            "updated": from_struct(entry.updated_parsed) if "updated_parsed" in entry else None,
            "authors": [author.get("name") for author in entry.get("authors", [])],
        }
        for entry in parsed.entries
    ]


def test_all_formats_say_the_same_thing_to_an_independent_parser() -> None:
    expected = expected_items()
    rss = rss_items_lxml(render_rss(META, ARTICLES))
    # RFC 822 carries whole seconds only.
    assert rss == [{**item, "published": whole_seconds(item["published"])} for item in expected]
    assert atom_items_lxml(render_atom(META, ARTICLES)) == expected
    assert json_items(render_json_feed(META, ARTICLES)) == expected


@pytest.mark.parametrize("render", [render_rss, render_atom], ids=["rss", "atom"])
def test_feedparser_reads_back_ids_links_titles_dates(render: Any) -> None:
    got = feedparser_items(render(META, ARTICLES))
    expected = expected_items()
    assert [g["id"] for g in got] == [e["id"] for e in expected]
    assert [g["title"] for g in got] == [e["title"] for e in expected]
    assert [g["link"] for g in got] == [e["link"] for e in expected]
    assert [g["published"] for g in got] == [whole_seconds(e["published"]) for e in expected]
    # feedparser maps dcterms:modified / atom:updated to `updated` (whole seconds).
    assert [g["updated"] for g in got] == [whole_seconds(e["updated"]) for e in expected]
    assert got[0]["authors"] == ["联合早报", "自由亚洲电台"]


def test_feedparser_reads_feed_level_metadata_and_paging() -> None:
    for render in (render_rss, render_atom):
        feed = feedparser.parse(render(META, ARTICLES)).feed
        assert feed.title == "新闻汇总"
        rels = {link.rel: link.href for link in feed.links}
        assert rels["self"] == META.self_url
        assert rels["next"] == META.next_url
        assert rels["first"] == META.first_url
        assert feed.link == META.html_url


def test_atom_validates_against_rfc4287_schema() -> None:
    document = xml(render_atom(META, ARTICLES))
    assert ATOM_SCHEMA.validate(document), ATOM_SCHEMA.error_log


def test_atom_schema_is_strict_enough_to_fail() -> None:
    """Guards the schema itself: an entry without an id must not validate."""
    document = xml(render_atom(META, ARTICLES))
    entry = document.find("atom:entry", NS)
    assert entry is not None
    entry.remove(entry.find("atom:id", NS))  # type: ignore[arg-type]
    assert not ATOM_SCHEMA.validate(document)


def test_atom_rfc4287_rules_and_w3c_validator_main_checks() -> None:
    feed = xml(render_atom(META, ARTICLES))
    assert feed.tag == f"{{{ATOM_NS}}}feed"
    for name in ("id", "title", "updated"):
        assert feed.findtext(f"atom:{name}", namespaces=NS)
    entries = feed.findall("atom:entry", NS)
    assert len(entries) == 3
    for entry in entries:
        for name in ("id", "title", "updated"):
            assert entry.findtext(f"atom:{name}", namespaces=NS), name
        # Schematron rule: an author in every entry (or in the feed).
        assert entry.findtext("atom:author/atom:name", namespaces=NS)
        # Schematron rule: content, or else a rel=alternate link.
        assert entry.find("atom:content", NS) is not None
        assert len(entry.findall("atom:source", NS)) <= 1
    # Links and ids are absolute IRIs.
    for link in feed.iter(f"{{{ATOM_NS}}}link"):
        parts = urlsplit(link.get("href", ""))
        assert parts.scheme in ("http", "https") and parts.netloc, link.get("href")
    for ident in feed.iter(f"{{{ATOM_NS}}}id"):
        assert re.match(r"^[a-z][a-z0-9+.-]*:", ident.text or ""), ident.text
    # The feed says where it lives, and the entry ids are unique.
    assert feed.find("atom:link[@rel='self']", NS) is not None
    ids = [entry.findtext("atom:id", namespaces=NS) for entry in entries]
    assert len(set(ids)) == len(ids)


def test_rss_w3c_validator_main_rules() -> None:
    root = xml(render_rss(META, ARTICLES))
    assert root.tag == "rss" and root.get("version") == "2.0"
    channel = root.find("channel")
    assert channel is not None
    for name in ("title", "link", "description"):
        assert channel.findtext(name), name
    self_link = channel.find("atom:link[@rel='self']", NS)
    assert self_link is not None
    assert self_link.get("href") == META.self_url
    assert self_link.get("type") == "application/rss+xml"
    rfc822 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")
    assert rfc822.match(channel.findtext("lastBuildDate") or "")
    for item in channel.findall("item"):
        assert item.findtext("title") and item.findtext("link")
        guid = item.find("guid")
        assert guid is not None and guid.text
        assert guid.get("isPermaLink") == "false"  # a tag: URI is not a link
        assert rfc822.match(item.findtext("pubDate") or ""), item.findtext("pubDate")
        # <author> must be an e-mail address in RSS; names go in dc:creator.
        assert item.find("author") is None
        assert item.findall("dc:creator", NS)


def test_rss_body_is_cdata_unless_it_cannot_be() -> None:
    data = render_rss(META, ARTICLES)
    assert b"<content:encoded><![CDATA[<p>\xe4\xb8\xad" in data  # MERGED: CDATA, raw UTF-8
    encoded = [item.findtext("content:encoded", namespaces=NS) for item in xml(data).iter("item")]
    # The body containing "]]>" survives, escaped, byte for byte.
    assert encoded[1] == UNDATED.article.body
    assert encoded[0] == MERGED.article.body


def test_html_bodies_round_trip_in_every_format() -> None:
    atom = xml(render_atom(META, ARTICLES))
    atom_bodies = [
        e.findtext("atom:content", namespaces=NS) for e in atom.findall("atom:entry", NS)
    ]
    json_bodies = [i["content_html"] for i in json.loads(render_json_feed(META, ARTICLES))["items"]]
    expected = [stored.article.body for stored in ARTICLES]
    assert atom_bodies == expected
    assert json_bodies == expected
    assert [e.get("type") for e in atom.iter(f"{{{ATOM_NS}}}content")] == ["html"] * 3


@pytest.mark.parametrize("fmt", list(FORMATS.values()), ids=list(FORMATS))
def test_chinese_is_written_as_utf8_not_character_references(fmt: Any) -> None:
    data = fmt.render(META, ARTICLES)
    assert "中俄防长视频通话".encode() in data
    assert "联合早报".encode() in data
    assert b"&#" not in data


def test_json_feed_validates_against_the_spec_schema() -> None:
    document = json.loads(render_json_feed(META, ARTICLES))
    JSON_VALIDATOR.validate(document)
    assert document["next_url"] == META.next_url
    assert document["feed_url"] == META.self_url
    assert document["items"][0]["tags"] == ["中国", "军事"]
    assert document["items"][0]["authors"] == [{"name": "联合早报"}, {"name": "自由亚洲电台"}]


def test_json_schema_is_strict_enough_to_fail() -> None:
    document = json.loads(render_json_feed(META, ARTICLES))
    del document["items"][0]["content_html"]
    assert not JSON_VALIDATOR.is_valid(document)
    document = json.loads(render_json_feed(META, ARTICLES))
    document["items"][0]["date_published"] = "Wed, 24 Nov 2021 01:38:51 GMT"
    assert not JSON_VALIDATOR.is_valid(document)


def test_several_sources_are_all_named_in_every_format() -> None:
    atom = xml(render_atom(META, [MERGED]))
    entry = atom.find("atom:entry", NS)
    assert entry is not None
    terms = [
        (c.get("term"), c.get("label"))
        for c in entry.findall("atom:category", NS)
        if c.get("scheme") == SOURCE_SCHEME
    ]
    assert terms == [("zaobao", "联合早报"), ("rfa", "自由亚洲电台")]
    via = entry.findall("atom:link[@rel='via']", NS)
    assert [link.get("href") for link in via] == ["https://www.rfa.org/mandarin/story-1216540.html"]
    assert entry.findtext("atom:source/atom:title", namespaces=NS) == "联合早报"
    assert entry.findtext("atom:source/atom:id", namespaces=NS) == f"{SOURCE_SCHEME}/zaobao"

    rss_item = xml(render_rss(META, [MERGED])).find("channel/item")
    assert rss_item is not None
    assert [c.text for c in rss_item.findall("category")] == [
        "中国",
        "军事",
        "联合早报",
        "自由亚洲电台",
    ]
    assert [c.text for c in rss_item.findall("dc:creator", NS)] == ["联合早报", "自由亚洲电台"]

    item = json.loads(render_json_feed(META, [MERGED]))["items"][0]
    assert item["_aggregator"]["sources"] == [
        {"id": "zaobao", "name": "联合早报", "url": MERGED.article.link},
        {
            "id": "rfa",
            "name": "自由亚洲电台",
            "url": "https://www.rfa.org/mandarin/story-1216540.html",
        },
    ]


@pytest.mark.parametrize("fmt", list(FORMATS.values()), ids=list(FORMATS))
def test_item_id_survives_an_update_of_the_article(fmt: Any) -> None:
    edited_article = replace(
        MERGED.article,
        title="更正：" + MERGED.article.title,
        link="https://www.zaobao.com.sg/realtime/china/story20211124-1216540",
        body="<p>更新</p>",
    )
    edited = replace(MERGED, article=edited_article, updated=MERGED.updated + timedelta(days=1))
    before = json_items(JSON_FEED.render(META, [MERGED]))[0]["id"]
    data = fmt.render(META, [edited])
    assert item_id(AUTHORITY, 3).encode() in data
    assert before == item_id(AUTHORITY, 3)
    assert item_id(AUTHORITY, 4).encode() not in data


def test_undated_article_uses_fetched_time_everywhere() -> None:
    rss_item = xml(render_rss(META, [UNDATED])).find("channel/item")
    assert rss_item is not None
    assert rss_item.findtext("pubDate") == "Wed, 24 Nov 2021 00:38:51 GMT"
    atom = xml(render_atom(META, [UNDATED]))
    assert atom.findtext("atom:entry/atom:published", namespaces=NS) == "2021-11-24T00:38:51.387Z"
    item = json.loads(render_json_feed(META, [UNDATED]))["items"][0]
    assert item["date_published"] == "2021-11-24T00:38:51.387Z"


def test_last_page_has_no_next_link_and_empty_feed_is_valid() -> None:
    last = replace(META, next_url=None)
    for data in (render_rss(last, []), render_atom(last, [])):
        assert b'rel="next"' not in data
        assert feedparser.parse(data).bozo == 0
    assert ATOM_SCHEMA.validate(xml(render_atom(last, [])))
    empty = json.loads(render_json_feed(last, []))
    JSON_VALIDATOR.validate(empty)
    assert "next_url" not in empty and empty["items"] == []


def test_media_types() -> None:
    assert RSS.media_type == "application/rss+xml; charset=utf-8"
    assert ATOM.media_type == "application/atom+xml; charset=utf-8"
    assert JSON_FEED.media_type == "application/feed+json; charset=utf-8"


# --- robustness -----------------------------------------------------------------------


@given(st.text(max_size=40), st.text(max_size=200))
def test_any_title_and_body_render_in_every_format(title: str, body: str) -> None:
    article = replace(MERGED.article, title=title, body=body)
    one = [replace(MERGED, article=article)]
    atom = xml(render_atom(META, one))
    rss = xml(render_rss(META, one))
    document = json.loads(render_json_feed(META, one))
    # Characters XML cannot carry are dropped from all three formats alike.
    atom_title = atom.findtext("atom:entry/atom:title", namespaces=NS) or ""
    assert (rss.findtext("channel/item/title") or "") == atom_title
    assert document["items"][0]["title"] == atom_title
    assert (atom.findtext("atom:entry/atom:content", namespaces=NS) or "") == document["items"][0][
        "content_html"
    ]


# --- cursors --------------------------------------------------------------------------

moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda m: m.replace(microsecond=m.microsecond // 1000 * 1000))


@given(moments, st.integers(min_value=0, max_value=2**63 - 1))
def test_cursor_round_trips_and_is_url_safe(moment: datetime, ident: int) -> None:
    cursor = Cursor(moment, ident)
    token = encode_cursor(cursor)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert decode_cursor(token) == cursor


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "not a cursor",
        "%%%%%%",
        "MTox",  # "1:1": no id part
        "MjoxOjE",  # "2:1:1": unknown version
        "MTotOjE",  # "1:-:1"
        "MToxOi0x",  # negative id
        "MTo5OTk5OTk5OTk5OTk5OTk5OjE",  # far beyond datetime range
        "MToxOjE5OTk5OTk5OTk5OTk5OTk5OTk5",  # id beyond 2**63
        "_____-----",
        "x" * 65,
        "中文中文",
        "MToxOjE=",  # padding is not part of our alphabet
    ],
)
def test_decode_cursor_rejects_garbage_with_value_error(token: str) -> None:
    with pytest.raises(ValueError):
        decode_cursor(token)


@given(st.text(max_size=80))
def test_decode_cursor_only_ever_raises_value_error(token: str) -> None:
    with contextlib.suppress(ValueError):
        decode_cursor(token)


def test_cursor_orders_like_the_store() -> None:
    assert decode_cursor(encode_cursor(MERGED.cursor)) == Cursor(T0, 3)
    # An undated article pages by its fetched time.
    assert decode_cursor(encode_cursor(UNDATED.cursor)).sort_time == T0 - timedelta(hours=1)
