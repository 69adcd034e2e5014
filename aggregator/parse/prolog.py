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


def fix_char_refs(document: bytes) -> bytes:
    """Replace character references beyond U+10FFFF, or to surrogates, with U+FFFD.

    expat refuses them, and feedparser's loose fallback parser then calls ``chr()``
    on them and crashes with a ValueError, losing every entry of the feed.
    """
    return _CHAR_REF.sub(_char_ref, document) if b"&#" in document else document
