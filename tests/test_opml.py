"""OPML export/import: lossless round trip, interop with other readers, hostile input."""

from __future__ import annotations

from datetime import datetime, timedelta

import feedparser
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from aggregator.errors import ConfigError
from aggregator.opml import AGGREGATOR_NS, export_opml, parse_opml
from aggregator.search import Topic, parse_query
from aggregator.types import UTC, Source

SOURCES = [
    Source("zaobao", "联合早报", "https://feedx.net/rss/zaobao.xml", adapter="zaobao"),
    Source(
        "rfa",
        "自由亚洲电台 & RFA",
        "https://www.rfa.org/mandarin/RSS?a=1&b=2",
        adapter="rfa",
        interval=timedelta(minutes=15),
        enabled=False,
        retention=timedelta(days=90),
    ),
    Source(
        "local",
        "Local test feed",
        "http://127.0.0.1:8000/feed.xml",
        interval=timedelta(hours=2),
        allow_private=True,
    ),
]


def test_round_trip_is_lossless() -> None:
    assert parse_opml(export_opml(SOURCES)) == SOURCES


def test_topics_are_exported_as_their_feeds_and_not_imported_as_sources() -> None:
    topics = [
        Topic("defence", "中俄防长", parse_query("防長 OR 国防部长")),
        Topic("zaobao-hk", "Zaobao & HK", parse_query('香港 -"test"'), sources=("zaobao",)),
    ]
    data = export_opml(SOURCES, topics=topics, base_url="https://news.example.org/")
    root = etree.fromstring(data)
    folder = root.findall("body/outline")[-1]
    assert folder.get("text") == "Topics" and folder.get("xmlUrl") is None
    saved = folder.findall("outline")
    assert [o.get("xmlUrl") for o in saved] == [
        "https://news.example.org/topics/defence/feed.xml",
        "https://news.example.org/topics/zaobao-hk/feed.xml",
    ]
    assert saved[1].get("htmlUrl") == "https://news.example.org/?topic=zaobao-hk"
    assert [o.get(f"{{{AGGREGATOR_NS}}}query") for o in saved] == [
        "防长 OR 国防部长",
        "香港 -test",
    ]
    assert saved[1].get(f"{{{AGGREGATOR_NS}}}sources") == "zaobao"
    assert saved[1].get("text") == "Zaobao & HK" and b"Zaobao &amp; HK" in data
    assert parse_opml(data) == SOURCES  # our own topic feeds are never sources to poll


def test_topic_links_carry_the_feed_token_when_given() -> None:
    topics = [Topic("zaobao-hk", "Zaobao & HK", parse_query("香港"), sources=("zaobao",))]
    token = "s3cret/+&=token-xyz"  # what a URL query must escape
    data = export_opml(SOURCES, topics=topics, base_url="https://news.example.org", token=token)
    (saved,) = etree.fromstring(data).findall("body/outline")[-1].findall("outline")
    signed = "token=s3cret%2F%2B%26%3Dtoken-xyz"
    assert saved.get("xmlUrl") == f"https://news.example.org/topics/zaobao-hk/feed.xml?{signed}"
    assert saved.get("htmlUrl") == f"https://news.example.org/?topic=zaobao-hk&{signed}"
    for outline in etree.fromstring(data).findall("body/outline")[:-1]:
        assert "token" not in (outline.get("xmlUrl") or "")  # the sources' own feeds: never


def test_export_is_plain_opml_2_for_other_readers() -> None:
    created = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    data = export_opml(SOURCES, title="我的订阅", created=created)
    root = etree.fromstring(data)
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title") == "我的订阅"
    assert root.findtext("head/dateCreated") == "Fri, 01 Mar 2024 08:00:00 GMT"
    outlines = root.findall("body/outline")
    assert [o.get("xmlUrl") for o in outlines] == [s.url for s in SOURCES]
    assert [o.get("text") for o in outlines] == [s.name for s in SOURCES]
    assert {o.get("type") for o in outlines} == {"rss"}
    assert outlines[1].get(f"{{{AGGREGATOR_NS}}}interval") == "900"
    assert "联合早报".encode() in data  # UTF-8, not character references
    # Same input, same bytes: no clock read inside.
    assert export_opml(SOURCES, created=created) == export_opml(SOURCES, created=created)


def test_feedparser_does_not_choke_on_it() -> None:
    # feedparser is not an OPML reader, but a well-formed document must not be "bozo".
    assert not feedparser.parse(export_opml(SOURCES)).bozo


FOREIGN = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.0">
  <head><title>Exported from another reader</title></head>
  <body>
    <outline text="News" title="News">
      <outline type="rss" text="Zaobao" title="\xe8\x81\x94\xe5\x90\x88\xe6\x97\xa9\xe6\x8a\xa5"
               xmlUrl="https://feedx.net/rss/zaobao.xml" htmlUrl="https://www.zaobao.com"/>
      <outline type="rss" text="VOA News" xmlUrl="https://www.voanews.com/api/zmjuqteb_kqo"/>
    </outline>
    <outline text="World">
      <outline type="rss" text="VOA News" xmlUrl="https://www.voanews.com/api/zmjuqteb_kqo"/>
      <outline type="rss" title="VOA News" xmlUrl="https://www.voanews.com/api/other"/>
    </outline>
    <outline text="just a note"/>
  </body>
</opml>
"""


def test_import_from_another_reader_flattens_folders_and_makes_ids() -> None:
    sources = parse_opml(FOREIGN)
    assert [(s.id, s.name, s.url) for s in sources] == [
        # a Chinese title has no ASCII letters: the id comes from the feed's host
        ("feedx-net", "联合早报", "https://feedx.net/rss/zaobao.xml"),
        ("voa-news", "VOA News", "https://www.voanews.com/api/zmjuqteb_kqo"),
        ("voa-news-2", "VOA News", "https://www.voanews.com/api/other"),
    ]
    assert all(s.adapter == "generic" and s.enabled for s in sources)
    assert all(s.interval == timedelta(minutes=30) for s in sources)


def test_generated_ids_never_take_an_explicit_one() -> None:
    data = f"""<opml version="2.0" xmlns:a="{AGGREGATOR_NS}"><body>
      <outline text="VOA" xmlUrl="https://a.example/feed"/>
      <outline text="Other" a:id="voa" xmlUrl="https://b.example/feed"/>
    </body></opml>""".encode()
    assert [s.id for s in parse_opml(data)] == ["voa-2", "voa"]


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE opml [
  <!ENTITY a "aaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
]>
<opml version="2.0"><body><outline text="&c;" xmlUrl="https://x.example/feed"/></body></opml>
"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE opml [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<opml version="2.0"><body><outline text="&secret;" xmlUrl="https://x.example/"/></body></opml>
"""

BARE_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE opml SYSTEM "http://example.com/opml.dtd">
<opml version="2.0"><body/></opml>
"""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (BILLION_LAUGHS, "refused"),
        (XXE, "refused"),
        (BARE_DTD, "refused"),
        (b"<opml><body><outline", "not well-formed"),
        (b"", "not well-formed"),
        (b"<rss version='2.0'><channel/></rss>", "not an OPML"),
        (b"<opml version='2.0'><head/></opml>", "not an OPML"),
        (b"<opml><body><outline text='x' xmlUrl='javascript:alert(1)'/></body></opml>", "http"),
        (b"<opml><body><outline text='x' xmlUrl='file:///etc/passwd'/></body></opml>", "http"),
        (b"<opml><body><outline text='x' xmlUrl='https://'/></body></opml>", "http"),
    ],
)
def test_hostile_or_broken_documents_raise_config_error(data: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_opml(data, file="subscriptions.opml")
    assert caught.value.file == "subscriptions.opml"


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ('a:id="Bad Id!"', "invalid source id"),
        ('a:interval="soon"', "interval"),
        ('a:interval="0"', "interval"),
        ('a:interval="-5"', "interval"),
        ('a:retention="１０"', "retention"),  # fullwidth digits: int() would take them
    ],
)
def test_bad_aggregator_attributes_name_the_outline(attrs: str, message: str) -> None:
    data = f"""<opml version="2.0" xmlns:a="{AGGREGATOR_NS}"><body>
      <outline text="Broken feed" xmlUrl="https://x.example/feed" {attrs}/>
    </body></opml>""".encode()
    with pytest.raises(ConfigError, match=message) as caught:
        parse_opml(data)
    assert caught.value.key == "Broken feed"


def test_duplicate_explicit_ids_are_refused() -> None:
    doubled = export_opml([SOURCES[0], Source("zaobao", "Copy", "https://other.example/feed")])
    with pytest.raises(ConfigError, match="duplicate source id"):
        parse_opml(doubled)


def test_oversized_document_is_refused_before_parsing() -> None:
    with pytest.raises(ConfigError, match="larger than"):
        parse_opml(b" " * (5 * 1024 * 1024 + 1))


names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Cn")), min_size=1, max_size=30
).filter(lambda s: s.strip() == s)


@given(
    st.lists(
        st.tuples(names, st.integers(min_value=1, max_value=10**6), st.booleans()),
        max_size=5,
    )
)
def test_round_trip_property(rows: list[tuple[str, int, bool]]) -> None:
    sources = [
        Source(
            f"s{n}",
            name,
            f"https://feeds.example/{n}?q={n}&x=1",
            interval=timedelta(seconds=seconds),
            enabled=enabled,
        )
        for n, (name, seconds, enabled) in enumerate(rows)
    ]
    assert parse_opml(export_opml(sources)) == sources
