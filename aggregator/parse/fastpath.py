"""The fast path: exactly feedparser's result for plain RSS 2.0 and Atom 1.0, or nothing.

feedparser costs about 0.6 ms per entry on our feeds, so the plainest shapes of the
two common formats take a fast path (about a fifth of that) that builds the same
feedparser-shaped entries from expat events and hands them to the same
:func:`raw_entry`.  It must give exactly the :class:`Reading` feedparser's path gives,
or decline, and then feedparser reads the document as it always did.  Lenient fast
parsers silently drop data on malformed input; this one cannot, because it accepts
only documents on which feedparser's behaviour is known and reproduced:

* The document goes through feedparser's own charset conversion and DOCTYPE filter,
  and expat, configured as feedparser's SAX driver configures it, parses the very
  bytes feedparser's strict parser would.  Any XML error means feedparser would
  switch to its loose parser, so the fast path declines.  (Expat, not lxml: libxml2
  does not draw the line between well-formed and not exactly where expat does.)
  CDATA sections reach both as plain character data, so a CDATA body is no different
  from an entity-escaped one.
* A DOCTYPE (the one place entities could come from) is declined outright.
* Elements are a whitelist, per parent (:mod:`.rss2`, :mod:`.atom`): every element is
  one whose feedparser handler was read and reproduced, or one feedparser stores where
  :class:`Reading` never looks.  Every attribute is whitelisted too (so no
  ``xml:base``), text elements may not contain markup (feedparser would read it as
  XHTML), and elements whose repeats feedparser treats in an order-dependent way may
  occur once.  Namespace declarations that would change feedparser's idea of the
  format or rename an element are declined.
* The quirks of feedparser's text handling are reproduced by calling its own helpers
  where a rule is not trivially restated (URI joining, ``looks_like_html``,
  ``map_content_type``, the cp1252 table, date parsing, which may raise and must
  raise alike).

Anything else (RSS 1.0 and 0.9x included), and any exception, returns ``None`` and
feedparser decides.  ``tests/test_parse_fastpath.py`` checks both paths agree on the
real samples, feedparser's own test documents, the benchmark corpus, malformed input
and generated documents.

feedparser internals relied on (private names, hence the ``<6.1`` pin;
``tests/test_parse_fastpath.py`` fails if one of them changes behaviour):

* ``feedparser.encodings.convert_to_utf8``: its charset conversion;
* ``feedparser.sanitizer.replace_doctype``: its DOCTYPE filter;
* ``feedparser.mixin._FeedParserMixin``: ``looks_like_html``, ``map_content_type``
  and its namespace table;
* ``feedparser.urls._urljoin``: how it joins URIs;
* ``feedparser.html._cp1252``: its C1-control table;
* ``feedparser.datetimes._parse_date``: its date parsing.

May import :mod:`.entries` only.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from xml.parsers import expat

from feedparser.datetimes import _parse_date
from feedparser.encodings import convert_to_utf8
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.sanitizer import replace_doctype
from feedparser.urls import _urljoin

from aggregator.parse.entries import Reading, raw_entry, resolve, stripped

ATOM_NS = "http://www.w3.org/2005/Atom"
# expat's name for xml:lang (namespace, local name, prefix): the one namespaced
# attribute a reader may allow; feedparser keeps it only as a language.
_XML_LANG = "http://www.w3.org/XML/1998/namespace lang xml"
_XLINK_NS = "http://www.w3.org/1999/xlink"  # feedparser turns its declaration into an attribute
# Standard prefixes of the namespaced RSS elements: a document may not bind one of
# them to another known namespace, since feedparser would then rename the element.
_RELIED_ON_PREFIXES = frozenset({"content", "dc", "sy", "wfw", "slash"})
_KNOWN_NAMESPACES: dict[str, str] = {
    uri.lower(): prefix for uri, prefix in _FeedParserMixin.namespaces.items()
}

Grammar = dict[str, dict[tuple[str, str], str]]


class Unhandled(Exception):
    """The document leaves the subset of the format the fast path reproduces exactly."""


class _OtherFormat(Unhandled):
    """The root element belongs to another reader's format."""


def stored(text: str) -> str:
    """``text`` as feedparser stores an element's (already stripped) text.

    It undoes UTF-8 read as Latin-1 where that decodes, then maps C1 controls to
    their cp1252 characters; both are no-ops on ASCII, the common case.
    """
    if text.isascii():
        return text
    with contextlib.suppress(UnicodeError):
        text = text.encode("iso-8859-1").decode("utf-8")
    # Searched in the UTF-8 bytes: a regex of two-byte literals with a common first
    # byte is a fast byte search, several times faster than a scan of the text.
    if _CP1252_MAPPED.search(text.encode("utf-8", "surrogatepass")):
        return text.translate(_cp1252)
    return text


#: The characters the cp1252 table maps (C1 controls), in UTF-8.  Translating with a
#: small table costs ~0.1 us a character (a dictionary miss each); a test for byte C2
#: alone also sent every body with a no-break space (C2 A0) to it: 100 us an entry.
_CP1252_MAPPED = re.compile(
    b"|".join(re.escape(chr(point).encode("utf-8")) for point in sorted(_cp1252))
)


def uri(text: str) -> str:
    """A link as feedparser resolves it against its (always empty) base URI."""
    return _urljoin("", text) if text else text


def parsed_date(text: str) -> None:
    # feedparser parses every date element; a crash there must stay a crash (the
    # fallback then reproduces feedparser's ParseError), so run the same code.
    _parse_date(text)


class ExpatReader:
    """Walks a whitelisted element tree with expat; a subclass says what each element is.

    The class attributes are the whitelist: ``GRAMMAR`` maps a parent's kind to
    ``(namespace, lower-cased local name) -> kind`` (feedparser lower-cases local
    names itself); ``CONTAINERS`` hold elements, ``EMPTY`` kinds carry attributes
    only (text in them is dropped, as feedparser drops it), every other kind is a
    text element.  ``ONCE`` kinds may occur once per parent, ``ATTRIBUTES`` lists
    what each kind may carry, ``DEFAULT_NAMESPACE`` is the one default namespace
    allowed.  Subclasses fill ``title``, ``link`` and ``items`` from the hooks.
    """

    VERSION: ClassVar[str]
    GRAMMAR: ClassVar[Grammar]
    CONTAINERS: ClassVar[frozenset[str]]
    EMPTY: ClassVar[frozenset[str]]
    ONCE: ClassVar[frozenset[str]]
    ATTRIBUTES: ClassVar[Mapping[str, frozenset[str]]]
    DEFAULT_NAMESPACE: ClassVar[str | None] = None

    def __init__(self) -> None:
        self.title: str | None = None
        self.link: str | None = None
        self.items: list[dict[str, Any]] = []
        self._kinds = ["document"]
        self._seen: list[set[str]] = [set()]  # per open container
        self._text: list[str] | None = None  # pieces of the open text element

    def read(self, document: bytes) -> None:
        """Parse ``document``; raises ExpatError or :class:`Unhandled` to decline it."""
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
        raise Unhandled("DOCTYPE")

    def _namespace(self, prefix: str | None, uri: str | None) -> None:
        if prefix is None and uri is not None and uri == self.DEFAULT_NAMESPACE:
            return
        if not prefix or not uri or len(uri.split()) != 1 or uri == _XLINK_NS:
            # On the root, before its name is known, it may be another reader's.
            unhandled = _OtherFormat if self._kinds == ["document"] else Unhandled
            raise unhandled(f"namespace declaration {prefix}={uri}")
        lowered = uri.lower()
        standard = "" if "backend.userland.com/rss" in lowered else _KNOWN_NAMESPACES.get(lowered)
        if standard is None:
            return  # feedparser only records it; elements in it are not whitelisted
        if (standard == "" and uri != ATOM_NS) or (
            prefix in _RELIED_ON_PREFIXES and prefix != standard
        ):
            # Another format's namespace (changes feedparser's version), or a prefix
            # we rely on bound to a different module (feedparser would rename elements).
            raise Unhandled(f"namespace declaration {prefix}={uri}")

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        if self._text is not None:
            raise Unhandled("markup inside a text element")  # feedparser reads it as XHTML
        # "local", "namespace local" (default namespace) or "namespace local prefix".
        parts = name.split(" ")
        key = ("", name.lower()) if len(parts) == 1 else (parts[0], parts[1].lower())
        parent = self._kinds[-1]
        kind = self.GRAMMAR.get(parent, {}).get(key)
        if kind is None:
            if parent == "document":
                raise _OtherFormat(name)
            raise Unhandled(f"element {name!r} in {parent}")
        attrs: dict[str, str] = {}
        for attribute, value in attributes.items():
            lowered = "xml:lang" if attribute == _XML_LANG else attribute.lower()
            # As feedparser does; a clash after lower-casing would depend on order.
            if " " in lowered or lowered in attrs:
                raise Unhandled(f"attribute {attribute!r}")
            attrs[lowered] = value
        if attrs and not attrs.keys() <= self.ATTRIBUTES.get(kind, frozenset()):
            raise Unhandled(f"attributes of {name!r}")
        if kind in self.ONCE:
            seen = self._seen[-1]
            if kind in seen:
                raise Unhandled(f"repeated {name!r}")
            seen.add(kind)
        self._kinds.append(kind)
        if kind in self.CONTAINERS:
            self._seen.append(set())
            self.start_container(kind, attrs)
        elif kind in self.EMPTY:
            self.start_empty(kind, attrs)
        else:
            self.start_text(kind, attrs)
            self._text = []

    def _characters(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)
        else:
            self.between_elements(data)

    def _end(self, _name: str) -> None:
        kind = self._kinds.pop()
        if kind in self.CONTAINERS:
            self._seen.pop()
            self.end_container(kind)
        elif self._text is not None:
            text = "".join(self._text).strip()
            self._text = None
            self.end_text(kind, text)

    # Hooks: what each kind of element means.  The defaults do nothing.

    def start_container(self, kind: str, attrs: Mapping[str, str]) -> None:
        pass

    def end_container(self, kind: str) -> None:
        pass

    def start_empty(self, kind: str, attrs: Mapping[str, str]) -> None:
        pass

    def start_text(self, kind: str, attrs: Mapping[str, str]) -> None:
        pass

    def end_text(self, kind: str, text: str) -> None:
        pass

    def between_elements(self, data: str) -> None:
        """Text outside any text element: dropped by feedparser, unless a reader says so."""


def read_fast(
    document: bytes,
    response_headers: Mapping[str, str],
    *,
    url: str,
    readers: tuple[type[ExpatReader], ...],
) -> Reading | None:
    """Read a strictly well-formed, whitelisted document; ``None`` for anything else.

    The document goes through feedparser's own charset conversion and DOCTYPE filter,
    so expat parses the very bytes feedparser's strict parser would, with the same
    outcome (bozo exception included).  Each of ``readers`` is tried until one owns
    the root element; a reader that does not stops there, at the cost of the prolog.
    """
    result: dict[str, Any] = {}
    try:
        data = convert_to_utf8(dict(response_headers), document, result)
        if not result.get("encoding"):
            return None  # feedparser would go straight to its loose parser
        _version, data, _entities = replace_doctype(data)
        for reader_class in readers:
            reader = reader_class()
            try:
                reader.read(data)
            except _OtherFormat:
                continue
            break
        else:
            return None
    except Exception:
        # Malformed XML, anything outside the whitelist, or something feedparser's own
        # code trips over: the feedparser path decides, exactly as it always did.
        return None
    return Reading(
        version=reader.VERSION,
        error=result.get("bozo_exception") if result.get("bozo") else None,
        title=stripped(reader.title),
        link=resolve(stripped(reader.link), url),
        entries=tuple(raw_entry(item, url) for item in reader.items),
    )
