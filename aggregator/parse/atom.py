"""The Atom 1.0 half of the fast path (:mod:`.fastpath`): plain ``feed/entry``.

Whitelisted: an Atom 1.0 ``feed/entry`` tree (the Atom namespace as default or with a
prefix) of id, title, link, updated, published, author (name, email, uri), category,
summary and content, plus the feed-level elements :class:`Reading` never looks at
(subtitle, generator, icon, logo, rights, category, author).  Text constructs must
be ``type="text"`` or ``"html"`` (``xhtml`` carries markup, which feedparser reads
as XHTML; other types may be base64); no ``xml:base``, no ``src``, no extension
elements.  The only attribute every element may carry is ``xml:lang``.

feedparser's Atom handling differs from its RSS handling in ways reproduced here:
no guessing whether a plain-text title is HTML; ``<id>`` is the entry's link until
an alternate HTML ``<link>`` sets it (and sets it again, each one); ``<content>`` is
copied to the summary when there is none; the author is ``name (email)`` from its
children, set when ``</author>`` closes; category terms come from the ``term``
attribute, or the text when the last tag has none.  One author per entry: with two,
feedparser mixes the first one's e-mail into the second.

May import :mod:`.fastpath` only.
"""

from __future__ import annotations

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

_PLAIN_TYPES = frozenset({"text/plain", "text/html"})  # text constructs read as characters
_HTML_TYPES = _FeedParserMixin.html_types  # link types that make an alternate link the link

_GRAMMAR: Grammar = {
    "document": {(ATOM_NS, "feed"): "feed"},
    "feed": {
        (ATOM_NS, "title"): "feed-title",
        (ATOM_NS, "id"): "feed-id",
        (ATOM_NS, "link"): "feed-link",
        (ATOM_NS, "updated"): "date",
        (ATOM_NS, "author"): "feed-author",
        (ATOM_NS, "entry"): "entry",
        **{
            (ATOM_NS, name): "ignored"
            for name in ("subtitle", "generator", "icon", "logo", "rights", "category")
        },
    },
    "feed-author": {(ATOM_NS, name): "ignored" for name in ("name", "email", "uri")},
    "entry": {
        (ATOM_NS, "id"): "id",
        (ATOM_NS, "title"): "title",
        (ATOM_NS, "link"): "link",
        (ATOM_NS, "updated"): "updated",
        (ATOM_NS, "published"): "published",
        (ATOM_NS, "author"): "author",
        (ATOM_NS, "category"): "category",
        (ATOM_NS, "summary"): "summary",
        (ATOM_NS, "content"): "content",
        (ATOM_NS, "rights"): "ignored",
    },
    "author": {
        (ATOM_NS, "name"): "name",
        (ATOM_NS, "email"): "email",
        (ATOM_NS, "uri"): "ignored",
    },
}
_CONTAINERS = frozenset({"feed", "feed-author", "entry", "author"})
_EMPTY = frozenset({"feed-link", "link"})  # links with an href: their text goes nowhere
# At most one per parent: feedparser's handling of repeats depends on their order.
_ONCE = frozenset(
    {"feed-title", "feed-id", "id", "title", "updated", "published", "author", "summary"}
    | {"content", "name", "email"}
)
_LINK = frozenset({"href", "rel", "type", "title", "hreflang", "length"})
_TYPED = frozenset({"type"})
_CATEGORY = frozenset({"term", "scheme", "label"})
_ATTRIBUTES = {
    kind: allowed | {"xml:lang"}
    for kind, allowed in {
        "feed": frozenset(),
        "feed-title": _TYPED,
        "feed-id": frozenset(),
        "feed-link": _LINK,
        "date": frozenset(),
        "feed-author": frozenset(),
        # subtitle and rights are typed, generator names uri and version, category
        # its term: all stored where Reading never looks.
        "ignored": _TYPED | _CATEGORY | {"uri", "version"},
        "entry": frozenset(),
        "id": frozenset(),
        "title": _TYPED,
        "link": _LINK,
        "updated": frozenset(),
        "published": frozenset(),
        "author": frozenset(),
        "category": _CATEGORY,
        "summary": _TYPED,
        "content": _TYPED,
        "name": frozenset(),
        "email": frozenset(),
    }.items()
}


def _content_type(attrs: Mapping[str, str]) -> str:
    """The type of a text construct as feedparser maps it; declines XHTML and the rest."""
    mapped: str = _FeedParserMixin.map_content_type(attrs.get("type", "text/plain").lower())
    if mapped not in _PLAIN_TYPES:
        raise Unhandled(f"text construct of type {mapped!r}")
    return mapped


class AtomReader(ExpatReader):
    """Builds feedparser-shaped entries for whitelisted Atom 1.0."""

    VERSION = "atom10"
    GRAMMAR = _GRAMMAR
    CONTAINERS = _CONTAINERS
    EMPTY = _EMPTY
    ONCE = _ONCE
    ATTRIBUTES = _ATTRIBUTES
    DEFAULT_NAMESPACE = ATOM_NS

    def __init__(self) -> None:
        super().__init__()
        self._item: dict[str, Any] = {}
        self._author: dict[str, str] = {}  # the open author's name and email
        self._type = "text/plain"  # of the open text construct

    def start_container(self, kind: str, attrs: Mapping[str, str]) -> None:
        if kind == "entry":
            self._item = {}
            self.items.append(self._item)
        elif kind == "author":
            self._author = {}

    def end_container(self, kind: str) -> None:
        if kind != "author":
            return
        # feedparser stores the author element's own (blank) text, then sets the
        # author from the details its children saved, if they hold a name or e-mail.
        self._item["author"] = ""
        name, email = self._author.get("name"), self._author.get("email")
        if name and email:
            self._item["author"] = f"{name} ({email})"
        elif name or email:
            self._item["author"] = name or email

    def between_elements(self, data: str) -> None:
        if self._kinds[-1] == "author" and data.strip():
            raise Unhandled("text directly inside an author")  # feedparser keeps it

    def start_empty(self, kind: str, attrs: Mapping[str, str]) -> None:
        if "href" not in attrs:
            raise Unhandled("link without href")  # feedparser reads its text as the link
        # feedparser lower-cases rel and type values, then fills in their defaults.
        rel = attrs.get("rel", "alternate").lower()
        default_type = "application/atom+xml" if rel == "self" else "text/html"
        link_type = attrs.get("type", default_type).lower()
        href = uri(attrs["href"])
        alternate = (
            rel == "alternate" and _FeedParserMixin.map_content_type(link_type) in _HTML_TYPES
        )
        if kind == "link":
            self._item.setdefault("links", []).append({"rel": rel, "href": href})
            if alternate:
                self._item["link"] = href
        elif alternate:
            self.link = href

    def start_text(self, kind: str, attrs: Mapping[str, str]) -> None:
        # A summary once per entry keeps feedparser's "a second summary after no
        # content is content" out of reach.
        if kind in ("feed-title", "title", "summary", "content"):
            self._type = _content_type(attrs)
        elif kind == "category":
            self._add_tag(attrs.get("term"), attrs.get("scheme"), attrs.get("label"))

    def _add_tag(self, term: str | None, scheme: str | None, label: str | None) -> None:
        """feedparser's ``_add_tag``: a new tag unless empty or already there."""
        tags = self._item.setdefault("tags", [])
        if term or scheme or label:
            tag = {"term": term, "scheme": scheme, "label": label}
            if tag not in tags:
                tags.append(tag)

    def end_text(self, kind: str, text: str) -> None:
        item = self._item
        if kind == "title":
            item["title"] = stored(text)
            item["title_detail"] = {"type": self._type}
        elif kind == "id":
            value = stored(uri(text))
            item["id"] = value
            item.setdefault("link", value)  # an id is the link until a link says otherwise
        elif kind == "summary":
            item["summary"] = stored(text)
            item["summary_detail"] = {"type": self._type}
        elif kind == "content":
            body = stored(text)
            item.setdefault("content", []).append({"type": self._type, "value": body})
            item.setdefault("summary", body)
        elif kind in ("published", "updated"):
            item[kind] = stored(text)
            parsed_date(item[kind])
        elif kind in ("name", "email"):
            self._author[kind] = text  # feedparser keeps these as sent, stripped only
        elif kind == "category":
            term = stored(text)
            tags = item["tags"]
            if term and tags and not tags[-1]["term"]:
                tags[-1]["term"] = term
            elif term:
                self._add_tag(term, None, None)
        elif kind == "feed-title":
            self.title = stored(text)
        elif kind == "feed-id":
            if self.link is None:
                self.link = stored(uri(text))
        elif kind == "date":
            parsed_date(stored(text))
