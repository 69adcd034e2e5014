"""The XML prolog made safe: DTDs neutralised, impossible character references replaced.

DTDs are never processed (see :func:`neutralise_dtd`): entity declarations are the
whole of the billion-laughs, quadratic-blowup and XXE attack surface, feedparser's
own DOCTYPE filter lets quadratic blowups through (and its loose fallback parser
expands them with no limit at all), and real feeds only ever declare entities to
name single characters (``<!ENTITY nbsp "&#160;">``).  So the prolog is rebuilt
with nothing but those single-character entities; every other entity is left
unexpanded, as literal ``&name;`` text, and the feed still parses.

Works on UTF-8 bytes (after :mod:`.charset`); imports nothing of this package.
"""

from __future__ import annotations

import re

# The prolog's tokens (XML 1.0, productions 22-29), each matched whole at a position.
# Quoted literals may hold ">" and "<", so every declaration is read literal by literal.
_LITERALS = rb"(?:\"[^\"]*\"|'[^']*'|[^\"'<>\[\]])*"
_SPACE = re.compile(rb"[ \t\r\n]+")
_PI = re.compile(rb"<\?.*?\?>", re.S)
_COMMENT = re.compile(rb"<!--.*?-->", re.S)
_MARKUP_DECL = re.compile(rb"<!(?:ENTITY|ELEMENT|ATTLIST|NOTATION)[ \t\r\n]" + _LITERALS + rb">")
_PE_REFERENCE = re.compile(rb"%[^;\s<>%&]+;")
_DOCTYPE_OPEN = re.compile(rb"<!DOCTYPE[ \t\r\n]" + _LITERALS + rb"(\[|>)")
_SUBSET_CLOSE = re.compile(rb"\][ \t\r\n]*>")
_ROOT = re.compile(rb"<[A-Za-z_:\x80-\xff]")
# What the old rule cut at, and feedparser's own DOCTYPE filter still does: the first
# "<" + word character.  Used only for a prolog that is not well-formed (whose
# document expat refuses anyway); the kept part then starts at an element, so no
# declaration in it can ever be read as one.
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


def _prolog(document: bytes) -> tuple[int, list[bytes]] | None:
    """``(where the root element starts, the entity declarations)``, or None if malformed.

    The prolog is tokenised as XML: comments, processing instructions and the DOCTYPE
    with its internal subset are each read whole, so markup inside them (a comment
    quoting ``<a href>``, an entity value holding ``<b>``) is never taken for the root.
    """
    entities: list[bytes] = []
    position = 0
    while True:
        token = (
            _SPACE.match(document, position)
            or _PI.match(document, position)
            or _COMMENT.match(document, position)
        )
        if token is not None:
            position = token.end()
            continue
        doctype = _DOCTYPE_OPEN.match(document, position)
        if doctype is None:
            break
        position = doctype.end()
        if doctype.group(1) == b"[":
            subset_end = _internal_subset(document, position, entities)
            if subset_end is None:
                return None
            position = subset_end
    return (position, entities) if _ROOT.match(document, position) else None


def _internal_subset(document: bytes, position: int, entities: list[bytes]) -> int | None:
    """The end of the DOCTYPE whose internal subset starts at ``position``; None if malformed."""
    while True:
        close = _SUBSET_CLOSE.match(document, position)
        if close is not None:
            return close.end()
        token = (
            _SPACE.match(document, position)
            or _PE_REFERENCE.match(document, position)
            or _COMMENT.match(document, position)
            or _PI.match(document, position)
        )
        if token is None:
            token = _MARKUP_DECL.match(document, position)
            if token is None:
                return None
            if token.group(0)[2:8] == b"ENTITY":
                entities.append(token.group(0))
        position = token.end()


def neutralise_dtd(document: bytes) -> tuple[bytes, tuple[str, ...]]:
    """Rebuild the prolog of a UTF-8 XML ``document`` without any DTD processing risk.

    Everything before the root element (DOCTYPE with its internal subset, comments,
    processing instructions) is replaced by the XML declaration plus, if the
    document declared any, the entities that stand for a single character (written
    as that literal character, the one form both expat and feedparser's loose
    parser expand correctly).  External DTDs, ``SYSTEM``/``PUBLIC`` entities,
    parameter entities and entities that expand to more than one character are
    dropped, so expat cannot fetch, read or expand them and feedparser's loose
    fallback parser (which expands the entities it calls safe without any limit) is
    never given them.  References to dropped entities stay in the text as
    ``&name;``.  Returns the document and, when declarations were dropped, a problem
    to record.
    """
    prolog = _prolog(document)
    if prolog is None:
        match = _FIRST_ELEMENT.search(document)
        end = match.start() if match else len(document)
        entities = [document[:end]]  # the old rule: declarations found by pattern alone
        declared = len(_ENTITY_DECL.findall(document[:end].decode("utf-8", "replace")))
    else:
        end, entities = prolog
        declared = len(entities)
    if b"<!" not in document[:end]:  # no DOCTYPE, no comment: the common case
        return document, ()
    declaration = _XML_DECL_ANY.match(document[:end])
    kept: dict[str, str] = {}
    for found in entities:
        text = found.decode("utf-8", "replace")
        for name, _quote, decimal, hexadecimal, literal in _ONE_CHAR_ENTITY.findall(text):
            char = _entity_char(decimal, hexadecimal, literal)
            if char is not None and name not in kept:  # the first declaration wins, as in XML
                kept[name] = char
    rebuilt = (declaration.group(0) if declaration else b"") + b"\n"
    if kept:
        subset = "".join(f'<!ENTITY {name} "{char}">\n' for name, char in kept.items())
        rebuilt += f"<!DOCTYPE feed [\n{subset}]>\n".encode()
    dropped = declared - len(kept)
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


def fix_char_refs(document: bytes) -> bytes:
    """Replace character references beyond U+10FFFF, or to surrogates, with U+FFFD.

    expat refuses them, and feedparser's loose fallback parser then calls ``chr()``
    on them and crashes with a ValueError, losing every entry of the feed.
    """
    return _CHAR_REF.sub(_char_ref, document) if b"&#" in document else document
