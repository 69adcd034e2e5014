"""Feed bytes + response headers -> :class:`RawFeed`.  Pure: never touches the network.

feedparser gets bytes, never a URL (``fetch`` owns timeouts, size caps and
conditional requests).  Its own HTML sanitizing and relative-URI resolution are
off: :mod:`aggregator.clean` does both, per source, and they are about two thirds
of feedparser's run time.

Charset is decided here rather than by feedparser, because feedparser trusts the
declared charset and a feed that declares GB2312 but sends UTF-8 (or the reverse)
would otherwise be stored as mojibake.  Strict UTF-8 validity is the strongest
evidence there is, so bytes that decode as UTF-8 are UTF-8 whatever they claim;
otherwise the declared charsets are tried, then the CJK charsets our sources use.
A guess is only accepted if the text looks like text; if nothing fits, the feed is
decoded with replacement characters and the problem is recorded, never hidden.

DTDs are never processed (see :func:`neutralise_dtd`): entity declarations are the
whole of the billion-laughs, quadratic-blowup and XXE attack surface, feedparser's
own DOCTYPE filter lets quadratic blowups through (and its loose fallback parser
expands them with no limit at all), and real feeds only ever declare entities to
name single characters (``<!ENTITY nbsp "&#160;">``).  So the prolog is rebuilt
with nothing but those single-character entities; every other entity is left
unexpanded, as literal ``&name;`` text, and the feed still parses.

feedparser costs about 0.6 ms per entry on our feeds, so plain RSS 2.0 takes a fast
path (:func:`_read_rss2`, about a fifth of that) that builds the same feedparser-shaped
entries from expat events and hands them to the same :func:`_entry`.  It must give
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

JSON Feed (1.0/1.1) is parsed directly into the same shape.
"""

from __future__ import annotations

import codecs
import contextlib
import html
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin
from xml.parsers import expat

import feedparser
from feedparser.datetimes import _parse_date
from feedparser.encodings import convert_to_utf8
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.sanitizer import replace_doctype
from feedparser.urls import _urljoin

from aggregator.errors import ParseError
from aggregator.types import RawEntry, RawFeed

__all__ = ["decode_feed", "neutralise_dtd", "parse_feed"]

# feedparser reports these for documents it still read completely.
_SURVIVABLE = ("CharacterEncodingOverride", "CharacterEncodingUnknown", "NonXMLContentType")
_XML_DECL = re.compile(rb"^(\s*<\?xml[^>]*?encoding\s*=\s*)([\"'])([A-Za-z0-9._:-]+)\2", re.I)
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.I)
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
_FALLBACKS = ("gb18030", "big5")
_EQUIVALENT = {
    "utf8": "utf-8",
    "gb2312": "gb18030",  # supersets: a GB2312/GBK declaration is read as GB18030
    "gbk": "gb18030",
    "cp936": "gb18030",
    "x-gbk": "gb18030",
}


def _norm_charset(name: str | None) -> str | None:
    if not name:
        return None
    lowered = name.strip().lower().replace("_", "-")
    lowered = _EQUIVALENT.get(lowered, lowered)
    try:
        return codecs.lookup(lowered).name
    except LookupError:
        return None


def _plausible(text: str) -> bool:
    """Does ``text`` look like real text rather than mis-decoded bytes?

    Mis-decoded bytes land in control characters, private-use and unassigned code
    points, or rare symbols; real Chinese/Latin text is letters, marks, punctuation
    and spaces.  A small share of odd characters is tolerated.
    """
    odd = 0
    total = 0
    for char in text:
        if char.isascii():
            continue
        total += 1
        category = unicodedata.category(char)
        if category[0] in "CS" and category != "Cf":
            odd += 1
    return total == 0 or odd / total < 0.02


def decode_feed(
    content: bytes, headers: Mapping[str, str] | None = None
) -> tuple[str, str, tuple[str, ...]]:
    """Decode feed bytes: ``(text, encoding used, problems)``.  Never mojibake."""
    problems: list[str] = []
    for bom, encoding in _BOMS:
        if content.startswith(bom):
            return content[len(bom) :].decode(encoding, "replace"), encoding, ()
    content_type = _header(headers, "content-type") or ""
    header_match = _CHARSET.search(content_type)
    declared_http = _norm_charset(header_match.group(1)) if header_match else None
    decl_match = _XML_DECL.match(content[:200])
    declared_xml = _norm_charset(decl_match.group(3).decode("ascii")) if decl_match else None
    declared = [name for name in (declared_http, declared_xml) if name]

    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if declared and any(name != "utf-8" for name in declared) and not text.isascii():
            problems.append(
                f"charset mismatch: declared {'/'.join(declared)} but the content is UTF-8"
            )
        return text, "utf-8", tuple(problems)

    tried: list[str] = []
    for name in (*declared, *_FALLBACKS):
        if name in tried or name == "utf-8":
            continue
        tried.append(name)
        try:
            text = content.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
        if not _plausible(text):
            continue
        if declared and name not in declared:
            problems.append(
                f"charset mismatch: declared {'/'.join(declared)} but the content is {name}"
            )
        return text, name, tuple(problems)
    problems.append(
        "undecodable content: no charset fits (declared "
        f"{'/'.join(declared) or 'none'}); invalid bytes replaced"
    )
    return content.decode("utf-8", "replace"), "utf-8", tuple(problems)


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _looks_json(content: bytes) -> bool:
    # Sniff rather than trust Content-Type: servers label feeds every which way.
    return content.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


_SURROGATES = re.compile("[\ud800-\udfff]")


def _str(value: object) -> str:
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


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = _str(value).strip()
    return text or None


def _resolve(link: str | None, base: str) -> str | None:
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
    text = _text(value)
    if text is None:
        return None
    if mime == "text/plain":
        return html.escape(text, quote=False)
    return text


def _enclosures(entry: Mapping[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    for link in entry.get("links") or ():
        if link.get("rel") == "enclosure" and link.get("href"):
            found.append(_str(link["href"]).strip())
    rdf = entry.get("enc_enclosure")
    if isinstance(rdf, Mapping) and rdf.get("rdf:resource"):
        found.append(_str(rdf["rdf:resource"]).strip())
    return tuple(dict.fromkeys(found))


def _tags(terms: Iterable[object]) -> tuple[str, ...]:
    cleaned = (_str(term).strip().strip(";；").strip() for term in terms if term)
    return tuple(dict.fromkeys(term for term in cleaned if term))


def _plain(entry: Mapping[str, Any], key: str) -> object:
    """A lookup that bypasses FeedParserDict's key aliases (and their warnings)."""
    return dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)


def _title_markup(title: str | None, detail: Mapping[str, Any] | None) -> str | None:
    """The title as markup: a plain-text title is escaped so ``a <b> c`` keeps its ``<b>``.

    ``RawEntry.title`` is always HTML; feedparser tells plain text (RSS, Atom
    ``type="text"``) from markup (Atom ``type="html"``) and unescapes both, so the
    difference must be carried over here or text that looks like a tag is lost.
    """
    if title is not None and (detail or {}).get("type") == "text/plain":
        return html.escape(title, quote=False)
    return title


def _entry(entry: Mapping[str, Any], base: str) -> RawEntry:
    content, summary = _fullest_body(entry)
    return RawEntry(
        guid=_text(entry.get("id")),
        link=_resolve(_text(entry.get("link")), base),
        title=_title_markup(_text(entry.get("title")), entry.get("title_detail")),
        content=content,
        summary=summary,
        published=_text(_plain(entry, "published")),
        # plain dict lookup: feedparser's own aliases updated->published (issue 310)
        updated=_text(_plain(entry, "updated")),
        author=_text(entry.get("author")),
        tags=_tags(tag.get("term") for tag in entry.get("tags") or ()),
        enclosures=_enclosures(entry),
    )


def _rewrite_declaration(content: bytes) -> bytes:
    return _XML_DECL.sub(rb"\1\2utf-8\2", content, count=1)


# feedparser splits the prolog off at the first "<" + word character; so do we, so
# that its DOCTYPE filter sees exactly the prolog we rebuilt and nothing else.
_FIRST_ELEMENT = re.compile(rb"<\w")
_XML_DECL_ANY = re.compile(rb"\A\s*<\?xml\s[^>]*>")
_ENTITY_DECL = re.compile(r"<!ENTITY", re.I)
# An entity whose replacement is one character: no amplification is possible.
_ONE_CHAR_ENTITY = re.compile(
    r"<!ENTITY\s+([A-Za-z_]\w{0,63})\s+([\"'])"
    r"(?:&#([0-9]{1,7});|&#x([0-9A-Fa-f]{1,6});|([^&%<\"'\\]))\2\s*>",
    re.ASCII,
)
# Characters an entity value may not hold literally (markup) or XML forbids outright.
_NOT_ENTITY_VALUE = frozenset('&%<"') | frozenset(map(chr, range(0x20))) - set("\t\n\r")


def _entity_char(decimal: str, hexadecimal: str, literal: str) -> str | None:
    code = int(decimal) if decimal else int(hexadecimal, 16) if hexadecimal else ord(literal)
    if not 0 < code <= 0x10FFFF or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
        return None
    char = chr(code)
    return None if char in _NOT_ENTITY_VALUE else char


def neutralise_dtd(document: bytes) -> tuple[bytes, tuple[str, ...]]:
    """Rebuild the prolog of a UTF-8 XML ``document`` without any DTD processing risk.

    Everything before the first element (DOCTYPE with its internal subset, stray
    declarations, comments, processing instructions) is replaced by the XML
    declaration plus, if the document declared any, the entities that stand for
    a single character (written as that literal character, the one form both
    expat and feedparser's loose parser expand correctly).  External DTDs,
    ``SYSTEM``/``PUBLIC`` entities, parameter entities and entities that expand
    to more than one character are dropped, so expat cannot fetch, read or expand
    them and feedparser's loose fallback parser (which expands the entities it
    calls safe without any limit) is never given them.  References to dropped
    entities stay in the text as ``&name;``.  Returns the document and, when
    declarations were dropped, a problem to record.
    """
    match = _FIRST_ELEMENT.search(document)
    end = match.start() if match else len(document)
    if b"<!" not in document[:end]:  # no DOCTYPE, no declarations: the common case
        return document, ()
    head = document[:end].decode("utf-8", "replace")
    declaration = _XML_DECL_ANY.match(document[:end])
    kept: dict[str, str] = {}
    for name, _quote, decimal, hexadecimal, literal in _ONE_CHAR_ENTITY.findall(head):
        char = _entity_char(decimal, hexadecimal, literal)
        if char is not None and name not in kept:  # the first declaration wins, as in XML
            kept[name] = char
    rebuilt = (declaration.group(0) if declaration else b"") + b"\n"
    if kept:
        subset = "".join(f'<!ENTITY {name} "{char}">\n' for name, char in kept.items())
        rebuilt += f"<!DOCTYPE feed [\n{subset}]>\n".encode()
    dropped = len(_ENTITY_DECL.findall(head)) - len(kept)
    problems: tuple[str, ...] = ()
    if dropped > 0:
        problems = (
            f"DTD ignored: {dropped} entity declaration{'s' if dropped > 1 else ''} dropped "
            "(only single-character entities are honoured; others stay unexpanded)",
        )
    return rebuilt + document[end:], problems


_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9A-Fa-f]+)|([0-9]+));")


def _char_ref(match: re.Match[bytes]) -> bytes:
    hexadecimal, decimal = match.group(1), match.group(2)
    digits = (hexadecimal or decimal).lstrip(b"0")
    # Length first: int() of thousands of decimal digits is itself refused (CPython's limit).
    if len(digits) <= 7:
        code = int(digits or b"0", 16 if hexadecimal else 10)
        if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
            return match.group(0)
    return b"&#xFFFD;"


def _fix_char_refs(document: bytes) -> bytes:
    """Replace character references beyond U+10FFFF, or to surrogates, with U+FFFD.

    expat refuses them, and feedparser's loose fallback parser then calls ``chr()``
    on them and crashes with a ValueError, losing every entry of the feed.
    """
    return _CHAR_REF.sub(_char_ref, document) if b"&#" in document else document


@dataclass(frozen=True)
class _Reading:
    """What a reader made of an XML document: everything :func:`_raw_feed` needs."""

    version: str  # feedparser's name for the format; "" when no feed was recognised
    error: Exception | None  # feedparser's bozo exception, if any
    title: str | None
    link: str | None
    entries: tuple[RawEntry, ...]


def _prepare_xml(
    content: bytes, headers: Mapping[str, str] | None
) -> tuple[bytes, dict[str, str], tuple[str, ...]]:
    """``(document, response headers, problems)``: the input both XML readers get."""
    text, _encoding, problems = decode_feed(content, headers)
    utf8, dtd_problems = neutralise_dtd(_rewrite_declaration(text.encode("utf-8")))
    media_type = (_header(headers, "content-type") or "application/xml").split(";")[0].strip()
    # No content-location: feedparser would resolve bare-UUID guids against it.
    response_headers = {"content-type": f"{media_type or 'application/xml'}; charset=utf-8"}
    return _fix_char_refs(utf8), response_headers, problems + dtd_problems


def _read_with_feedparser(
    document: bytes, response_headers: Mapping[str, str], *, url: str, source: str | None
) -> _Reading:
    try:
        # A stream, never bytes: feedparser tries to open() bytes as a file name first,
        # so a body that names a local file would be read from disk.
        result = feedparser.parse(
            io.BytesIO(document),
            response_headers=dict(response_headers),
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as crash:
        # feedparser is third-party code run on hostile bytes; whatever else it trips
        # over must still end as this source's ParseError, not crash the poll.
        raise ParseError("feed parser failed", source=source, url=url) from crash
    feed = result.get("feed") or {}
    return _Reading(
        version=result.get("version") or "",
        error=result.get("bozo_exception") if result.get("bozo") else None,
        title=_text(feed.get("title")),
        link=_resolve(_text(feed.get("link")), url),
        entries=tuple(_entry(item, url) for item in result.get("entries") or ()),
    )


def _raw_feed(
    reading: _Reading,
    problems: tuple[str, ...],
    *,
    url: str,
    headers: Mapping[str, str] | None,
    source: str | None,
) -> RawFeed:
    exc = reading.error
    survivable = exc is not None and type(exc).__name__ in _SURVIVABLE
    if not reading.entries and (not reading.version or (exc is not None and not survivable)):
        cause = exc if isinstance(exc, Exception) else ValueError("no feed found in document")
        raise ParseError("not a readable feed", source=source, url=url) from cause
    all_problems = list(problems)
    # A missing Content-Type is ours to supply, and the encoding override is our own
    # re-encoding to UTF-8: neither is a problem with the feed.
    reportable = exc is not None and type(exc).__name__ != "CharacterEncodingOverride"
    if reportable and not (survivable and _header(headers, "content-type") is None):
        all_problems.append(f"{type(exc).__name__}: {exc}")
    return RawFeed(
        url=url,
        title=reading.title,
        link=reading.link,
        entries=reading.entries,
        problems=tuple(all_problems),
    )


def _parse_xml(
    content: bytes, *, url: str, headers: Mapping[str, str] | None, source: str | None
) -> RawFeed:
    document, response_headers, problems = _prepare_xml(content, headers)
    reading = _read_rss2(document, response_headers, url=url)
    if reading is None:
        reading = _read_with_feedparser(document, response_headers, url=url, source=source)
    return _raw_feed(reading, problems, url=url, headers=headers, source=source)


# -- the RSS 2.0 fast path ------------------------------------------------------------------

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


def _read_rss2(
    document: bytes, response_headers: Mapping[str, str], *, url: str
) -> _Reading | None:
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
    return _Reading(
        version="rss20",
        error=result.get("bozo_exception") if result.get("bozo") else None,
        title=_text(reader.title),
        link=_resolve(_text(reader.link), url),
        entries=tuple(_entry(item, url) for item in reader.items),
    )


def _json_entry(item: Mapping[str, Any], base: str) -> RawEntry:
    content = _text(item.get("content_html"))
    if content is None and _text(item.get("content_text")):
        paragraphs = _str(item["content_text"]).strip().split("\n\n")
        content = "".join(f"<p>{html.escape(part.strip(), quote=False)}</p>" for part in paragraphs)
    authors = item.get("authors") or ([item["author"]] if item.get("author") else [])
    names = [
        _str(a.get("name")).strip() for a in authors if isinstance(a, Mapping) and a.get("name")
    ]
    attachments = item.get("attachments") or ()
    return RawEntry(
        guid=_text(item.get("id")),
        link=_resolve(_text(item.get("url")) or _text(item.get("external_url")), base),
        # JSON Feed titles are plain text by the spec.
        title=_title_markup(_text(item.get("title")), {"type": "text/plain"}),
        content=content or _text(item.get("summary")),
        summary=_text(item.get("summary")) if content else None,
        published=_text(item.get("date_published")),
        updated=_text(item.get("date_modified")),
        author=", ".join(names) or None,
        tags=_tags(item.get("tags") or ()),
        enclosures=tuple(
            _str(a["url"]).strip() for a in attachments if isinstance(a, Mapping) and a.get("url")
        ),
    )


def _parse_json(
    content: bytes, *, url: str, headers: Mapping[str, str] | None, source: str | None
) -> RawFeed:
    text, _encoding, problems = decode_feed(content, headers)
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ParseError("not a readable JSON feed", source=source, url=url) from exc
    version = document.get("version") if isinstance(document, dict) else None
    if not isinstance(version, str) or not version.startswith("https://jsonfeed.org/version/"):
        raise ParseError(
            "not a JSON Feed", source=source, url=url, version=version
        ) from ValueError("missing or unknown JSON Feed version")
    items = document.get("items")
    if not isinstance(items, list):
        raise ParseError("JSON Feed has no items list", source=source, url=url)
    entries = []
    all_problems = list(problems)
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            all_problems.append(f"item {index} is not an object; skipped")
            continue
        entries.append(_json_entry(item, url))
    return RawFeed(
        url=url,
        title=_text(document.get("title")),
        link=_resolve(_text(document.get("home_page_url")), url),
        entries=tuple(entries),
        problems=tuple(all_problems),
    )


def parse_feed(
    content: bytes,
    *,
    url: str,
    headers: Mapping[str, str] | None = None,
    source: str | None = None,
) -> RawFeed:
    """Parse RSS 0.9x/1.0/2.0, Atom or JSON Feed bytes into a :class:`RawFeed`.

    A document that parses with errors but still yields entries keeps them and
    records the problem in ``RawFeed.problems``; one with no entries and a fatal
    error raises :class:`ParseError` (naming ``source`` and ``url``) from the cause.
    Entry links are resolved against ``url``; guids are kept exactly as sent.
    """
    if _looks_json(content):
        return _parse_json(content, url=url, headers=headers, source=source)
    return _parse_xml(content, url=url, headers=headers, source=source)
