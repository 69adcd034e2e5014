"""The feed endpoints: conditional requests, the response cache and the page bound.

The validator is a *weak* ETag (the same document is sent gzipped or not, which a
strong ETag would have to tell apart) derived from the selection's newest update time
plus the normalised query, so a 304 costs one indexed query and no rendering.
``If-None-Match`` wins over ``If-Modified-Since`` (RFC 9110 section 13.1.3).

Imports from the package: ``export``, ``types`` and :mod:`.site`.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..export.feeds import (
    FeedFormat,
    encode_cursor,
    shortened,
)
from ..types import UTC, StoredArticle
from .site import (
    ArticleReader,
    _articles,
    _feed_title,
    _in_script,
    _Links,
    _parse_query,
    _Query,
    _Site,
)

# Bump when the rendered documents change shape, so caches drop old validators.
_RENDER_VERSION = "1"
# Rendered feed documents are kept by ETag (which already names the selection, the
# format and the newest update), so a repeated request skips the query, the render and
# the compression.  Bounded in entries and bytes; an entry lives at most max-age.
_CACHE_ENTRIES = 64
_CACHE_BYTES = 32 * 1024 * 1024
_GZIP_MINIMUM = 500  # as the GZipMiddleware of app.py: smaller bodies go as they are
_GZIP_LEVEL = 5  # against 6: ~20% less CPU for a feed page, <1% larger


def _http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


def _etag(
    site: _Site, kind: str, query: _Query, links: _Links, last_updated: datetime | None
) -> str:
    """What the document depends on: the selection, its newest update, and what a
    reload of the sources file may change under the same URL (a topic's query and
    sources, the feed's title with the sources' names and the topic's title), and
    whether the links carry the token."""
    digest = hashlib.sha256()
    stamp = last_updated.isoformat() if last_updated else "-"
    search = str(query.search) if query.search is not None else "-"
    # An empty selection (a topic and a pick with no source in common) is not all.
    sources = query.selection
    selection = "*" if sources is None else ",".join(sources)
    linked = "token" if links.token else "-"
    title = _feed_title(site, query)
    for part in (_RENDER_VERSION, site.base_url, title, kind, stamp, search, selection, linked):
        digest.update(part.encode("utf-8") + b"\x00")
    digest.update(urlencode(query.params(site, before=query.before_token)).encode("ascii"))
    return f'W/"{digest.hexdigest()[:32]}"'


def _not_modified(request: Request, etag: str, last_updated: datetime | None) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        # Weak comparison (RFC 9110 section 8.8.3.2): the W/ prefix does not matter.
        wanted = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in wanted or etag.removeprefix("W/") in wanted
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since is None or last_updated is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError, IndexError):
        return False  # an unparsable date is ignored, as RFC 9110 requires
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return last_updated.replace(microsecond=0) <= since


class _Rendered:
    """One rendered feed document, and its gzip form once a client asked for it."""

    __slots__ = ("body", "expires", "gzipped")

    def __init__(self, body: bytes, expires: float) -> None:
        self.body = body
        self.expires = expires
        self.gzipped: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzipped or b"")


class _ResponseCache:
    """A small thread-safe LRU of rendered feeds by ETag (endpoints run in threads)."""

    def __init__(self, ttl: float, entries: int = _CACHE_ENTRIES, size: int = _CACHE_BYTES):
        self.ttl = ttl
        self.entries = entries
        self.size = size
        self._items: OrderedDict[str, _Rendered] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> _Rendered | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item.expires <= time.monotonic():
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return item

    def put(self, key: str, body: bytes) -> _Rendered:
        item = _Rendered(body, time.monotonic() + self.ttl)
        if self.ttl > 0 and len(body) <= self.size // 4:
            with self._lock:
                if key in self._items:
                    self._drop(key)
                self._items[key] = item
                self._bytes += item.size
                self._trim()
        return item

    def gzipped(self, key: str, item: _Rendered) -> bytes:
        if item.gzipped is None:
            data = gzip.compress(item.body, compresslevel=_GZIP_LEVEL, mtime=0)
            with self._lock:
                if item.gzipped is None:
                    item.gzipped = data
                    if self._items.get(key) is item:
                        self._bytes += len(data)
                        self._trim()
        return item.gzipped

    def _drop(self, key: str) -> None:
        self._bytes -= self._items.pop(key).size

    def _trim(self) -> None:
        while self._items and (len(self._items) > self.entries or self._bytes > self.size):
            self._drop(next(iter(self._items)))


def _accepts_gzip(request: Request) -> bool:
    # The same test as Starlette's GZipMiddleware, so the two never disagree.
    return "gzip" in request.headers.get("accept-encoding", "")


def _feed_endpoint(
    reader: ArticleReader, site: _Site, fmt: FeedFormat, path: str, cache: _ResponseCache
) -> Route:
    def endpoint(request: Request) -> Response:
        query = _parse_query(request, site)
        links = _Links.of(request, site)
        in_path = query.topic is not None and "topic" in request.path_params
        where = f"/topics/{query.topic.id}{path}" if query.topic and in_path else path
        last_updated = reader.last_updated(query.selection)
        # The path is part of the document (its self link), so part of the validator.
        etag = _etag(site, fmt.name if where == path else where, query, links, last_updated)
        headers = {
            "ETag": etag,
            "Cache-Control": site.cache_control,
            "Vary": "Accept-Encoding",
        }
        if last_updated is not None:
            headers["Last-Modified"] = _http_date(last_updated)
        if _not_modified(request, etag, last_updated):
            return Response(status_code=304, headers=headers)
        rendered = cache.get(etag)
        if rendered is None:
            document = _Document(fmt, where, not in_path, query, links)
            rendered = cache.put(etag, _render(reader, site, document, last_updated))
        body = rendered.body
        if len(body) >= _GZIP_MINIMUM and _accepts_gzip(request):
            # Already encoded: the GZipMiddleware passes it through untouched.
            body = cache.gzipped(etag, rendered)
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=fmt.media_type, headers=headers)

    return Route(path, endpoint, methods=["GET"], name=fmt.name)


def _topic_endpoint(
    reader: ArticleReader, site: _Site, fmt: FeedFormat, path: str, cache: _ResponseCache
) -> Route:
    """``/topics/ID/feed.xml`` and friends: the feed endpoint with the topic in the path."""
    route = _feed_endpoint(reader, site, fmt, path, cache)
    return Route(
        f"/topics/{{topic}}{path}", route.endpoint, methods=["GET"], name=f"topic-{fmt.name}"
    )


@dataclass(frozen=True)
class _Document:
    """Which feed document to render: the format at ``path`` for ``query``, its links
    built by ``links`` (``topic_param``: the topic is not in the path, so in the query)."""

    fmt: FeedFormat
    path: str
    topic_param: bool
    query: _Query
    links: _Links

    def url(self, path: str, *, before: str | None = None) -> str:
        topic = self.topic_param or path != self.path
        return self.links.url(path, self.query.params(self.links.site, before=before, topic=topic))


def _render(
    reader: ArticleReader, site: _Site, document: _Document, last_updated: datetime | None
) -> bytes:
    query, path = document.query, document.path
    rows, more = _articles(reader, query, site.read_bound)
    page = [shortened(_in_script(stored, query.script), site.max_item_chars) for stored in rows]
    while True:
        next_token = encode_cursor(page[-1].cursor) if more and page else None
        # The site's metadata, with the title and links of this search's selection; the
        # feed's id is its first page's URL as the site names it, token or not.
        first = query.params(site, topic=document.topic_param)
        meta = replace(
            site.meta(path, query.sources, query.limit, updated=last_updated),
            title=_feed_title(site, query),
            self_url=document.url(path, before=query.before_token),
            first_url=document.url(path),
            next_url=document.url(path, before=next_token) if next_token else None,
            html_url=document.url("/"),
            id_url=site.url(path, first),
        )
        body = document.fmt.render(meta, page)
        if len(body) <= site.max_page_bytes or len(page) <= 1:
            return body
        # Fewer items, the rest on the next page (its link starts after the last kept).
        page = page[: _fitting(page, len(body), site.max_page_bytes)]
        more = True


def _fitting(page: Sequence[StoredArticle], rendered: int, bound: int) -> int:
    """How many leading items of ``page`` should fit in ``bound`` bytes, given that all
    of them rendered to ``rendered`` bytes; at least one, and fewer than all."""
    weights = [len(stored.article.body) + len(stored.article.title) + 1024 for stored in page]
    budget = bound * 0.9 * sum(weights) / rendered
    kept, total = 0, 0
    for weight in weights:
        total += weight
        if total > budget:
            break
        kept += 1
    return min(max(kept, 1), len(page) - 1)
