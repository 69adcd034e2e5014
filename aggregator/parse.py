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

JSON Feed (1.0/1.1) is parsed directly into the same shape.
"""

from __future__ import annotations

import codecs
import html
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urljoin

import feedparser

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
    return _SURROGATES.sub("\ufffd", str(value))


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


def _parse_xml(
    content: bytes, *, url: str, headers: Mapping[str, str] | None, source: str | None
) -> RawFeed:
    text, _encoding, problems = decode_feed(content, headers)
    utf8, dtd_problems = neutralise_dtd(_rewrite_declaration(text.encode("utf-8")))
    problems += dtd_problems
    media_type = (_header(headers, "content-type") or "application/xml").split(";")[0].strip()
    response_headers = {"content-type": f"{media_type or 'application/xml'}; charset=utf-8"}
    # No content-location: feedparser would resolve bare-UUID guids against it.
    try:
        result = feedparser.parse(
            _fix_char_refs(utf8),
            response_headers=response_headers,
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as crash:
        # feedparser is third-party code run on hostile bytes; whatever else it trips
        # over must still end as this source's ParseError, not crash the poll.
        raise ParseError("feed parser failed", source=source, url=url) from crash
    exc = result.get("bozo_exception") if result.get("bozo") else None
    entries = tuple(_entry(item, url) for item in result.get("entries") or ())
    survivable = exc is not None and type(exc).__name__ in _SURVIVABLE
    if not entries and (not result.get("version") or (exc is not None and not survivable)):
        cause = exc if isinstance(exc, Exception) else ValueError("no feed found in document")
        raise ParseError("not a readable feed", source=source, url=url) from cause
    all_problems = list(problems)
    # A missing Content-Type is ours to supply, and the encoding override is our own
    # re-encoding to UTF-8: neither is a problem with the feed.
    reportable = exc is not None and type(exc).__name__ != "CharacterEncodingOverride"
    if reportable and not (survivable and _header(headers, "content-type") is None):
        all_problems.append(f"{type(exc).__name__}: {exc}")
    feed = result.get("feed") or {}
    return RawFeed(
        url=url,
        title=_text(feed.get("title")),
        link=_resolve(_text(feed.get("link")), url),
        entries=entries,
        problems=tuple(all_problems),
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
