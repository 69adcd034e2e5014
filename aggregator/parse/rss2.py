"""The RSS 2.0 half of the fast path (:mod:`.fastpath`): plain ``rss/channel/item``.

Whitelisted: an RSS 2.0 ``rss/channel/item`` tree whose every element is one whose
feedparser handler was read and reproduced (title, link, guid, description,
content:encoded, pubDate, dc:date, author, dc:creator, category, enclosure), or one
feedparser stores where :class:`Reading` never looks.  No attribute beyond the few
listed (so no ``xml:base``, no ``type``); elements whose repeats feedparser treats in
an order-dependent way may occur once.  Title, description and content may be
entity-escaped or CDATA: expat and feedparser's strict parser both see characters.

May import :mod:`.fastpath` only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from feedparser.mixin import _FeedParserMixin

from aggregator.parse.fastpath import (
    ATOM_NS,
    ExpatReader,
    Grammar,
    Unhandled,
    parsed_date,
    stored,
    uri,
)

_CONTENT_NS = "http://purl.org/rss/1.0/modules/content/"
_DC_NS = "http://purl.org/dc/elements/1.1/"
_SY_NS = "http://purl.org/rss/1.0/modules/syndication/"
_WFW_NS = "http://wellformedweb.org/commentAPI/"
_SLASH_NS = "http://purl.org/rss/1.0/modules/slash/"

# The whitelist: (namespace, lower-cased local name) -> what the element is, per parent.
# feedparser lower-cases local names itself, so <pubDate> and <PUBDATE> are the same
# element to it.  "ignored" elements are ones feedparser stores where RawFeed never
# looks (channel description, image, ttl, comments...); they may hold text only.
_GRAMMAR: Grammar = {
    "document": {("", "rss"): "rss"},
    "rss": {("", "channel"): "channel"},
    "channel": {
        ("", "title"): "feed-title",
        ("", "link"): "feed-link",
        ("", "item"): "item",
        ("", "image"): "image",
        ("", "pubdate"): "date",
        ("", "lastbuilddate"): "date",
        (ATOM_NS, "link"): "atom-link",
        **{
            ("", name): "ignored"
            for name in (
                "description",
                "language",
                "copyright",
                "managingeditor",
                "webmaster",
                "category",
                "generator",
                "docs",
                "ttl",
            )
        },
        **{(_SY_NS, name): "ignored" for name in ("updateperiod", "updatefrequency", "updatebase")},
    },
    "image": {
        ("", name): "ignored" for name in ("title", "url", "link", "width", "height", "description")
    },
    "item": {
        ("", "title"): "title",
        ("", "link"): "link",
        ("", "guid"): "guid",
        ("", "description"): "description",
        (_CONTENT_NS, "encoded"): "content",
        ("", "pubdate"): "published",
        (_DC_NS, "date"): "updated",
        ("", "author"): "author",
        (_DC_NS, "creator"): "author",
        ("", "category"): "category",
        ("", "enclosure"): "enclosure",
        ("", "comments"): "ignored",
        (_WFW_NS, "commentrss"): "ignored",
        (_WFW_NS, "comment"): "ignored",
        (_SLASH_NS, "comments"): "ignored",
    },
}
_CONTAINERS = frozenset({"rss", "channel", "image", "item"})
_EMPTY = frozenset({"enclosure", "atom-link"})  # attributes only; text in them is dropped
# At most one per parent: feedparser's handling of repeats depends on their order.
_ONCE = frozenset(
    {"channel", "feed-title", "feed-link", "title", "link", "guid", "description", "content"}
    | {"published", "updated", "author"}
)
_ATTRIBUTES = {
    "rss": frozenset({"version"}),
    "guid": frozenset({"ispermalink"}),
    "category": frozenset({"domain"}),
    "enclosure": frozenset({"url", "length", "type"}),
    "atom-link": frozenset({"href", "rel", "type", "title", "hreflang", "length"}),
}
_BARE_REFERENCE = re.compile("&([A-Za-z0-9_]+);")


class Rss2Reader(ExpatReader):
    """Builds feedparser-shaped entries for whitelisted RSS 2.0."""

    VERSION = "rss20"
    GRAMMAR = _GRAMMAR
    CONTAINERS = _CONTAINERS
    EMPTY = _EMPTY
    ONCE = _ONCE
    ATTRIBUTES = _ATTRIBUTES

    def __init__(self) -> None:
        super().__init__()
        self._item: dict[str, Any] = {}
        self._guid_is_link = False

    def start_container(self, kind: str, attrs: Mapping[str, str]) -> None:
        if kind == "rss" and attrs.get("version") != "2.0":
            raise Unhandled("not RSS 2.0")
        if kind == "item":
            self._item = {}
            self.items.append(self._item)

    def start_empty(self, kind: str, attrs: Mapping[str, str]) -> None:
        if kind == "enclosure":
            if attrs.get("url"):  # feedparser's _enforce_href: the url attribute is the href
                self._item.setdefault("links", []).append(
                    {"rel": "enclosure", "href": attrs["url"]}
                )
        elif "href" not in attrs or attrs.get("rel", "alternate").lower() == "alternate":
            # Without href its text is the channel link; rel=alternate sets the link too.
            raise Unhandled("atom:link that would set the channel link")

    def start_text(self, kind: str, attrs: Mapping[str, str]) -> None:
        if kind == "guid":
            self._guid_is_link = attrs.get("ispermalink", "true") == "true"

    def end_text(self, kind: str, text: str) -> None:
        item = self._item
        if kind == "title":
            markup = _FeedParserMixin.looks_like_html(text)
            item["title"] = stored(text)
            item["title_detail"] = {"type": "text/html" if markup else "text/plain"}
        elif kind == "link":
            link = stored(uri(text)).replace("&amp;", "&")
            item["link"] = _BARE_REFERENCE.sub(r"&\g<1>", link)
        elif kind == "guid":
            guid = stored(uri(text) if self._guid_is_link else text)
            item["id"] = guid
            if self._guid_is_link:
                item.setdefault("link", guid)
        elif kind == "description":
            item["summary"] = stored(text)
            item["summary_detail"] = {"type": "text/html"}
        elif kind == "content":
            body = stored(text)
            item.setdefault("content", []).append({"type": "text/html", "value": body})
            item.setdefault("summary", body)
        elif kind in ("published", "updated"):
            item[kind] = stored(text)
            parsed_date(item[kind])
        elif kind == "author":
            item["author"] = stored(text)
        elif kind == "category":
            term = stored(text)
            if term:
                item.setdefault("tags", []).append({"term": term})
        elif kind == "feed-title":
            self.title = stored(text)
        elif kind == "feed-link":
            self.link = _BARE_REFERENCE.sub(r"&\g<1>", stored(uri(text)))
        elif kind == "date":
            parsed_date(stored(text))
