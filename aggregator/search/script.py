"""Simplified and Traditional Chinese for readers: ``?script=hans|hant``.

Unlike the search fold (one character for one character, so a match stays a match),
this converts the way a reader expects: OpenCC's phrase dictionaries first, then its
character table, so 头发 becomes 頭髮 and not 頭發.  Only text is converted: the
markup of cleaned article HTML (tags, attribute values, URLs in them) passes through
byte for byte, which a converter fed the whole fragment would not promise.
"""

from __future__ import annotations

import functools
import re
import threading
from typing import TYPE_CHECKING, Literal

from aggregator.search.text import CJK, _t2s_table

# OpenCC (a C++ library, 2 MB) is imported when a text is first converted: the
# daemon serves feeds and polls without ever converting one.
if TYPE_CHECKING:
    import opencc

__all__ = ["SCRIPTS", "Script", "chinese_script", "convert", "convert_html"]

Script = Literal["hans", "hant"]
SCRIPTS: tuple[Script, ...] = ("hans", "hant")
_CONFIG: dict[Script, str] = {"hans": "t2s", "hant": "s2t"}
_TAG_OR_COMMENT = re.compile(r"(<!--.*?-->|<[^>]*>)", re.DOTALL)
_HAN = re.compile(f"[{CJK}]")
_SAMPLE = 2000  # characters looked at to tell a text's script
_local = threading.local()


def _converter(script: Script) -> opencc.OpenCC:
    """One converter per thread and script: the pages are served from a thread pool,
    and sharing one converter object between threads is not documented as safe."""
    converters: dict[Script, opencc.OpenCC] = _local.__dict__.setdefault("converters", {})
    if script not in converters:
        import opencc

        converters[script] = opencc.OpenCC(_CONFIG[script])
    return converters[script]


def convert(text: str, script: Script) -> str:
    """``text`` in ``script``; text without Han characters is returned as it is."""
    return _converter(script).convert(text) if _HAN.search(text) else text


def convert_html(fragment: str, script: Script) -> str:
    """``fragment`` with its text nodes converted and every tag and comment untouched."""
    parts = _TAG_OR_COMMENT.split(fragment)
    # split() with a group alternates text (even indexes) and tags (odd indexes).
    parts[::2] = [convert(text, script) for text in parts[::2]]
    return "".join(parts)


@functools.cache
def _simplified_only() -> frozenset[str]:
    """Characters that Traditional text does not use (s2t changes them)."""
    import opencc

    converter = opencc.OpenCC("s2t")
    return frozenset(
        char for point in range(0x4E00, 0xA000) if (char := chr(point)) != converter.convert(char)
    )


def chinese_script(text: str) -> Script | None:
    """The script Chinese ``text`` is written in (its ``lang`` is zh-Hans or zh-Hant),
    or ``None`` when it has no Han characters.

    Judged by characters only one script uses, over the first few thousand
    characters: a Traditional text quoting a Simplified name stays Traditional."""
    sample = text[:_SAMPLE]
    han = _HAN.findall(sample)
    if not han:
        return None
    simplified_only, traditional = _simplified_only(), _t2s_table()
    simplified = sum(1 for char in han if char in simplified_only)
    return "hant" if sum(1 for char in han if ord(char) in traditional) > simplified else "hans"
