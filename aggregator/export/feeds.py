"""Merged-feed output: stored articles -> RSS 2.0, Atom 1.0 and JSON Feed 1.1 bytes.

Pure: no clock, no store, no URLs invented here; the caller passes every URL and the
feed's ``updated`` time in :class:`FeedMeta`.  The three formats are three views of one
item model (:class:`FeedItem`, built once by :func:`to_items`), so they cannot drift
apart: an id, date or category decided for one format is the same in the others.

Decisions
---------
Item id
    ``tag:<authority>:article/<store id>`` (RFC 4151).  The store id is the only thing
    that never changes when an article is edited, re-sent with a new GUID, moved to
    https or merged with a copy from another source; the link can change in all those
    cases, so it is *not* used.  The authority (``host,year``) scopes ids to one
    deployment so two aggregators merged by a downstream reader never collide; keep it
    fixed (``FeedMeta.id_authority``) when the service moves host.
Published time
    Articles without a published time get the time we first fetched them, in *every*
    format (not only RSS ``pubDate``), so the formats agree with each other and with
    the paging order (which sorts by the same value: :attr:`StoredArticle.cursor`).
Several sources
    One category per source (scheme ``tag:<authority>:source``, term = source id,
    label = name), one author per source name, and in Atom one ``link rel="via"`` per
    source link.  Atom allows at most *one* ``atom:source`` per entry (RFC 4287
    section 4.1.2, ``atomSource?`` in the schema), so the entry's ``atom:source`` names
    the first source that brought the article; the others are in the ``via`` links and
    categories.  JSON Feed carries the full list in an ``_aggregator`` extension.
Paging
    RFC 5005 *paged* feeds (section 3): ``first`` and ``next`` links; RSS gets them as
    ``atom:link`` and JSON Feed as ``next_url``.  No ``prev-archive``: archived feeds
    (section 4) require archive documents that never change, but a page here is
    "articles older than a cursor", which still changes when an old article is edited
    or expires, so advertising it as an archive would make readers cache stale pages.
Bodies
    Atom ``content type="html"`` and JSON ``content_html`` carry the cleaned body; RSS
    carries it in ``content:encoded`` (CDATA unless the body itself contains ``]]>``)
    and puts a plain-text excerpt in ``description``, which the RSS 2.0 spec calls the
    item synopsis.  All XML is built with lxml, so escaping is never hand-made, and
    serialised as UTF-8, so Chinese stays readable instead of becoming ``&#...;``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import html
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Final

from lxml import etree

from ..types import UTC, Cursor, StoredArticle

__all__ = [
    "ATOM",
    "FORMATS",
    "JSON_FEED",
    "EXCERPT_HEAD_CHARS",
    "MAX_TITLE_CHARS",
    "RSS",
    "FeedFormat",
    "FeedItem",
    "FeedMeta",
    "ItemSource",
    "decode_cursor",
    "encode_cursor",
    "item_id",
    "render_atom",
    "render_json_feed",
    "render_rss",
    "to_items",
]

ATOM_NS: Final = "http://www.w3.org/2005/Atom"
CONTENT_NS: Final = "http://purl.org/rss/1.0/modules/content/"
DC_NS: Final = "http://purl.org/dc/elements/1.1/"
DCTERMS_NS: Final = "http://purl.org/dc/terms/"
XML_NS: Final = "http://www.w3.org/XML/1998/namespace"
JSON_FEED_VERSION: Final = "https://jsonfeed.org/version/1.1"
GENERATOR: Final = "aggregator"
SUMMARY_CHARS: Final = 280
MAX_TITLE_CHARS: Final = 2048  # a served title is cut here (see shortened)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


# --- cursors ---------------------------------------------------------------------------

_CURSOR_VERSION: Final = "1"
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]{4,64}")
_PAYLOAD_RE: Final = re.compile(r"1:(-?[0-9]{1,16}):([0-9]{1,19})")
_MAX_ID: Final = 2**63 - 1


def encode_cursor(cursor: Cursor) -> str:
    """An opaque, URL-safe token for ``before=``.

    Opaque so clients cannot hand-craft positions that depend on our sort key; the
    version prefix inside lets the encoding change without breaking old links.
    """
    ms = (cursor.sort_time - _EPOCH) // timedelta(milliseconds=1)
    payload = f"{_CURSOR_VERSION}:{ms}:{cursor.id}".encode("ascii")
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")


def decode_cursor(token: str) -> Cursor:
    """Invert :func:`encode_cursor`.

    Raises:
        ValueError: for anything :func:`encode_cursor` could not have produced; the
            HTTP layer turns that into a 400, so every failure mode must be this type.
    """
    if not _TOKEN_RE.fullmatch(token):
        raise ValueError("malformed cursor")
    try:
        payload = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("malformed cursor") from exc
    match = _PAYLOAD_RE.fullmatch(payload)
    if match is None:
        raise ValueError("malformed cursor")
    ms, ident = int(match[1]), int(match[2])
    if ident > _MAX_ID:
        raise ValueError("malformed cursor")
    try:
        sort_time = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError as exc:
        raise ValueError("malformed cursor") from exc
    return Cursor(sort_time, ident)


# --- the shared item model -----------------------------------------------------------


@dataclass(frozen=True)
class FeedMeta:
    """What a feed document says about itself.  Every URL must be absolute.

    ``self_url`` is this exact document (with its query); ``first_url`` the newest
    page of the same selection; ``next_url`` the page after this one, or ``None`` on
    the last page.  ``updated`` is the newest change to anything in the selection.
    ``id_url``: the feed's identity when the links carry more (the feed token).
    """

    title: str
    self_url: str
    html_url: str
    updated: datetime
    id_authority: str
    next_url: str | None = None
    first_url: str | None = None
    description: str = ""
    language: str | None = None
    id_url: str | None = None

    @property
    def feed_id(self) -> str:
        """The feed's own id: the first page's URL, so all pages share one identity."""
        return self.id_url or self.first_url or self.self_url

    @property
    def source_scheme(self) -> str:
        return f"tag:{self.id_authority}:source"


@dataclass(frozen=True)
class ItemSource:
    """One source that carried an item (from the article's provenance)."""

    id: str
    name: str
    link: str


@dataclass(frozen=True)
class FeedItem:
    """One output item, format-neutral; every string is already XML-safe."""

    id: str
    title: str
    link: str
    published: datetime
    updated: datetime
    authors: tuple[str, ...]
    categories: tuple[str, ...]
    sources: tuple[ItemSource, ...]
    content_html: str
    summary: str
    cursor: Cursor


# XML 1.0 forbids most C0 controls, lone surrogates and U+FFFE/FFFF; lxml refuses them.
# They are stripped for *all* formats so the JSON Feed says exactly what the XML does.
_NOT_XML_CHAR: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SPACE: Final = re.compile(r"\s+")


def _clean(text: str) -> str:
    return _NOT_XML_CHAR.sub("", text)


# Comments, then tags (an unterminated one at the end of a cut-off prefix too).
_MARKUP: Final = re.compile(r"<!--.*?(?:-->|\Z)|<[^>]*(?:>|\Z)", re.DOTALL)
_EXCERPT_WINDOWS: Final = (1024, 4096)
# A body's head long enough for its excerpt (the windows above, with room to spare):
# what the service reads of a body too long for a page.
EXCERPT_HEAD_CHARS: Final = 8192


def _text(fragment: str) -> str:
    return _SPACE.sub(" ", html.unescape(_MARKUP.sub("", fragment))).strip()


def _excerpt(body_html: str, limit: int = SUMMARY_CHARS) -> str:
    """The body's text, whitespace collapsed, cut to ``limit`` characters.

    Bodies are already cleaned HTML, so removing the markup and decoding entities
    gives the text an HTML parser would (``text_content()``) at a fraction of the
    cost; only a prefix is read when it holds enough text (a cut entity or tag can
    only spoil the tail, which the margin keeps out of the excerpt).
    """
    text = ""
    for window in (*_EXCERPT_WINDOWS, len(body_html)):
        text = _text(body_html[:window])
        if window >= len(body_html) or len(text) > limit + 16:
            break
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def item_id(authority: str, store_id: int) -> str:
    """The stable public id of a stored article (see the module docstring)."""
    return f"tag:{authority}:article/{store_id}"


def _unique(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value for value in values if value))


def shortened(stored: StoredArticle, max_chars: int) -> StoredArticle:
    """``stored`` as one feed page can carry it: an over-long title or body is cut.

    The store may hold anything (articles from before the entry limits, an import):
    a 19 MB title once made every page 50 MB.  A body over ``max_chars`` is replaced
    by its excerpt and a pointer to the article, since cutting HTML mid-markup would
    serve broken markup; the stored article is untouched.
    """
    article = stored.article
    title, body = article.title, article.body
    length = stored.body_length or len(body)  # a bounded read holds the body's head only
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1] + "…"
    if length > max_chars:
        body = (
            f"<p>{html.escape(_excerpt(body))}</p>"
            f"<p>(Too long to include here: {length:,} characters. "
            f'<a href="{html.escape(article.link)}">Read the article</a>.)</p>'
        )
    if title is article.title and body is article.body:
        return stored
    cut = dataclasses.replace(article, title=title, body=body)
    return dataclasses.replace(stored, article=cut, body_length=None)


def to_items(articles: Sequence[StoredArticle], *, id_authority: str) -> list[FeedItem]:
    """Build the format-neutral items, in the order given (the store's newest first)."""
    items = []
    for stored in articles:
        article = stored.article
        sources = _unique_sources(stored)
        body = _clean(article.body)
        items.append(
            FeedItem(
                id=item_id(id_authority, stored.id),
                title=_clean(article.title),
                link=article.link,
                # The cursor's sort time is published, else first fetched: the same
                # fallback readers should see, so dates and page order agree.
                published=stored.cursor.sort_time,
                updated=stored.updated,
                authors=_unique([source.name for source in sources]),
                categories=_unique([_clean(c) for c in (*article.categories, *article.tags)]),
                sources=sources,
                content_html=body,
                summary=_excerpt(body),
                cursor=stored.cursor,
            )
        )
    return items


def _unique_sources(stored: StoredArticle) -> tuple[ItemSource, ...]:
    article = stored.article
    routes = [
        ItemSource(p.source_id, _clean(p.source_name), p.link)
        for p in sorted(stored.provenance, key=lambda p: p.first_seen)
    ] or [ItemSource(article.source_id, _clean(article.source_name), article.link)]
    seen: dict[str, ItemSource] = {}
    for route in routes:
        seen.setdefault(route.id, route)
    return tuple(seen.values())


# --- dates ---------------------------------------------------------------------------


def _rfc3339(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"


def _rfc822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


# --- RSS 2.0 -------------------------------------------------------------------------


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _paging_links(parent: etree._Element, meta: FeedMeta, tag: str, media_type: str) -> None:
    _sub(parent, tag, rel="self", type=media_type, href=meta.self_url)
    if meta.first_url:
        _sub(parent, tag, rel="first", type=media_type, href=meta.first_url)
    if meta.next_url:
        _sub(parent, tag, rel="next", type=media_type, href=meta.next_url)


def _serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def _rss(meta: FeedMeta, items: Sequence[FeedItem]) -> bytes:
    nsmap = {"atom": ATOM_NS, "content": CONTENT_NS, "dc": DC_NS, "dcterms": DCTERMS_NS}
    rss = etree.Element("rss", {"version": "2.0"}, nsmap=nsmap)
    channel = _sub(rss, "channel")
    _sub(channel, "title", _clean(meta.title))
    _sub(channel, "link", meta.html_url)
    _sub(channel, "description", _clean(meta.description or meta.title))
    if meta.language:
        _sub(channel, "language", meta.language)
    _sub(channel, "lastBuildDate", _rfc822(meta.updated))
    _sub(channel, "generator", GENERATOR)
    _sub(channel, "docs", "https://www.rssboard.org/rss-specification")
    _paging_links(channel, meta, f"{{{ATOM_NS}}}link", RSS.mime)
    for item in items:
        entry = _sub(channel, "item")
        _sub(entry, "title", item.title)
        _sub(entry, "link", item.link)
        _sub(entry, "guid", item.id, isPermaLink="false")
        _sub(entry, "pubDate", _rfc822(item.published))
        _sub(entry, f"{{{DCTERMS_NS}}}modified", _rfc3339(item.updated))
        for author in item.authors:
            # RSS <author> must be an e-mail address; dc:creator takes a name.
            _sub(entry, f"{{{DC_NS}}}creator", author)
        for category in item.categories:
            _sub(entry, "category", category)
        for source in item.sources:
            _sub(entry, "category", source.name, domain=meta.source_scheme)
        _sub(entry, "description", item.summary)
        encoded = _sub(entry, f"{{{CONTENT_NS}}}encoded")
        # CDATA keeps the body readable; it cannot contain "]]>", so such a body is
        # escaped instead (equivalent for every XML parser).
        body = item.content_html
        encoded.text = etree.CDATA(body) if "]]>" not in body else body
    return _serialize(rss)


# --- Atom 1.0 ------------------------------------------------------------------------


def _atom(meta: FeedMeta, items: Sequence[FeedItem]) -> bytes:
    def a(name: str) -> str:
        return f"{{{ATOM_NS}}}{name}"

    feed = etree.Element(a("feed"), nsmap={None: ATOM_NS})
    if meta.language:
        feed.set(f"{{{XML_NS}}}lang", meta.language)
    _sub(feed, a("id"), meta.feed_id)
    _sub(feed, a("title"), _clean(meta.title))
    if meta.description:
        _sub(feed, a("subtitle"), _clean(meta.description))
    _sub(feed, a("updated"), _rfc3339(meta.updated))
    _sub(feed, a("generator"), GENERATOR)
    _sub(feed, a("link"), rel="alternate", type="text/html", href=meta.html_url)
    _paging_links(feed, meta, a("link"), ATOM.mime)
    for item in items:
        entry = _sub(feed, a("entry"))
        _sub(entry, a("id"), item.id)
        _sub(entry, a("title"), item.title, type="text")
        _sub(entry, a("link"), rel="alternate", type="text/html", href=item.link)
        for source in item.sources:
            if source.link != item.link:
                _sub(entry, a("link"), rel="via", href=source.link, title=source.name)
        _sub(entry, a("published"), _rfc3339(item.published))
        _sub(entry, a("updated"), _rfc3339(item.updated))
        for author in item.authors:
            _sub(_sub(entry, a("author")), a("name"), author)
        for category in item.categories:
            _sub(entry, a("category"), term=category)
        for source in item.sources:
            _sub(entry, a("category"), term=source.id, scheme=meta.source_scheme, label=source.name)
        if item.summary:
            _sub(entry, a("summary"), item.summary, type="text")
        _sub(entry, a("content"), item.content_html, type="html")
        first = item.sources[0]
        origin = _sub(entry, a("source"))
        _sub(origin, a("id"), f"{meta.source_scheme}/{first.id}")
        _sub(origin, a("title"), first.name)
    return _serialize(feed)


# --- JSON Feed 1.1 -------------------------------------------------------------------


def _json_feed(meta: FeedMeta, items: Sequence[FeedItem]) -> bytes:
    document: dict[str, object] = {
        "version": JSON_FEED_VERSION,
        "title": _clean(meta.title),
        "home_page_url": meta.html_url,
        "feed_url": meta.self_url,
    }
    if meta.description:
        document["description"] = _clean(meta.description)
    if meta.next_url:
        document["next_url"] = meta.next_url
    if meta.language:
        document["language"] = meta.language
    document["items"] = [_json_item(meta, item) for item in items]
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json_item(meta: FeedMeta, item: FeedItem) -> dict[str, object]:
    entry: dict[str, object] = {
        "id": item.id,
        "url": item.link,
        "title": item.title,
        "content_html": item.content_html,
        "date_published": _rfc3339(item.published),
        "date_modified": _rfc3339(item.updated),
        "authors": [{"name": author} for author in item.authors],
    }
    if item.summary:
        entry["summary"] = item.summary
    if item.categories:
        entry["tags"] = list(item.categories)
    entry["_aggregator"] = {
        "about": meta.source_scheme,
        "sources": [{"id": s.id, "name": s.name, "url": s.link} for s in item.sources],
    }
    return entry


# --- public entry points --------------------------------------------------------------


@dataclass(frozen=True)
class FeedFormat:
    """A feed format: its name, HTTP media type and renderer."""

    name: str
    media_type: str
    _render: Callable[[FeedMeta, Sequence[FeedItem]], bytes]

    @property
    def mime(self) -> str:
        """The media type without parameters, as ``type=`` attributes want it."""
        return self.media_type.partition(";")[0]

    def render(self, meta: FeedMeta, articles: Sequence[StoredArticle]) -> bytes:
        return self._render(meta, to_items(articles, id_authority=meta.id_authority))


RSS: Final = FeedFormat("rss", "application/rss+xml; charset=utf-8", _rss)
ATOM: Final = FeedFormat("atom", "application/atom+xml; charset=utf-8", _atom)
JSON_FEED: Final = FeedFormat("json", "application/feed+json; charset=utf-8", _json_feed)
FORMATS: Final[Mapping[str, FeedFormat]] = {f.name: f for f in (RSS, ATOM, JSON_FEED)}


def render_rss(meta: FeedMeta, articles: Sequence[StoredArticle]) -> bytes:
    """RSS 2.0 with the atom, content, dc and dcterms extensions."""
    return RSS.render(meta, articles)


def render_atom(meta: FeedMeta, articles: Sequence[StoredArticle]) -> bytes:
    """Atom 1.0 (RFC 4287) with RFC 5005 paging links."""
    return ATOM.render(meta, articles)


def render_json_feed(meta: FeedMeta, articles: Sequence[StoredArticle]) -> bytes:
    """JSON Feed 1.1, with every source in the ``_aggregator`` item extension."""
    return JSON_FEED.render(meta, articles)
