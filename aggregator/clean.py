"""HTML body cleaning: pure ``str -> str`` steps driven by a :class:`CleanSpec`.

Per-site junk is described as data (CSS selectors, text markers) so that adding a
source means writing a spec, not code; the one thing a spec cannot say (Zaobao's
``data-s`` paragraph order) comes in as the ``reorder`` hook.

The allowlist sanitizer (:func:`sanitize`, nh3) always runs last: every earlier
step works on untrusted markup and may leave anything behind, so safety must not
depend on them.  Policy, decided here once:

* no ``script``/``style``/``iframe``/``object``/``embed``/``form`` (an ``iframe`` with
  an http(s) ``src`` becomes a plain link first, so a video is not silently lost);
* no ``on*`` handlers, no ``style``/``class``/``id`` attributes (site chrome);
* URL schemes: http, https, mailto only -- ``data:`` is refused even for images
  (tracking pixels and multi-megabyte blobs; no source we read needs it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import nh3
from bs4 import BeautifulSoup, Comment, Tag
from bs4.element import NavigableString

from aggregator.urls import canonical_url, unproxy_image

__all__ = [
    "CleanSpec",
    "Reorder",
    "clean_html",
    "extract_date_line",
    "sanitize",
    "text_content",
]

#: Mutates the parsed body in place; runs first, before anything is dropped.
Reorder = Callable[[Tag], None]

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
    out = _sanitize_once(html)
    for _ in range(_MAX_EXTRA_PASSES):
        again = _sanitize_once(out)
        if again == out:
            break
        out = again
    return out


def _sanitize_once(html: str) -> str:
    return nh3.clean(
        html,
        tags=set(_ALLOWED_TAGS),
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes=set(_URL_SCHEMES),
        attribute_filter=_filter_attribute,
        strip_comments=True,
        link_rel="noopener noreferrer",
    )


#: Junk every source may carry: ads, paywall promos, share bars, embed chrome.
_ALWAYS_DROP = ("script", "style", "noscript", "template", "object", "embed", "form", "param")
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
_WHITESPACE = re.compile(r"[ \t\r\n\f\u00a0\u3000]+")
#: An element with nothing but whitespace inside, as nh3 serialises it.
_EMPTY_ELEMENT = re.compile(r"<([a-z0-9]+)\b[^>]*>(?:[ \t\r\n\f\u00a0\u3000]|&nbsp;)*</\1>")


@dataclass(frozen=True)
class CleanSpec:
    """What to strip from one source's bodies, as data.

    ``drop``: CSS selectors (soupsieve, so ``:has()`` and ``:-soup-contains()`` work)
    whose matches are removed with their content.
    ``cut_markers``: text that starts a trailer (the feedx ``获取更多RSS`` footer):
    the block holding it, everything after it, and the ``<br>``/``<hr>`` just before
    it are removed.
    ``lazy_attrs``: attributes holding the real image URL of a lazy-loaded image.
    ``host_aliases``: mirror host -> canonical host, applied to links in the body.
    ``reorder``: code hook for fixes that cannot be data (runs first).
    """

    drop: tuple[str, ...] = ()
    cut_markers: tuple[str, ...] = ()
    lazy_attrs: tuple[str, ...] = ("data-src", "data-original", "data-lazy-src")
    host_aliases: Mapping[str, str] = field(default_factory=dict)
    reorder: Reorder | None = None

    def extended(
        self,
        *,
        drop: Iterable[str] = (),
        cut_markers: Iterable[str] = (),
        host_aliases: Mapping[str, str] | None = None,
        reorder: Reorder | None = None,
    ) -> CleanSpec:
        """A copy with more rules; lets sources share a base spec without copy-paste."""
        return CleanSpec(
            drop=self.drop + tuple(drop),
            cut_markers=self.cut_markers + tuple(cut_markers),
            lazy_attrs=self.lazy_attrs,
            host_aliases={**self.host_aliases, **(host_aliases or {})},
            reorder=reorder or self.reorder,
        )


_DATE_LINE = re.compile(
    r"^\s*<div>\s*(?:<i>)?\s*(?P<text>"
    r"\d{1,2}/\d{1,2}/\d{4}\s*-\s*\d{1,2}:\d{2}"
    r"|[A-Z][a-z]{2},\s*\d{1,2}\s+[A-Z][a-z]{2}\s+\d{4}\s+\d{1,2}:\d{2}(?::\d{2})?\s*[A-Za-z0-9+-]*"
    r")\s*(?:</i>)?\s*</div>",
)


def extract_date_line(html: str) -> tuple[str | None, str]:
    """Split off a feedx leading date line: ``(date text or None, rest of body)``.

    feedx prepends ``<div><i>Mon, 03 Jul 2023 10:13:55 GMT</i></div>`` (VOA) or
    ``<div>31/01/2024 - 19:33</div>`` (RFI).  It is chrome in the body but the only
    date some items have, so it is handed back for :mod:`aggregator.dates`.
    """
    match = _DATE_LINE.match(html)
    if not match:
        return None, html
    return match.group("text").strip(), html[match.end() :]


def text_content(html: str) -> str:
    """Visible text with whitespace collapsed (script/style text excluded)."""
    soup = BeautifulSoup(html, "lxml")
    for tag in soup.find_all(["script", "style", "template"]):
        tag.decompose()
    return _WHITESPACE.sub(" ", soup.get_text(" ")).strip()


def _parse(html: str) -> tuple[BeautifulSoup, Tag]:
    soup = BeautifulSoup(f"<div id='aggregator-root'>{html}</div>", "lxml")
    root = soup.find("div", id="aggregator-root")
    assert isinstance(root, Tag)  # we just wrote it
    return soup, root


def _remove_comments(root: Tag) -> None:
    for comment in root.find_all(string=lambda node: isinstance(node, Comment)):
        comment.extract()


def _drop_selected(root: Tag, selectors: Iterable[str]) -> None:
    for selector in (*_ALWAYS_DROP, *selectors):
        for tag in root.select(selector):
            tag.decompose()


def _is_break(node: object) -> bool:
    if isinstance(node, Tag):
        return node.name in ("br", "hr")
    return isinstance(node, NavigableString) and not node.strip()


def _cut_at_markers(root: Tag, markers: Iterable[str]) -> None:
    for marker in markers:
        hit = root.find(string=lambda text, marker=marker: bool(text and marker in text))
        if hit is None:
            continue
        # The block to cut from: the marker's ancestor that is a direct child of root.
        node: Tag | NavigableString = hit
        while node.parent is not None and node.parent is not root:
            node = node.parent
        if node.parent is not root:
            continue
        for sibling in list(node.next_siblings):
            sibling.extract()
        previous = node.previous_sibling
        node.extract()
        while previous is not None and _is_break(previous):
            before = previous.previous_sibling
            previous.extract()
            previous = before


def _promote_lazy(root: Tag, lazy_attrs: Iterable[str]) -> None:
    attrs = tuple(lazy_attrs)
    for img in root.find_all(["img", "source", "video"]):
        for attr in attrs:
            value = img.get(attr)
            if isinstance(value, str) and value.strip():
                img["src"] = value.strip()
                break
        for attr in attrs:
            if attr in img.attrs:
                del img[attr]


def _iframes_to_links(root: Tag, soup: BeautifulSoup) -> None:
    """An embed becomes a plain link to it, in place.

    The link is not wrapped in a ``<p>``: an iframe may sit inside a heading or a
    paragraph, where a ``<p>`` is invalid and a second parse would move it, so
    cleaning would not be a fixed point.
    """
    for frame in root.find_all("iframe"):
        src = frame.get("src")
        if isinstance(src, str) and src.strip().lower().startswith(("http://", "https://", "//")):
            link = soup.new_tag("a", href=src.strip())
            link.string = src.strip()
            frame.replace_with(link)
        else:
            frame.decompose()


def _fix_urls(root: Tag, base_url: str | None, host_aliases: Mapping[str, str]) -> None:
    for name, attrs in _URL_ATTRS.items():
        for tag in root.find_all(name):
            for attr in attrs:
                value = tag.get(attr)
                if not isinstance(value, str):
                    continue
                if name != "a":
                    value = unproxy_image(value)
                tag[attr] = canonical_url(value, base_url, host_aliases=host_aliases)


def _unwrap_presentational(root: Tag) -> None:
    # With style/class gone a <span>/<font> means nothing; RFA wraps every paragraph.
    for tag in root.find_all(["span", "font"]):
        tag.unwrap()


def _is_empty(tag: Tag) -> bool:
    if tag.find(_MEDIA) is not None:
        return False
    return not _WHITESPACE.sub("", tag.get_text())


def _drop_empty(root: Tag) -> None:
    # Deepest first, so a wrapper emptied by its children's removal goes too.
    for tag in reversed(root.find_all(_WRAPPERS)):
        if tag.name in _WRAPPERS and _is_empty(tag):
            tag.decompose()


def _tidy_whitespace(root: Tag) -> None:
    """Collapse whitespace runs; drop whitespace-only text between blocks.

    feedx bodies are indented with runs of spaces and ``&nbsp;`` padding; keeping
    them would make two fetches of one article differ only in layout noise.
    """
    for node in list(root.find_all(string=True)):
        if not isinstance(node, NavigableString) or isinstance(node, Comment):
            continue
        if node.find_parent("pre") is not None:
            continue
        text = _WHITESPACE.sub(" ", str(node))
        if text == " ":
            before, after = node.previous_sibling, node.next_sibling
            parent = node.parent
            at_block_edge = (before is None or getattr(before, "name", None) in _BLOCKS) or (
                after is None or getattr(after, "name", None) in _BLOCKS
            )
            if at_block_edge and parent is not None and parent.name in _BLOCKS:
                node.extract()
                continue
        parent = node.parent
        if parent is not None and parent.name in _BLOCKS:
            # Padding just inside a block renders as nothing; drop it for stable output.
            if node.previous_sibling is None:
                text = text.lstrip(" ")
            if node.next_sibling is None:
                text = text.rstrip(" ")
        if not text:
            node.extract()
        elif text != str(node):
            node.replace_with(NavigableString(text))


def clean_html(html: str, *, base_url: str | None = None, spec: CleanSpec | None = None) -> str:
    """Run the whole chain on one body and return safe HTML.

    Order matters: reorder before anything is dropped (Zaobao's ranks count the ad
    blocks too); drop junk before resolving URLs (cheaper, and junk URLs never get
    canonicalised); drop empty wrappers after everything that can empty them;
    sanitize last.
    """
    spec = spec or CleanSpec()
    if not html or not html.strip():
        return ""
    soup, root = _parse(html)
    if spec.reorder is not None:
        spec.reorder(root)
    _remove_comments(root)
    _drop_selected(root, spec.drop)
    _cut_at_markers(root, spec.cut_markers)
    _promote_lazy(root, spec.lazy_attrs)
    _iframes_to_links(root, soup)
    _fix_urls(root, base_url, spec.host_aliases)
    _drop_empty(root)
    _unwrap_presentational(root)
    _tidy_whitespace(root)
    inner = root.decode_contents().strip()
    out = sanitize(inner).strip()
    if _EMPTY_ELEMENT.search(out):
        # lxml and html5ever (nh3) nest some markup differently: lxml keeps
        # "<p><section>x" as one paragraph, html5ever closes it and returns
        # "<p></p>x<p></p>".  Wrappers the sanitizer emptied are dropped here, reading
        # its own (well-formed) output with html.parser, which changes no nesting;
        # without this a second clean_html of the result would not be a no-op.
        soup = BeautifulSoup(f"<div id='aggregator-root'>{out}</div>", "html.parser")
        again = soup.find("div", id="aggregator-root")
        assert isinstance(again, Tag)
        _drop_empty(again)
        _tidy_whitespace(again)
        out = sanitize(again.decode_contents().strip()).strip()
    return out
