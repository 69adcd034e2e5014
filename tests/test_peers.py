"""feedparser's test documents: where feedparser reads one cleanly, we read it the same.

Every document of ``fixtures/peers/`` (feedparser's ``encoding/``, ``illformed/`` and
``wellformed/``) is given, with the headers its ``Header:`` lines name, to
``feedparser.parse`` and to us.  Where feedparser reports no error (``bozo`` false):

* parse + normalisation never fails on it, and keeps every entry that has a usable
  http(s) link and a title or text, with the same link, title and plain text;
* read entry by entry (links or not), the feed title and each entry's plain title
  and text are feedparser's, which is what the charset and prolog cases need.

Most documents are tested below the network (``parse_and_adapt``, as a parse worker
runs it), so the ~1,700 of them take seconds; a handful go through a full poll from
the loopback server.  Documented exceptions, each a deliberate difference:

* ``NOT_A_FEED``: a document of no known format with neither entries nor a title
  (feedparser's bare CDF ``<CHANNEL>`` cases) fails the poll, as an HTML page served in
  place of a feed must: there is nothing in it to keep;
* ``MULTI_CHARACTER_ENTITY``: a DTD entity that expands to more than one character is
  never expanded (the XML bomb defence, ``aggregator.parse.prolog``);
* ``TEXT_PLAIN``: content that says it is ``text/plain`` (Atom 0.3 ``mode="base64"``
  included) is shown literally, tags and all, where feedparser's text drops them;
* ``TITLE_ENTITIES``: a title whose text still holds an HTML entity after XML
  parsing has it decoded (feeds double-escape titles: ``&amp;#22338;`` must become
  坂), so ``&lt;blink&gt;`` in a plain-text title becomes ``<blink>`` where feedparser
  keeps the entity;
* ``SANITIZER``: feedparser's own sanitizer (on by default) keeps a script's code as
  text, cuts unknown constructs differently, or drops markup-looking text; we
  sanitize later, per source, and never show script code.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import peers
import pytest
from feedserver import FeedServer, static

from aggregator.fetch import Fetcher, FetchLimits
from aggregator.normalize import parse_and_adapt
from aggregator.parse import decode_feed, parse_feed
from aggregator.pipeline import Poller
from aggregator.store import Store
from aggregator.types import Source

URL = "http://127.0.0.1:8000/feed.xml"
NOT_A_FEED = {
    f"wellformed/cdf/{name}.xml"
    for name in (
        "channel_abstract_map_description",
        "channel_abstract_map_tagline",
        "channel_href_map_link",
        "channel_href_map_links",
        "channel_lastmod",
        "channel_lastmod_parsed",
    )
}
MULTI_CHARACTER_ENTITY = {"wellformed/rss/entity_in_doctype.xml"}
TEXT_PLAIN = {
    f"wellformed/atom/{name}.xml"
    for name in (
        "entry_content_mode_base64",
        "entry_summary_base64",
        "entry_summary_base64_2",
        "entry_summary_content_mode_base64",
        "feed_title_base64",
        "feed_title_base64_2",
        "feed_title_content_mode_base64",
    )
} | {"wellformed/atom10/entry_content_text_plain_brackets.xml"}
TITLE_ENTITIES = {"wellformed/atom/entry_title_base64_2.xml"}
SANITIZER = {
    "wellformed/rss/item_description_not_a_doctype.xml",
    "wellformed/sanitize/xml_declaration_unexpected_character.xml",
    "wellformed/sanitize/xml_malicious_comment.xml",
    "wellformed/sanitize/entry_content_iframe.xml",
    "wellformed/sanitize/item_content_encoded_script_nested_cdata.xml",
} | {
    f"wellformed/sanitize/{name}_crazy.xml"
    for name in (
        "entry_content",
        "entry_summary",
        "entry_title",
        "feed_title",
        "item_content_encoded",
        "item_description",
        "item_fullitem",
    )
}
CHINESE = "北京打压香港民主派人士，引发国际社会强烈批评。"
TRADITIONAL = "北京打壓香港民主派人士，引發國際社會強烈批評。"
KOREAN = "북한이 미사일을 발사했다고 합동참모본부가 밝혔다."
EXCEPTIONS = NOT_A_FEED | MULTI_CHARACTER_ENTITY | TEXT_PLAIN | TITLE_ENTITIES | SANITIZER


def _clean_documents() -> Iterator[tuple[str, bytes, dict[str, str]]]:
    for path in peers.documents():
        content = path.read_bytes()
        headers = peers.served_headers(content)
        if not peers.feedparser_reading(content, headers).bozo:
            yield path.relative_to(peers.PEERS).as_posix(), content, headers


CLEAN = list(_clean_documents())


def test_the_peer_documents_are_all_there() -> None:
    # A harness that found no document, or that feedparser read none of, checks nothing.
    assert len(list(peers.documents())) == 1850
    assert len(CLEAN) > 1700
    assert (peers.PEERS / "LICENSE").is_file()


def test_a_document_feedparser_reads_cleanly_keeps_its_stories() -> None:
    failures = []
    compared = 0
    for name, content, headers in CLEAN:
        if name in NOT_A_FEED | MULTI_CHARACTER_ENTITY:
            continue
        expected = peers.expected_stories(peers.feedparser_reading(content, headers), URL)
        try:
            normalized = parse_and_adapt(
                content,
                url=URL,
                headers=headers,
                source=peers.peer_source(URL),
                fetched_at=peers.FETCHED,
                max_entries=1000,
            )
        except Exception as exc:  # any failure at all is what this test looks for
            failures.append(f"{name}: {exc!r}")
            continue
        ours = {story.link: story for story in peers.our_stories([a for _, a in normalized.pairs])}
        for story in expected:
            compared += 1
            mine = ours.get(story.link)
            if mine is None or (story.title and mine.title != story.title):
                failures.append(f"{name}: {story} became {mine}")
            elif mine.text != story.text:
                failures.append(f"{name}: text {story.text!r} became {mine.text!r}")
    assert not failures, "\n".join(failures)
    assert compared >= 20


def test_a_document_feedparser_reads_cleanly_reads_the_same_entry_by_entry() -> None:
    failures = []
    for name, content, headers in CLEAN:
        if name in EXCEPTIONS:
            continue
        theirs = peers.feedparser_as_read(peers.feedparser_reading(content, headers))
        try:
            ours = peers.ours_as_read(parse_feed(content, url=URL, headers=headers))
        except Exception as exc:
            failures.append(f"{name}: {exc!r}")
            continue
        if ours != theirs:
            failures.append(f"{name}: {theirs} became {ours}")
    assert not failures, "\n".join(failures)


def test_each_documented_exception_still_differs() -> None:
    # An exception that no longer differs is stale: it would hide a future regression.
    for name, content, headers in CLEAN:
        if name in TEXT_PLAIN | TITLE_ENTITIES | SANITIZER:
            theirs = peers.feedparser_as_read(peers.feedparser_reading(content, headers))
            ours = peers.ours_as_read(parse_feed(content, url=URL, headers=headers))
            assert ours != theirs, name


@pytest.mark.parametrize(
    ("name", "title", "text"),
    [
        # Declared windows-1252, with symbols a plausibility score took for mojibake.
        ("encoding/http_text_xml_charset_2.xml", "", "This is a £“test.”"),
        ("encoding/utf-16le.xml", "", ""),  # UTF-16 without a byte-order mark
        ("encoding/utf-32le-bom.xml", "", ""),
        ("encoding/utf-32be.xml", "", ""),
    ],
)
def test_charset_cases_of_the_issue(name: str, title: str, text: str) -> None:
    content = (peers.PEERS / name).read_bytes()
    headers = peers.served_headers(content)
    theirs = peers.feedparser_as_read(peers.feedparser_reading(content, headers))
    ours = peers.ours_as_read(parse_feed(content, url=URL, headers=headers))
    assert ours == theirs
    if text:
        assert ours.entries[0][1] == text


@pytest.mark.parametrize(
    "prolog",
    [
        '<!-- generated by <a href="https://gen.example/">gen</a> -->',
        '<?generator <a href="x">?><!-- <rss> -->',
        '<!DOCTYPE rss [<!-- <b>note</b> --><!ENTITY mdash "&#8212;">'
        '<!ATTLIST rss x CDATA "<i>">]>',
    ],
)
def test_markup_inside_prolog_tokens_is_not_taken_for_the_root(prolog: str) -> None:
    content = (
        f'<?xml version="1.0" encoding="utf-8"?>\n{prolog}\n<rss version="2.0"><channel>'
        "<title>t</title><item><title>a &amp; b</title><link>https://e.org/1</link></item>"
        "</channel></rss>"
    ).encode()
    feed = parse_feed(content, url=URL)
    assert not feed.problems  # expat read it whole: no "malformed" fallback, no dropped entity
    assert [(e.title, e.link) for e in feed.entries] == [("a &amp; b", "https://e.org/1")]


@pytest.mark.parametrize(
    ("text", "declared", "sent", "expected", "repaired"),
    [
        ("München 25 °C, £5", "iso-8859-1", "iso-8859-1", "iso8859-1", False),
        (CHINESE * 3, "iso-8859-1", "gb18030", "gb18030", True),
        (KOREAN * 3, None, "euc-kr", "cp949", True),
        (TRADITIONAL * 3, "utf-8", "big5", "big5", True),
    ],
)
def test_declared_single_byte_charsets_yield_only_to_confident_cjk(
    text: str, declared: str | None, sent: str, expected: str, repaired: bool
) -> None:
    header = f' encoding="{declared}"' if declared else ""
    content = f'<?xml version="1.0"{header}?><rss><title>{text}</title></rss>'.encode(sent)
    decoded, encoding, problems = decode_feed(content)
    assert (text in decoded, encoding) == (True, expected)
    # Any repair is said: a declaration overridden, or a charset guessed.
    assert bool(problems) is repaired


# -- a handful through the full poll, from the loopback server ------------------------------

POLLED = (
    "wellformed/amp/amp13.xml",
    "encoding/http_text_xml_charset_2.xml",
    "encoding/utf-16le.xml",
    "wellformed/rss/item_guid.xml",
    "wellformed/atom10/entry_link_href.xml",
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'peers.db'}") as opened:
        yield opened


def test_clean_documents_never_fail_a_poll(store: Store) -> None:
    with FeedServer() as server:
        sources = []
        for index, name in enumerate(POLLED):
            content = (peers.PEERS / name).read_bytes()
            headers = peers.served_headers(content)
            content_type = headers.pop("Content-type", "application/xml")
            server.route(f"/{index}", static(content, content_type=content_type, headers=headers))
            sources.append(
                Source(
                    id=f"peer{index}",
                    name=name,
                    url=server.url(f"/{index}"),
                    interval=timedelta(minutes=30),
                    allow_private=True,
                )
            )

        async def poll_all() -> list[str]:
            async with Fetcher(FetchLimits(total_timeout=5, read_timeout=3)) as fetcher:
                poller = Poller(store, fetcher, jitter=0, max_entries=100, rng=random.Random(0))
                outcomes = await asyncio.gather(*(poller.poll(source) for source in sources))
                return [outcome.status for outcome in outcomes]

        statuses = asyncio.run(poll_all())
    assert statuses == ["ok"] * len(POLLED)
