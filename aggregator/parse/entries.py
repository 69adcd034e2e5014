"""feedparser-shaped entry dicts -> :class:`RawEntry`, shared by every XML reader.

Both the feedparser path and the RSS 2.0 fast path produce the same dict shape and
hand it to :func:`raw_entry`, so the two cannot drift apart in how a field is read.
Also the value hygiene every reader needs (no lone surrogates, stripped text,
links resolved against the feed URL).

Imports only :mod:`aggregator.types`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from aggregator.types import RawEntry

_SURROGATES = re.compile("[\ud800-\udfff]")


def to_str(value: object) -> str:
    """``str(value)`` without lone surrogates (JSON ``"\\ud800"``, XML ``&#xD800;``).

    They cannot be encoded as UTF-8, so they would crash the HTML cleaner, the
    store and every export; U+FFFD says "a character was here" like a bad byte does.
    """
    text = str(value)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")  # fails exactly when there is a surrogate; far faster than a scan
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text)
    return text


def stripped(value: object) -> str | None:
    if value is None:
        return None
    text = to_str(value).strip()
    return text or None


def resolve(link: str | None, base: str) -> str | None:
    if not link:
        return None
    try:
        return urljoin(base, link) if base else link
    except ValueError:
        return link


def _fullest_body(entry: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(content, summary)``: content:encoded/content beats description/summary."""
    summary_detail = entry.get("summary_detail") or {}
    summary = _as_html(entry.get("summary"), summary_detail.get("type"))
    bodies: list[str] = []
    for item in entry.get("content") or ():
        body = _as_html(item.get("value"), item.get("type"))
        if body:
            bodies.append(body)
    if bodies:
        content = max(bodies, key=len)
        return content, summary if summary != content else None
    return summary, None


def _as_html(value: object, mime: object) -> str | None:
    text = stripped(value)
    if text is None:
        return None
    if mime == "text/plain":
        return html.escape(text, quote=False)
    return text


def _enclosures(entry: Mapping[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    for link in entry.get("links") or ():
        if link.get("rel") == "enclosure" and link.get("href"):
            found.append(to_str(link["href"]).strip())
    rdf = entry.get("enc_enclosure")
    if isinstance(rdf, Mapping) and rdf.get("rdf:resource"):
        found.append(to_str(rdf["rdf:resource"]).strip())
    return tuple(dict.fromkeys(found))


def tags(terms: Iterable[object]) -> tuple[str, ...]:
    cleaned = (to_str(term).strip().strip(";；").strip() for term in terms if term)
    return tuple(dict.fromkeys(term for term in cleaned if term))


def _plain(entry: Mapping[str, Any], key: str) -> object:
    """A lookup that bypasses FeedParserDict's key aliases (and their warnings)."""
    return dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)


def title_markup(title: str | None, detail: Mapping[str, Any] | None) -> str | None:
    """The title as markup: a plain-text title is escaped so ``a <b> c`` keeps its ``<b>``.

    ``RawEntry.title`` is always HTML; feedparser tells plain text (RSS, Atom
    ``type="text"``) from markup (Atom ``type="html"``) and unescapes both, so the
    difference must be carried over here or text that looks like a tag is lost.
    """
    if title is not None and (detail or {}).get("type") == "text/plain":
        return html.escape(title, quote=False)
    return title


def raw_entry(entry: Mapping[str, Any], base: str) -> RawEntry:
    content, summary = _fullest_body(entry)
    return RawEntry(
        guid=stripped(entry.get("id")),
        link=resolve(stripped(entry.get("link")), base),
        title=title_markup(stripped(entry.get("title")), entry.get("title_detail")),
        content=content,
        summary=summary,
        published=stripped(_plain(entry, "published")),
        # plain dict lookup: feedparser's own aliases updated->published (issue 310)
        updated=stripped(_plain(entry, "updated")),
        author=stripped(entry.get("author")),
        tags=tags(tag.get("term") for tag in entry.get("tags") or ()),
        enclosures=_enclosures(entry),
    )


@dataclass(frozen=True)
class Reading:
    """What a reader made of an XML document: everything :func:`raw_feed` needs."""

    version: str  # feedparser's name for the format; "" when no feed was recognised
    error: Exception | None  # feedparser's bozo exception, if any
    title: str | None
    link: str | None
    entries: tuple[RawEntry, ...]
