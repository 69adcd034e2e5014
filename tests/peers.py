"""feedparser's own test documents, read by feedparser and by us, and compared.

The documents (``fixtures/peers/``, from feedparser's repository, with its licence)
each begin with a comment whose ``Header:`` lines name the HTTP headers they are
served with.  Wherever feedparser reads a document cleanly (``bozo`` false), we must
keep the same entries (those with a usable http(s) link: an entry without one is
skipped by design) with the same title, link and plain text, and never fail on it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser

from aggregator.adapters.generic import normalize_title
from aggregator.clean import text_content
from aggregator.types import Article, RawFeed, Source
from aggregator.urls import canonical_url, is_http_url

PEERS = Path(__file__).parent / "fixtures" / "peers"
FETCHED = datetime(2026, 1, 1, tzinfo=UTC)
_HEADER = re.compile(r"^Header:\s*([A-Za-z-]+):[ \t]*(.*?)\s*$", re.M)
# The header comment is in the document's own encoding: UTF-16 and UTF-32 included.
_COMMENT_CODECS = ("utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")


@dataclass(frozen=True)
class Expected:
    """What a clean feedparser reading says a story is, in our terms."""

    link: str
    title: str
    text: str


def documents() -> Iterator[Path]:
    """Every peer document, in a stable order."""
    yield from sorted(PEERS.rglob("*.xml"))


def served_headers(content: bytes) -> dict[str, str]:
    """The ``Header:`` lines of the leading comment, as a header mapping."""
    for codec in _COMMENT_CODECS:
        head = content[:4096].decode(codec, "ignore")
        if "Description:" in head or "Expect:" in head:
            return dict(_HEADER.findall(head))
    return {}


def feedparser_reading(content: bytes, headers: Mapping[str, str]) -> Any:
    """feedparser's result on the bytes and headers we are given (a stream: never a path)."""
    return feedparser.parse(io.BytesIO(content), response_headers=dict(headers))


def _entry_link(entry: Mapping[str, Any], base: str) -> str | None:
    """The link our generic adapter would take: the link, else a URL guid; http(s) only."""
    for raw in (entry.get("link"), entry.get("id") if is_http_url(entry.get("id")) else None):
        if raw:
            link = canonical_url(raw, base)
            if is_http_url(link):
                return link
    return None


def _plain(value: str | None) -> str:
    return text_content(value) if value else ""


def expected_stories(reading: Any, base: str) -> list[Expected]:
    """The entries of a feedparser reading that we must keep, in our terms."""
    stories = []
    for entry in reading.entries:
        link = _entry_link(entry, base)
        if link is None:
            continue
        title_detail = entry.get("title_detail") or {}
        title = entry.get("title") or ""
        if title and title_detail.get("type") != "text/plain":
            title = normalize_title(title)
        else:
            title = " ".join(title.split())
        bodies = [item.get("value") for item in entry.get("content") or ()]
        body = max(bodies, key=lambda value: len(value or ""), default=None)
        text = _plain(body or entry.get("summary"))
        if title or text:  # one with neither is skipped by design: nothing to show
            stories.append(Expected(link, title, text))
    return stories


def our_stories(articles: list[Article]) -> list[Expected]:
    return [Expected(a.link, a.title, _plain(a.body)) for a in articles]


def peer_source(url: str) -> Source:
    return Source(id="peer", name="peer", url=url, allow_private=True)


@dataclass(frozen=True)
class Reading:
    """A document as read, entry by entry, links or not: for the charset and prolog cases."""

    feed_title: str
    entries: tuple[tuple[str, str], ...]  # (plain title, plain text)


def _plain_title(title: str | None, markup: bool) -> str:
    if not title:
        return ""
    return normalize_title(title) if markup else " ".join(title.split())


def feedparser_as_read(reading: Any) -> Reading:
    entries = []
    for entry in reading.entries:
        markup = (entry.get("title_detail") or {}).get("type") != "text/plain"
        bodies = [item.get("value") for item in entry.get("content") or ()]
        body = max(bodies, key=lambda value: len(value or ""), default=None)
        entries.append(
            (_plain_title(entry.get("title"), markup), _plain(body or entry.get("summary")))
        )
    feed = reading.get("feed") or {}
    markup = (feed.get("title_detail") or {}).get("type") != "text/plain"
    return Reading(_plain_title(feed.get("title"), markup), tuple(entries))


def ours_as_read(feed: RawFeed) -> Reading:
    entries = tuple(
        (_plain_title(entry.title, True), _plain(entry.content or entry.summary))
        for entry in feed.entries
    )
    return Reading(_plain_title(feed.title, True), entries)
