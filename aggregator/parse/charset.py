"""Feed bytes -> text: which charset the bytes are really in.

Decided here rather than by feedparser, because feedparser trusts the declared
charset and a feed that declares GB2312 but sends UTF-8 (or the reverse) would
otherwise be stored as mojibake.  The evidence, strongest first:

1. A byte-order mark, or the first bytes of an XML document in UTF-16/UTF-32
   without one (XML 1.0, appendix F): those bytes cannot be anything else.
2. Strict UTF-8 validity: non-ASCII bytes that decode as UTF-8 almost never are
   another charset, so they are UTF-8 whatever the feed claims.
3. The declared charset (HTTP header, then XML declaration) when the bytes decode
   with it.  The one exception is a single-byte Latin declaration (which decodes
   any bytes at all) over bytes that charset-normalizer confidently reads as a CJK
   multi-byte charset: Chinese feeds mislabelled ISO-8859-1 are common, Latin text
   that also passes for clean GB18030 is not.
4. Detection by charset-normalizer when nothing is declared or nothing declared fits.

Every repair (a declaration overridden, a charset guessed, bytes replaced) is
returned as a problem, never hidden.  Imports nothing of this package.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping

_XML_DECL = re.compile(rb"^(\s*<\?xml[^>]*?encoding\s*=\s*)([\"'])([A-Za-z0-9._:-]+)\2", re.I)
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.I)
# UTF-32 first: its little-endian mark begins with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# "<" and the next character as each wide encoding writes them (XML 1.0, appendix F).
_WIDE_STARTS = (
    (re.compile(rb"\A<\0\0\0"), "utf-32-le"),
    (re.compile(rb"\A\0\0\0<"), "utf-32-be"),
    (re.compile(rb"\A<\0[^\0]\0"), "utf-16-le"),
    (re.compile(rb"\A\0<\0[^\0]"), "utf-16-be"),
)
_EQUIVALENT = {
    "utf8": "utf-8",
    "gb2312": "gb18030",  # supersets: a GB2312/GBK declaration is read as GB18030
    "gbk": "gb18030",
    "cp936": "gb18030",
    "x-gbk": "gb18030",
}
# Single-byte charsets that map (nearly) every byte to a character, so that decoding
# with them proves nothing: they are the ones a CJK feed is mislabelled with.
_LATIN = frozenset(
    {"ascii", "cp1250", "cp1252", "cp1254", "cp1257", "cp1258", "mac-roman", "cp437", "cp850"}
    | {f"iso8859-{n}" for n in (1, 2, 3, 4, 9, 10, 13, 14, 15, 16)}
)
# What detection may answer: the multi-byte charsets of CJK feeds, and the Western
# single-byte one.  Left to itself, charset-normalizer also names DOS and Baltic code
# pages for a few stray bytes, which would turn broken UTF-8 into confident nonsense.
_CJK = ("gb18030", "big5", "euc_kr", "cp949", "shift_jis", "cp932", "euc_jp")
_DETECTABLE = (*_CJK, "cp1252")
# charset-normalizer's "chaos" (share of the text that looks mis-decoded) above which
# a guess is not trusted.
_MAX_CHAOS = 0.1


def _norm_charset(name: str | None) -> str | None:
    if not name:
        return None
    lowered = name.strip().lower().replace("_", "-")
    lowered = _EQUIVALENT.get(lowered, lowered)
    try:
        return codecs.lookup(lowered).name
    except LookupError:
        return None


def _detect(content: bytes, candidates: tuple[str, ...]) -> str | None:
    """The charset charset-normalizer is confident of, among ``candidates``; else None.

    Short texts often decode cleanly in several CJK charsets; our sources are Chinese,
    so among equally clean readings GB18030, then Big5, wins.
    """
    # Imported here: most feeds are UTF-8 or declare what they are and never get
    # this far, and its tables were 2 MB of every process that parses.
    import charset_normalizer

    matches = charset_normalizer.from_bytes(content, cp_isolation=list(candidates))
    clean = [match for match in matches if match.chaos <= _MAX_CHAOS]
    if not clean:
        return None
    least = min(match.chaos for match in clean)
    found = [_norm_charset(match.encoding) for match in clean if match.chaos == least]
    for preferred in ("gb18030", "big5"):
        if preferred in found:
            return preferred
    return found[0]


def _strict(content: bytes, encoding: str) -> str | None:
    try:
        return content.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _wide(content: bytes) -> tuple[str, str, tuple[str, ...]] | None:
    """Bytes that can only be UTF-16/UTF-32, by their byte-order mark or first characters."""
    for bom, encoding in _BOMS:
        if content.startswith(bom):
            return _forced(content[len(bom) :], encoding)
    for start, encoding in _WIDE_STARTS:
        if start.match(content):
            return _forced(content, encoding)
    return None


def _forced(content: bytes, encoding: str) -> tuple[str, str, tuple[str, ...]]:
    text = _strict(content, encoding)
    if text is not None:
        return text, encoding, ()
    problem = f"undecodable content: invalid {encoding} bytes replaced"
    return content.decode(encoding, "replace"), encoding, (problem,)


def decode_feed(
    content: bytes, headers: Mapping[str, str] | None = None
) -> tuple[str, str, tuple[str, ...]]:
    """Decode feed bytes: ``(text, encoding used, problems)``.  Never mojibake."""
    wide = _wide(content)
    if wide is not None:
        return wide
    header_match = _CHARSET.search(header(headers, "content-type") or "")
    declared_http = _norm_charset(header_match.group(1)) if header_match else None
    decl_match = _XML_DECL.match(content[:200])
    declared_xml = _norm_charset(decl_match.group(3).decode("ascii")) if decl_match else None
    declared = list(dict.fromkeys(name for name in (declared_http, declared_xml) if name))
    said = "/".join(declared) or "none"

    text = _strict(content, "utf-8")
    if text is not None:
        if text.isascii() or declared in ([], ["utf-8"]):
            return text, "utf-8", ()
        return text, "utf-8", (f"charset mismatch: declared {said} but the content is UTF-8",)
    for name in declared:
        text = _strict(content, name)
        if text is None:
            continue
        if name in _LATIN:
            cjk = _detect(content, _CJK)
            if cjk is not None:
                problem = f"charset mismatch: declared {said} but the content is {cjk}"
                return content.decode(cjk), cjk, (problem,)
        return text, name, ()
    guess = _detect(content, _DETECTABLE)
    if guess is not None:
        problem = (
            f"charset mismatch: declared {said} but the content is {guess}"
            if declared
            else f"no charset declared: detected {guess}"
        )
        return content.decode(guess), guess, (problem,)
    problem = f"undecodable content: no charset fits (declared {said}); invalid bytes replaced"
    return content.decode("utf-8", "replace"), "utf-8", (problem,)


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def rewrite_declaration(content: bytes) -> bytes:
    return _XML_DECL.sub(rb"\1\2utf-8\2", content, count=1)
