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

__all__ = ["as_sanitized", "sanitize", "sanitize_checked"]

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


def sanitize_checked(html: str) -> tuple[str, bool]:
    """``(sanitize(html).strip(), whether sanitizing that again changes nothing)``."""
    out, converged = _fixed_point(html)
    stripped = out.strip()
    return stripped, converged and stripped == out


def as_sanitized(html: str) -> str:
    """libxml2's serialisation spelled as html5ever spells a no-break space."""
    return html.replace("\u00a0", "&nbsp;")


def _fixed_point(html: str) -> tuple[str, bool]:
    """Sanitize until nothing changes: ``(output, whether it is a fixed point)``."""
    out = _sanitize_once(html)
    for _ in range(_MAX_EXTRA_PASSES):
        again = _sanitize_once(out)
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
    link_rel="noopener noreferrer",
)


def _sanitize_once(html: str) -> str:
    return _SANITIZER.clean(html)
