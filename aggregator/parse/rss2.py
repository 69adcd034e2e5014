"""The RSS 2.0 fast path: exactly feedparser's result for plain RSS 2.0, or nothing.

feedparser costs about 0.6 ms per entry on our feeds, so plain RSS 2.0 takes a fast
path (:func:`read_rss2`, about a fifth of that) that builds the same feedparser-shaped
entries from expat events and hands them to the same :func:`raw_entry`.  It must give
exactly the :class:`RawFeed` feedparser's path gives, or decline, and then feedparser
reads the document as it always did.  Lenient fast parsers silently drop data on
malformed input; this one cannot, because it accepts only documents on which
feedparser's behaviour is known and reproduced:

* The document goes through feedparser's own charset conversion and DOCTYPE filter,
  and expat, configured as feedparser's SAX driver configures it, parses the very
  bytes feedparser's strict parser would.  Any XML error means feedparser would
  switch to its loose parser, so the fast path declines.  (Expat, not lxml: libxml2
  does not draw the line between well-formed and not exactly where expat does.)
* A DOCTYPE (the one place entities could come from) is declined outright.
* Elements are a whitelist, per parent: an RSS 2.0 ``rss/channel/item`` tree whose
  every element is one whose feedparser handler was read and reproduced (title, link,
  guid, description, content:encoded, pubDate, dc:date, author, dc:creator, category,
  enclosure), or one feedparser stores where :class:`RawFeed` never looks.  Every
  attribute is whitelisted too (so no ``xml:base``, no ``type``), text elements may
  not contain markup (feedparser would read it as XHTML), and elements whose repeats
  feedparser treats in an order-dependent way may occur once.  Namespace declarations
  that would change feedparser's idea of the format or rename an element are declined.
* The quirks of feedparser's text handling are reproduced by calling its own helpers
  where a rule is not trivially restated (URI joining, ``looks_like_html``, the cp1252
  table, date parsing, which may raise and must raise alike).

Anything else (Atom, RSS 1.0 and 0.9x included), and any exception, returns ``None``
and feedparser decides.
``tests/test_parse_fastpath.py`` checks both paths agree on the real samples, the
benchmark corpus, malformed input and generated documents.

feedparser internals this module relies on (private names, hence the ``<6.1`` pin;
``tests/test_parse_fastpath.py`` fails if one of them changes behaviour):

* ``feedparser.encodings.convert_to_utf8``: its charset conversion;
* ``feedparser.sanitizer.replace_doctype``: its DOCTYPE filter;
* ``feedparser.mixin._FeedParserMixin``: ``looks_like_html`` and its namespace table;
* ``feedparser.urls._urljoin``: how it joins URIs;
* ``feedparser.html._cp1252``: its C1-control table;
* ``feedparser.datetimes._parse_date``: its date parsing (which may raise, and must
  raise alike).

May import :mod:`.entries` only.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any
from xml.parsers import expat

from feedparser.datetimes import _parse_date
from feedparser.encodings import convert_to_utf8
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.sanitizer import replace_doctype
from feedparser.urls import _urljoin

from aggregator.parse.entries import Reading, raw_entry, resolve, stripped

_CONTENT_NS = "http://purl.org/rss/1.0/modules/content/"
_DC_NS = "http://purl.org/dc/elements/1.1/"
_ATOM_NS = "http://www.w3.org/2005/Atom"
_SY_NS = "http://purl.org/rss/1.0/modules/syndication/"
_WFW_NS = "http://wellformedweb.org/commentAPI/"
_SLASH_NS = "http://purl.org/rss/1.0/modules/slash/"

# The whitelist: (namespace, lower-cased local name) -> what the element is, per parent.
# feedparser lower-cases local names itself, so <pubDate> and <PUBDATE> are the same
# element to it.  "ignored" elements are ones feedparser stores where RawFeed never
# looks (channel description, image, ttl, comments...); they may hold text only.
_GRAMMAR: dict[str, dict[tuple[str, str], str]] = {
    "document": {("", "rss"): "rss"},
    "rss": {("", "channel"): "channel"},
    "channel": {
        ("", "title"): "feed-title",
        ("", "link"): "feed-link",
        ("", "item"): "item",
        ("", "image"): "image",
        ("", "pubdate"): "date",
        ("", "lastbuilddate"): "date",
        (_ATOM_NS, "link"): "atom-link",
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
_NO_ATTRIBUTES: frozenset[str] = frozenset()
# Standard prefixes of the namespaced elements above: a document may not bind one of
# them to another known namespace, since feedparser would then rename the element.
_RELIED_ON_PREFIXES = frozenset({"content", "dc", "sy", "wfw", "slash"})
_KNOWN_NAMESPACES: dict[str, str] = {
    uri.lower(): prefix for uri, prefix in _FeedParserMixin.namespaces.items()
}
_XLINK_NS = "http://www.w3.org/1999/xlink"  # feedparser turns its declaration into an attribute
_BARE_REFERENCE = re.compile("&([A-Za-z0-9_]+);")


class _Unhandled(Exception):
    """The document leaves the subset of RSS 2.0 the fast path reproduces exactly."""


def _stored(text: str) -> str:
    """``text`` as feedparser stores an element's (already stripped) text.

    It undoes UTF-8 read as Latin-1 where that decodes, then maps C1 controls to
    their cp1252 characters; both are no-ops on ASCII, the common case.
    """
    if text.isascii():
        return text
    with contextlib.suppress(UnicodeError):
        text = text.encode("iso-8859-1").decode("utf-8")
    # In UTF-8 only U+0080..U+00BF (C1 controls among them) start with byte C2: a byte
    # search finds them several times faster than a regex scan of the text.
    if b"\xc2" in text.encode("utf-8", "surrogatepass"):
        return text.translate(_cp1252)
    return text


def _uri(text: str) -> str:
    """A link as feedparser resolves it against its (always empty) base URI."""
    return _urljoin("", text) if text else text


def _parsed_date(text: str) -> None:
    # feedparser parses every date element; a crash there must stay a crash (the
    # fallback then reproduces feedparser's ParseError), so run the same code.
    _parse_date(text)


class _Rss2Reader:
    """Expat event handlers that build feedparser-shaped entries for whitelisted RSS 2.0."""

    def __init__(self) -> None:
        self.title: str | None = None
        self.link: str | None = None
        self.items: list[dict[str, Any]] = []
        self._kinds = ["document"]
        self._seen: list[set[str]] = [set()]  # per open container
        self._text: list[str] | None = None  # pieces of the open text element
        self._item: dict[str, Any] = {}
        self._guid_is_link = False

    def read(self, document: bytes) -> None:
        """Parse ``document``; raises ExpatError or :class:`_Unhandled` to decline it."""
        # Configured as feedparser's SAX driver (xml.sax.expatreader) configures expat,
        # so exactly the documents its strict parser accepts get this far.
        parser = expat.ParserCreate(None, " ")
        parser.namespace_prefixes = True
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_UNLESS_STANDALONE)
        parser.buffer_text = True
        parser.buffer_size = 1 << 16
        parser.StartDoctypeDeclHandler = self._doctype
        parser.StartNamespaceDeclHandler = self._namespace
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._characters
        parser.Parse(document, True)

    def _doctype(self, *_declaration: object) -> None:
        raise _Unhandled("DOCTYPE")

    def _namespace(self, prefix: str | None, uri: str | None) -> None:
        if not prefix or not uri or len(uri.split()) != 1 or uri == _XLINK_NS:
            raise _Unhandled(f"namespace declaration {prefix}={uri}")
        lowered = uri.lower()
        standard = "" if "backend.userland.com/rss" in lowered else _KNOWN_NAMESPACES.get(lowered)
        if standard is None:
            return  # feedparser only records it; elements in it are not whitelisted
        if (standard == "" and uri != _ATOM_NS) or (
            prefix in _RELIED_ON_PREFIXES and prefix != standard
        ):
            # Another format's namespace (changes feedparser's version), or a prefix
            # we rely on bound to a different module (feedparser would rename elements).
            raise _Unhandled(f"namespace declaration {prefix}={uri}")

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        if self._text is not None:
            raise _Unhandled("markup inside a text element")  # feedparser reads it as XHTML
        # "local", or "namespace local prefix": no default namespace gets this far.
        parts = name.split(" ")
        if len(parts) == 1:
            key = ("", name.lower())
        elif len(parts) == 3:
            key = (parts[0], parts[1].lower())
        else:
            raise _Unhandled(f"element {name!r}")
        kind = _GRAMMAR.get(self._kinds[-1], {}).get(key)
        if kind is None:
            raise _Unhandled(f"element {name!r} in {self._kinds[-1]}")
        attrs: dict[str, str] = {}
        for attribute, value in attributes.items():
            lowered = attribute.lower()  # as feedparser does; a clash would depend on order
            if " " in attribute or lowered in attrs:
                raise _Unhandled(f"attribute {attribute!r}")
            attrs[lowered] = value
        if attrs and not attrs.keys() <= _ATTRIBUTES.get(kind, _NO_ATTRIBUTES):
            raise _Unhandled(f"attributes of {name!r}")
        if kind in _ONCE:
            seen = self._seen[-1]
            if kind in seen:
                raise _Unhandled(f"repeated {name!r}")
            seen.add(kind)
        self._kinds.append(kind)
        if kind in _CONTAINERS:
            self._seen.append(set())
            if kind == "rss" and attrs.get("version") != "2.0":
                raise _Unhandled("not RSS 2.0")
            if kind == "item":
                self._item = {}
                self.items.append(self._item)
        elif kind in _EMPTY:
            self._start_empty(kind, attrs)
        else:
            if kind == "guid":
                self._guid_is_link = attrs.get("ispermalink", "true") == "true"
            self._text = []

    def _start_empty(self, kind: str, attrs: Mapping[str, str]) -> None:
        if kind == "enclosure":
            if attrs.get("url"):  # feedparser's _enforce_href: the url attribute is the href
                self._item.setdefault("links", []).append(
                    {"rel": "enclosure", "href": attrs["url"]}
                )
        elif "href" not in attrs or attrs.get("rel", "alternate").lower() == "alternate":
            # Without href its text is the channel link; rel=alternate sets the link too.
            raise _Unhandled("atom:link that would set the channel link")

    def _characters(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)  # text between elements is dropped by feedparser too

    def _end(self, _name: str) -> None:
        kind = self._kinds.pop()
        if kind in _CONTAINERS:
            self._seen.pop()
        if self._text is None:
            return
        text = "".join(self._text).strip()
        self._text = None
        item = self._item
        if kind == "title":
            markup = _FeedParserMixin.looks_like_html(text)
            item["title"] = _stored(text)
            item["title_detail"] = {"type": "text/html" if markup else "text/plain"}
        elif kind == "link":
            link = _stored(_uri(text)).replace("&amp;", "&")
            item["link"] = _BARE_REFERENCE.sub(r"&\g<1>", link)
        elif kind == "guid":
            guid = _stored(_uri(text) if self._guid_is_link else text)
            item["id"] = guid
            if self._guid_is_link:
                item.setdefault("link", guid)
        elif kind == "description":
            item["summary"] = _stored(text)
            item["summary_detail"] = {"type": "text/html"}
        elif kind == "content":
            body = _stored(text)
            item.setdefault("content", []).append({"type": "text/html", "value": body})
            item.setdefault("summary", body)
        elif kind in ("published", "updated"):
            item[kind] = _stored(text)
            _parsed_date(item[kind])
        elif kind == "author":
            item["author"] = _stored(text)
        elif kind == "category":
            term = _stored(text)
            if term:
                item.setdefault("tags", []).append({"term": term})
        elif kind == "feed-title":
            self.title = _stored(text)
        elif kind == "feed-link":
            self.link = _BARE_REFERENCE.sub(r"&\g<1>", _stored(_uri(text)))
        elif kind == "date":
            _parsed_date(_stored(text))


def read_rss2(document: bytes, response_headers: Mapping[str, str], *, url: str) -> Reading | None:
    """Read a strictly well-formed, whitelisted RSS 2.0 document; ``None`` for anything else.

    The document goes through feedparser's own charset conversion and DOCTYPE filter,
    so expat parses the very bytes feedparser's strict parser would, with the same
    outcome (bozo exception included).
    """
    result: dict[str, Any] = {}
    try:
        data = convert_to_utf8(dict(response_headers), document, result)
        if not result.get("encoding"):
            return None  # feedparser would go straight to its loose parser
        _version, data, _entities = replace_doctype(data)
        reader = _Rss2Reader()
        reader.read(data)
    except Exception:
        # Malformed XML, anything outside the whitelist, or something feedparser's own
        # code trips over: the feedparser path decides, exactly as it always did.
        return None
    return Reading(
        version="rss20",
        error=result.get("bozo_exception") if result.get("bozo") else None,
        title=stripped(reader.title),
        link=resolve(stripped(reader.link), url),
        entries=tuple(raw_entry(item, url) for item in reader.items),
    )
