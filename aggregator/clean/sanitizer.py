"""The sanitizer policy (nh3/ammonia allowlist), decided here once.

* no ``script``/``style``/``iframe``/``object``/``embed``/``form`` (an ``iframe`` with
  an http(s) ``src`` becomes a plain link first, so a video is not silently lost);
* no ``on*`` handlers, no ``style``/``class``/``id`` attributes (site chrome);
* URL schemes: http, https, mailto only -- ``data:`` is refused even for images
  (tracking pixels and multi-megabyte blobs; no source we read needs it).

It always runs last, so safety never depends on the steps before it.  Imports
nothing of the cleaner.
"""

from __future__ import annotations

import re

import nh3
from lxml import etree

__all__ = [
    "KEPT_ATTRIBUTES",
    "as_sanitized",
    "sanitize",
    "sanitize_checked",
    "sanitize_once",
    "strip_attributes",
]

_ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "audio", "b", "blockquote", "br", "caption", "cite", "code", "col",
        "colgroup", "dd", "del", "details", "dfn", "div", "dl", "dt", "em", "figcaption",
        "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li",
        "mark", "ol", "p", "picture", "pre", "q", "s", "samp", "small", "source", "span",
        "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead",
        "time", "tr", "u", "ul", "video",
    }
)  # fmt: skip
_ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "video": {"src", "poster", "controls", "width", "height"},
    "audio": {"src", "controls"},
    "source": {"src", "type"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "time": {"datetime"},
    "ol": {"start"},
}
_URL_SCHEMES = {"http", "https", "mailto"}
_DIMENSION = re.compile(r"^\d{1,5}$")
#: Kept on every allowed tag: ammonia's default generic attributes, which nh3 leaves in
#: place when ``attributes`` has no ``"*"`` entry.
_GENERIC_ATTRIBUTES = frozenset({"lang", "title"})
_LINK_REL = "noopener noreferrer"
#: Every attribute name sanitized markup can hold (``rel``: the sanitizer sets it on links).
KEPT_ATTRIBUTES = frozenset({"rel"}.union(_GENERIC_ATTRIBUTES, *_ALLOWED_ATTRIBUTES.values()))


def _filter_attribute(_element: str, attribute: str, value: str) -> str | None:
    # width="100%" is layout, not content; only plain pixel sizes survive.
    if attribute in ("width", "height"):
        return value if _DIMENSION.match(value.strip()) else None
    return value


#: Re-sanitizing passes allowed before the output is taken as it is (two always suffice
#: in practice; the bound only guarantees termination).
_MAX_EXTRA_PASSES = 3


def sanitize(html: str) -> str:
    """Allowlist-sanitize ``html``; idempotent, and keeps all text outside script/style.

    One nh3 pass is not idempotent: html5ever can serialise a tree that parses
    differently (``<p><object></p>`` comes out as ``<p><p></p></p>``, which the next
    parse flattens to three paragraphs).  Stored bodies are re-sanitized by
    ``renormalize`` and compared by fingerprint, so the pass is repeated until the
    output is a fixed point: sanitizing twice then really changes nothing.
    """
    return _fixed_point(html)[0]


def sanitize_checked(html: str, *, once: str | None = None) -> tuple[str, bool]:
    """``(sanitize(html).strip(), whether sanitizing that again changes nothing)``.

    ``once``: :func:`sanitize_once` of ``html``, when the caller has it already.
    """
    out, converged = _fixed_point(html, once)
    stripped = out.strip()
    return stripped, converged and stripped == out


def as_sanitized(html: str) -> str:
    """libxml2's serialisation spelled as html5ever spells a no-break space."""
    return html.replace("\u00a0", "&nbsp;")


def strip_attributes(root: etree._Element) -> None:
    """Drop, below ``root``, each attribute the sanitizer would drop; set its ``rel``.

    Only on the tags it keeps, and by name and size only (a URL's scheme is left to
    it): it would drop them all the same, so its output does not change, but its
    input is then often its output already, which :func:`aggregator.clean.clean_html`
    takes as a sign the markup is settled.  Not at all in a body with SVG or MathML:
    html5ever reads attributes inside those its own way (``xlink:href`` is an
    ``href``), so what it keeps there is left to it.
    """
    if next(root.iter("svg", "math"), None) is not None:
        return
    for node in _WITH_ATTRIBUTES(root):
        tag = node.tag
        if tag not in _ALLOWED_TAGS:
            continue
        assert isinstance(tag, str)  # an element
        attrib = node.attrib
        if attrib:
            allowed = _ALLOWED_ATTRIBUTES.get(tag, ())
            for name, value in attrib.items():
                kept = name in allowed or name in _GENERIC_ATTRIBUTES
                if not kept or _filter_attribute(tag, name, value) is None:
                    del attrib[name]
        if tag == "a":
            attrib["rel"] = _LINK_REL


#: The elements :func:`strip_attributes` may change (most have no attribute at all).
_WITH_ATTRIBUTES = etree.XPath("descendant::*[@* or self::a]")


def _fixed_point(html: str, once: str | None = None) -> tuple[str, bool]:
    """Sanitize until nothing changes: ``(output, whether it is a fixed point)``."""
    out = sanitize_once(html) if once is None else once
    for _ in range(_MAX_EXTRA_PASSES):
        again = sanitize_once(out)
        if again == out:
            return out, True
        out = again
    return out, False


#: Built once: ``nh3.clean`` converts the whole policy to ammonia's on every call, which
#: cost as much as the sanitizing itself.
_SANITIZER = nh3.Cleaner(
    tags=set(_ALLOWED_TAGS),
    attributes=_ALLOWED_ATTRIBUTES,
    url_schemes=set(_URL_SCHEMES),
    attribute_filter=_filter_attribute,
    strip_comments=True,
    link_rel=_LINK_REL,
)


def sanitize_once(html: str) -> str:
    """One pass of the sanitizer (not always a fixed point: see :func:`sanitize`)."""
    return _SANITIZER.clean(html)
