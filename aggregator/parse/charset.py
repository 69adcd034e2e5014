"""Feed bytes -> text: which charset the bytes are really in.

Decided here rather than by feedparser, because feedparser trusts the declared
charset and a feed that declares GB2312 but sends UTF-8 (or the reverse) would
otherwise be stored as mojibake.  Strict UTF-8 validity is the strongest evidence
there is, so bytes that decode as UTF-8 are UTF-8 whatever they claim; otherwise the
declared charsets are tried, then the CJK charsets our sources use.  A guess is only
accepted if the text looks like text; if nothing fits, the feed is decoded with
replacement characters and the problem is recorded, never hidden.

Imports nothing of this package (the bottom of :mod:`aggregator.parse`).
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Mapping

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
    content_type = header(headers, "content-type") or ""
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


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def rewrite_declaration(content: bytes) -> bytes:
    return _XML_DECL.sub(rb"\1\2utf-8\2", content, count=1)
