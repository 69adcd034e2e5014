"""The cleaning steps, each ``(root, ...) -> None`` on the parsed body, in place.

Junk by selector and by text marker, lazy images, embeds, URLs, empty wrappers,
whitespace.  :func:`aggregator.clean.clean_html` runs them in order.  Imports
:mod:`.tree`, :mod:`.selectors` and :mod:`aggregator.urls` (the one link
canonicalisation every stage shares).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from lxml import etree

from aggregator.clean.selectors import drop_steps
from aggregator.clean.tree import (
    SEAM,
    WHITESPACE,
    XML_INVALID,
    drop_node,
    is_blank,
    set_attr,
    unwrap_node,
)
from aggregator.urls import canonical_url, unproxy_image

__all__ = [
    "ALWAYS_DROP",
    "cut_at_markers",
    "drop_empty",
    "drop_selected",
    "drop_sourceless_images",
    "fix_urls",
    "has_usable_src",
    "iframes_to_links",
    "promote_lazy",
    "remove_comments",
    "tidy_whitespace",
    "unwrap_presentational",
    "urls_settled",
]

#: Junk every source may carry: ads, paywall promos, share bars, embed chrome.
ALWAYS_DROP = ("script", "style", "noscript", "template", "object", "embed", "form", "param")
_WRAPPERS = frozenset(
    {
        "div", "span", "p", "section", "article", "aside", "a", "strong", "b", "em", "i",
        "u", "small", "font", "center", "li", "ul", "ol", "figure", "figcaption",
        "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "header", "footer", "nav",
    }
)  # fmt: skip
_MEDIA = ("img", "video", "audio", "picture", "source", "iframe", "table", "hr")
_BLOCKS = frozenset(
    {
        "div", "p", "section", "article", "aside", "ul", "ol", "li", "table", "tr", "td",
        "th", "tbody", "thead", "figure", "figcaption", "blockquote", "h1", "h2", "h3",
        "h4", "h5", "h6", "hr", "br", "pre", "header", "footer", "nav", "img", "dl", "dd",
        "dt", "body", "html",
    }
)  # fmt: skip
_URL_ATTRS = {"a": ("href",), "img": ("src",), "video": ("src", "poster"), "audio": ("src",)}
_URL_ATTRS["source"] = ("src",)
_MEDIA_TAGS = frozenset(_MEDIA)


def remove_comments(root: etree._Element) -> None:
    for node in list(root.iter(etree.Comment, etree.ProcessingInstruction)):
        drop_node(node)


def drop_selected(root: etree._Element, selectors: tuple[str, ...]) -> None:
    for step in drop_steps((*ALWAYS_DROP, *selectors)):
        for node in step.select(root):
            drop_node(node)


def _is_break(node: etree._Element) -> bool:
    return node.tag in ("br", "hr")


def _remove_following(node: etree._Element) -> None:
    """Remove what follows ``node`` inside its parent: its tail and later siblings."""
    node.tail = None
    parent = node.getparent()
    if parent is not None:
        del parent[parent.index(node) + 1 :]


def _strip_breaks_before(root: etree._Element, child: etree._Element | None) -> None:
    """Remove the ``<br>``/``<hr>`` and blank text right before the end of ``root``.

    ``child`` is the last element kept (``None``: only ``root.text`` is left).
    """
    while True:
        if child is None:
            root.text, _stopped = _drop_blank_pieces(root.text)
            return
        child.tail, stopped = _drop_blank_pieces(child.tail)
        if stopped or not isinstance(child.tag, str) or not _is_break(child):
            return
        previous = child.getprevious()
        root.remove(child)
        child = previous


def _drop_blank_pieces(text: str | None) -> tuple[str | None, bool]:
    """Drop the whitespace-only text pieces at the end of ``text``.

    Returns what is left and whether a piece with text stopped the walk back.
    """
    if not text:
        return None, False
    pieces = text.split(SEAM)
    while pieces and not pieces[-1].strip():
        pieces.pop()
    if not pieces:
        return None, False
    return SEAM.join(pieces), True


def cut_at_markers(root: etree._Element, markers: Iterable[str]) -> None:
    """Remove each trailer that a marker starts, and nothing that holds article text.

    The cut starts at the marker's text: it, and what follows it inside the element
    holding it, go.  An element left with no text and no media was junk only (the
    footer ``<div>``), so it goes too, with what follows it inside its parent, and
    so on upwards; the climb stops at the first element that still holds content
    (a wrapper around the article, or the body itself).  The ``<br>``/``<hr>``
    lead-in just before each cut goes with it.  Every occurrence is cut.
    """
    for marker in markers:
        while (hit := _find_text(root, marker)) is not None:
            owner, is_tail = hit
            if is_tail:
                holder = owner.getparent()
                assert holder is not None  # a tail belongs to a child of something
                owner.tail = _before(owner.tail, marker)
                del holder[holder.index(owner) + 1 :]
                _strip_breaks_before(holder, owner)
            else:
                holder = owner
                holder.text = _before(holder.text, marker)
                del holder[:]
                _strip_breaks_before(holder, None)
            while holder is not root and not _holds_content(holder):
                parent = holder.getparent()
                assert parent is not None  # below root
                previous = holder.getprevious()
                _remove_following(holder)
                parent.remove(holder)
                _strip_breaks_before(parent, previous)
                holder = parent


def _before(text: str | None, marker: str) -> str | None:
    """``text`` up to ``marker`` (which it holds)."""
    assert text is not None
    return text[: text.index(marker)] or None


def _holds_content(node: etree._Element) -> bool:
    """Does ``node`` hold any text or media (what a reader would see)?"""
    if not is_blank(etree.tostring(node, method="text", encoding="unicode", with_tail=False)):
        return True
    return next(node.iter(*_MEDIA), None) is not None


_FIRST_TEXT_WITH = etree.XPath("descendant::text()[contains(., $marker)][1]")


def _find_text(root: etree._Element, marker: str) -> tuple[etree._Element, bool] | None:
    """The first text node (document order) holding ``marker``: ``(owner, is_tail)``."""
    # Most bodies hold no marker (every check pass, for one): libxml2 copies out all the
    # text in a fraction of the query's time, and a marker in a text node is in there.
    if marker not in etree.tostring(root, method="text", encoding="unicode", with_tail=False):
        return None
    found = _FIRST_TEXT_WITH(root, marker=marker)
    assert isinstance(found, list)
    for text in found:
        if isinstance(text, etree._ElementUnicodeResult):
            owner = text.getparent()
            if owner is not None:
                return owner, text.is_tail
    return None


def promote_lazy(root: etree._Element, lazy_attrs: Iterable[str]) -> None:
    attrs = tuple(lazy_attrs)
    for img in root.iter("img", "source", "video"):
        names = img.keys()
        lazy = [attr for attr in attrs if attr in names]  # most images have none
        for attr in lazy:
            value = img.get(attr, "").strip()
            if value:
                img.set("src", value)
                break
        for attr in lazy:
            img.attrib.pop(attr, None)


def drop_sourceless_images(root: etree._Element) -> None:
    """Drop each ``<img>`` with no http(s) (or relative) ``src`` left after promotion.

    Such an image shows as an empty box at best (``<img alt="RFI Studio"/>``); the
    sanitizer would strip a ``data:`` or ``javascript:`` source and leave the same.
    """
    for img in list(root.iter("img")):
        if not has_usable_src(img):
            drop_node(img)


def has_usable_src(img: etree._Element) -> bool:
    """Does ``img`` keep its place in :func:`drop_sourceless_images`?"""
    src = img.get("src", "").strip()
    return bool(src) and (
        _PLAIN_HTTP.match(src) is not None or urlsplit(src).scheme.lower() in _IMAGE_SCHEMES
    )


_IMAGE_SCHEMES = frozenset({"", "http", "https"})
#: An ASCII http(s) URL without brackets: urlsplit gives it an http(s) scheme and raises
#: nothing (it raises on unbalanced brackets and on some non-ASCII hosts), so it is
#: kept without the call, the costliest part of this step.
_PLAIN_HTTP = re.compile(r"https?://[\x00-\x5a\x5c\x5e-\x7f]*\Z")


def iframes_to_links(root: etree._Element) -> None:
    """An embed becomes a plain link to it, in place.

    The link is not wrapped in a ``<p>``: an iframe may sit inside a heading or a
    paragraph, where a ``<p>`` is invalid and a second parse would move it, so
    cleaning would not be a fixed point.
    """
    for frame in list(root.iter("iframe")):
        src = frame.get("src")
        if src is not None and src.strip().lower().startswith(("http://", "https://", "//")):
            link = etree.Element("a")
            set_attr(link, "href", src.strip())
            link.text = XML_INVALID.sub("", src.strip())
            link.tail = frame.tail
            parent = frame.getparent()
            if parent is not None:
                parent.replace(frame, link)
        else:
            drop_node(frame)


def fix_urls(root: etree._Element, base_url: str | None, host_aliases: Mapping[str, str]) -> None:
    for node in root.iter(*_URL_ATTRS):
        name = node.tag
        assert isinstance(name, str)
        for attr in _URL_ATTRS[name]:
            value = node.get(attr)
            if value is None:
                continue
            set_attr(node, attr, _fixed_url(value, name, base_url, host_aliases))


def urls_settled(
    root: etree._Element, base_url: str | None, host_aliases: Mapping[str, str]
) -> bool:
    """Would :func:`fix_urls` change nothing?  (Cheap on its own output: the URLs it
    wrote are what it canonicalised, and both functions keep their recent answers.)"""
    for node in root.iter(*_URL_ATTRS):
        name = node.tag
        assert isinstance(name, str)
        for attr in _URL_ATTRS[name]:
            value = node.get(attr)
            if value is not None and _fixed_url(value, name, base_url, host_aliases) != value:
                return False
    return True


def _fixed_url(value: str, tag: str, base_url: str | None, host_aliases: Mapping[str, str]) -> str:
    if tag != "a":
        value = unproxy_image(value)
    return canonical_url(value, base_url, host_aliases=host_aliases)


def unwrap_presentational(root: etree._Element) -> None:
    # With style/class gone a <span>/<font> means nothing; RFA wraps every paragraph.
    for node in list(root.iter("span", "font")):
        unwrap_node(node)


def drop_empty(root: etree._Element) -> None:
    """Drop wrappers holding no text and no media, in one pass, deepest first.

    A wrapper emptied by its children's removal goes too.
    """
    filled: set[etree._Element] = set()
    nodes = list(root.iter())
    for node in reversed(nodes):
        tag = node.tag
        if not isinstance(tag, str):
            continue
        full = not is_blank(node.text)
        if not full:
            for child in node:
                if child in filled or child.tag in _MEDIA_TAGS or not is_blank(child.tail):
                    full = True
                    break
        if full:
            filled.add(node)
        elif tag in _WRAPPERS and node is not root:
            drop_node(node)


def tidy_whitespace(root: etree._Element) -> bool:
    """Collapse whitespace runs; drop whitespace-only text between blocks.

    feedx bodies are indented with runs of spaces and ``&nbsp;`` padding; keeping
    them would make two fetches of one article differ only in layout noise.

    Returns whether tidying the body again, as a fresh parse of its markup reads it,
    would change nothing.  Tidying is idempotent on a text, but a text where two
    met (a seam) is tidied piece by piece, and a parse reads the pieces as one
    (``"a "`` and ``" b"`` give ``"a  b"``, which tidies to ``"a b"``): those are
    tidied once more, whole, to see.
    """
    settled = True
    in_pre: set[etree._Element] = set()
    for node in root.iter():
        tag = node.tag
        if not isinstance(tag, str):
            continue
        if tag == "pre" or (in_pre and node.getparent() in in_pre):
            in_pre.add(node)  # its text and its children's tails are left alone
            continue
        block = tag in _BLOCKS
        text = node.text
        if text and _UNTIDY.search(text):
            after = node[0] if len(node) else None
            tidy = _tidy(text, block, None, after)
            if tidy != text:
                node.text = tidy
            if settled and tidy and SEAM in text:
                settled = _tidy(tidy, block, None, after) == tidy
        for child in node:
            text = child.tail
            if text and _UNTIDY.search(text):
                after = child.getnext()
                tidy = _tidy(text, block, child, after)
                if tidy != text:
                    child.tail = tidy
                if settled and tidy and SEAM in text:
                    settled = _tidy(tidy, block, child, after) == tidy
    return settled


#: What :func:`_tidy` can change: whitespace and seams.  A text without any (most of
#: an article's: Chinese paragraphs have no spaces) comes back as it was, so it is
#: not handed to it: one regex scan in C instead of two calls and a neighbour's proxy.
_UNTIDY = re.compile(f"[ \t\r\n\f\u00a0\u3000{SEAM}]")


def _is_block(node: etree._Element | None) -> bool:
    return node is None or node.tag in _BLOCKS


def _tidy(
    raw: str,
    block: bool,
    before: etree._Element | None,
    after: etree._Element | None,
) -> str | None:
    """Tidy one text node of lxml's, piece by piece where it holds seams.

    ``block``: the node's parent is a block element.
    """
    if SEAM not in raw:
        return _tidy_piece(raw, block, before, after, text_before=False, text_after=False) or None
    pieces = raw.split(SEAM)
    kept: list[str] = []
    last = len(pieces) - 1
    for index, piece in enumerate(pieces):
        # A neighbouring piece is a text sibling: there, and not a block.
        text = _tidy_piece(
            piece, block, before, after, text_before=bool(kept), text_after=index < last
        )
        if text:
            kept.append(text)
    return "".join(kept) or None


def _tidy_piece(
    raw: str,
    parent_is_block: bool,
    before: etree._Element | None,
    after: etree._Element | None,
    *,
    text_before: bool,
    text_after: bool,
) -> str:
    text = WHITESPACE.sub(" ", raw)
    if not parent_is_block:
        return text
    if text == " " and (
        (not text_before and _is_block(before)) or (not text_after and _is_block(after))
    ):
        return ""
    # Padding just inside a block renders as nothing; drop it for stable output.
    if not text_before and before is None:
        text = text.lstrip(" ")
    if not text_after and after is None:
        text = text.rstrip(" ")
    return text
