"""联合早报 Zaobao (feedx full text): Singapore time, shuffled paragraphs.

The spec carries the junk rules and the Asia/Singapore date policy (the +8 h bug:
SGT wall-clock labelled UTC shows up as a publish time in the future).  The only
code is :func:`restore_data_s_order`, because the anti-scraping shuffle cannot be
undone by a selector.
"""

from __future__ import annotations

import base64
import binascii
import functools
from typing import TypeVar

from lxml import etree

from aggregator.adapters import register
from aggregator.adapters.generic import FEEDX_CLEAN, AdapterSpec, GenericAdapter
from aggregator.dates import DatePolicy, UrlDatePattern

__all__ = ["SPEC", "STORY_DATE", "decode_data_s", "restore_data_s_order", "zaobao"]

#: Bare and short hosts of the same editions; zaobao.com (CN/HK) and zaobao.com.sg
#: (SG) are different editions with different article ids, so they stay apart.
HOST_ALIASES = {
    "zaobao.com": "www.zaobao.com",
    "zaobao.com.sg": "www.zaobao.com.sg",
    "zaobao.sg": "www.zaobao.com.sg",
    "www.zaobao.sg": "www.zaobao.com.sg",
}


def decode_data_s(value: str | None) -> int | None:
    """The true rank hidden in a ``data-s`` value, or ``None`` if it does not decode.

    Format (worked out from zaobao-1.xml, matching RSSHub's ``orderContent``): three
    junk characters, then the rank's decimal digits base32-encoded
    (``Ke8GE======`` -> ``GE======`` -> ``b"1"``).
    """
    if not value or len(value) <= 3:
        return None
    return _decode_rank(value[3:])


@functools.lru_cache(maxsize=1024)
def _decode_rank(encoded: str) -> int | None:
    # Cached: b32decode is pure Python, and every article spells its ranks the same
    # way (rank 1 is always "GE======"), so a few hundred entries cover them all.
    try:
        decoded = base64.b32decode(encoded)
    except (binascii.Error, ValueError):
        return None
    text = decoded.decode("ascii", "replace")
    return int(text) if text.isdigit() else None


def restore_data_s_order(root: etree._Element) -> None:
    """Put ``data-s`` blocks back in their true order, in the slots they occupy.

    Only when every ``data-s`` sibling under a parent decodes to a distinct rank:
    a partial or ambiguous decode would scramble a correct article, so it is left
    alone.  Siblings without ``data-s`` (feedx's empty leading ``<div>``) keep their
    positions, and so does the text between blocks.  ``root`` is the lxml element
    :func:`~aggregator.clean.clean_html` hands its hook.
    """
    parents: dict[etree._Element, list[etree._Element]] = {}
    for block in root.iterfind(".//*[@data-s]"):
        parent = block.getparent()
        if parent is not None:
            parents.setdefault(parent, []).append(block)
    for parent, blocks in parents.items():
        ordered = _ordered(blocks, [block.get("data-s") for block in blocks])
        if ordered is None:
            continue
        # The blocks trade places; each slot keeps its position and the text after it.
        children = list(parent)
        slots = [(children.index(block), block.tail) for block in blocks]
        for (index, tail), block in zip(slots, ordered, strict=True):
            children[index] = block
            block.tail = tail
        parent[:] = children


B = TypeVar("B")


def _ordered(blocks: list[B], values: list[str | None]) -> list[B] | None:
    """``blocks`` sorted by their decoded ranks, or None when they are not all distinct."""
    ranks = [decode_data_s(value) for value in values]
    if len(blocks) < 2 or None in ranks or len(set(ranks)) != len(ranks):
        return None
    return [block for _rank, block in sorted(zip(ranks, blocks, strict=True), key=_first)]


def _first(pair: tuple[int | None, object]) -> int:
    return pair[0] or 0


#: The Singapore day of publication, in every article URL.
STORY_DATE = UrlDatePattern(
    r"story(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})-\d+", "Asia/Singapore"
)

SPEC = AdapterSpec(
    site_hosts=("zaobao.com", "zaobao.com.sg", "zaobao.sg"),
    clean=FEEDX_CLEAN.extended(
        drop=(
            "section:has(> h4:-soup-contains('延伸阅读'))",
            ".further-reading",
            "#video-freemium-player",
            ".bff-google-ad",
            ".bff-recommend-article",
            ".bff-inline-image-expand-icon",
            "img[alt='expend icon']",
            "button",
            "astro-island",
        ),
        host_aliases=HOST_ALIASES,
        reorder=restore_data_s_order,
    ),
    dates=DatePolicy(
        timezone="Asia/Singapore",
        repair_future_skew=True,
        url_patterns=(STORY_DATE,),
        story_date=STORY_DATE,
    ),
    host_aliases=HOST_ALIASES,
)

zaobao = register("zaobao")(GenericAdapter(SPEC))
