"""The HTTP service: merged and per-source feeds, an HTML index, health and metrics.

It only *reads* (through :class:`ArticleReader`, which the store satisfies) and never
fetches.  Endpoints are plain ``def`` functions on purpose: the store is synchronous,
and Starlette runs sync endpoints in its thread pool, so a slow query never stalls the
event loop that the scheduler shares with this server.

Every URL the service prints is built from the configured ``base_url``, never from the
request's ``Host`` header, so a forged header cannot plant foreign links in a feed that
proxies and readers cache.

Conditional requests: the validator is a *weak* ETag (the same document is sent gzipped
or not, which a strong ETag would have to tell apart) derived from the selection's
newest update time plus the normalised query, so a 304 costs one indexed query and no
rendering.  ``If-None-Match`` wins over ``If-Modified-Since`` (RFC 9110 section 13.1.3).

Imports from the package: ``export``, ``health``, ``metrics``, ``httpguard``, ``errors``,
``types``; never ``store`` (it reads through the ``ArticleReader`` protocol) nor the poll
(stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import hmac
import html
import json
import logging
import re
import socket
import threading
import time
import zoneinfo
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from email.utils import format_datetime, parsedate_to_datetime
from typing import Protocol
from urllib.parse import urlencode, urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import health
from . import metrics as metrics_module
from .errors import QueryError, ServiceError, StorageError
from .export.feeds import (
    EXCERPT_HEAD_CHARS,
    FORMATS,
    MAX_TITLE_CHARS,
    FeedFormat,
    decode_cursor,
    encode_cursor,
    shortened,
)
from .export.site import FEED_PATHS, FeedSite, default_id_authority
from .httpguard import HEAD_TIMEOUT, guarded_protocol
from .search import Query, Topic, html_text, parse_query, snippet
from .search.script import SCRIPTS, Script, chinese_script, convert, convert_html
from .types import UTC, Cursor, Provenance, ReadBound, SourceState, StoredArticle, UrlState

__all__ = [
    "FEED_PATHS",
    "ArticleReader",
    "EmbeddedServer",
    "SourceCatalog",
    "build_server",
    "create_app",
]

logger = logging.getLogger(__name__)

_LIMIT_RE = re.compile(r"[0-9]{1,6}")
# Bump when the rendered documents change shape, so caches drop old validators.
_RENDER_VERSION = "1"
# Rendered feed documents are kept by ETag (which already names the selection, the
# format and the newest update), so a repeated request skips the query, the render and
# the compression.  Bounded in entries and bytes; an entry lives at most max-age.
_CACHE_ENTRIES = 64
_CACHE_BYTES = 32 * 1024 * 1024
MAX_PAGE_BYTES = 10 * 1024 * 1024  # a feed page is cut to fewer items above this
_GZIP_MINIMUM = 500  # as the GZipMiddleware below: smaller bodies go as they are
_GZIP_LEVEL = 5  # against 6: ~20% less CPU for a feed page, <1% larger
_FEED_PATHS: Mapping[str, FeedFormat] = {path: FORMATS[name] for name, path in FEED_PATHS.items()}


class ArticleReader(Protocol):
    """What the service needs from the store; every method may raise StorageError."""

    def latest(
        self,
        *,
        sources: Sequence[str] | None = None,
        limit: int = 50,
        before: Cursor | None = None,
    ) -> list[StoredArticle]:
        """Newest first by ``(sort_time, id)``, strictly older than ``before``."""
        ...

    def feed_page(
        self,
        *,
        sources: Sequence[str] | None = None,
        limit: int = 50,
        before: Cursor | None = None,
        bound: ReadBound,
    ) -> tuple[list[StoredArticle], bool]:
        """As :meth:`latest`, read within ``bound``, and whether a next page exists."""
        ...

    def last_updated(self, sources: Sequence[str] | None = None) -> datetime | None:
        """The newest ``updated`` among the selected articles; ``None`` if there are none."""
        ...

    def search(
        self,
        query: Query,
        *,
        sources: Sequence[str] | None = None,
        limit: int = 50,
        before: Cursor | None = None,
    ) -> list[StoredArticle]:
        """The articles matching ``query``, ordered and paged as :meth:`latest`."""
        ...

    def article(self, article_id: int) -> StoredArticle | None:
        """One article by id, ``None`` when there is none."""
        ...

    def ping(self) -> None: ...

    def states(self) -> list[SourceState]: ...

    def article_counts(self) -> dict[str, int]: ...


class BadRequest(Exception):
    """A client mistake; the message is shown to the client, so keep it short and safe."""


class SourceCatalog(Mapping[str, str]):
    """The configured sources as the service knows them (id -> display name), replaced
    whole on a reload.

    Requests read it from the server's threads while the daemon's loop replaces it,
    so a reload swaps one tuple (atomic) rather than mutating a dict being iterated.
    """

    def __init__(self, names: Mapping[str, str], enabled: Iterable[str] | None = None) -> None:
        self._view: tuple[Mapping[str, str], frozenset[str]] = ({}, frozenset())
        self.replace(names, enabled)

    def replace(self, names: Mapping[str, str], enabled: Iterable[str] | None = None) -> None:
        """``names``: source id -> display name; ``enabled``: the ids polled (default all)."""
        self._view = (dict(names), frozenset(names if enabled is None else enabled))

    @property
    def names(self) -> Mapping[str, str]:
        return self._view[0]

    @property
    def enabled(self) -> frozenset[str]:
        return self._view[1]

    def __getitem__(self, source_id: str) -> str:
        return self._view[0][source_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._view[0])

    def __len__(self) -> int:
        return len(self._view[0])


@dataclass(frozen=True, kw_only=True)
class _Site(FeedSite):
    """The feeds' addresses and names, and what only the service needs besides."""

    catalog: SourceCatalog
    max_limit: int
    cache_max_age: int
    max_page_bytes: int
    metrics: metrics_module.Metrics = field(repr=False)
    topics: Mapping[str, Topic] = field(default_factory=dict)
    timezone: tzinfo = UTC  # the pages' times

    @property
    def max_item_chars(self) -> int:
        """The longest body served whole, so that any single item fits a page: escaping
        (``&`` -> ``&amp;``) and UTF-8 (CJK) make a character at most about 6 bytes."""
        return self.max_page_bytes // 8

    @property
    def read_bound(self) -> ReadBound:
        """What a feed page may read: every character is at least a byte once served,
        so rows past ``max_page_bytes`` characters could never be on the page; a body
        served as its excerpt needs only its head; a title only enough to be cut."""
        return ReadBound(
            page_chars=self.max_page_bytes,
            body_chars=self.max_item_chars,
            head_chars=EXCERPT_HEAD_CHARS,
            title_chars=MAX_TITLE_CHARS + 1,
        )


@dataclass(frozen=True)
class _Query:
    """A validated selection; ``params`` rebuilds it canonically for URLs and ETags."""

    sources: tuple[str, ...]
    limit: int
    before: Cursor | None
    before_token: str | None
    search: Query | None = None
    topic: Topic | None = None
    script: Script | None = None

    @property
    def selection(self) -> list[str] | None:
        """The sources to read from: those asked for, else the topic's, else all."""
        if self.sources:
            return list(self.sources)
        return list(self.topic.sources) if self.topic and self.topic.sources else None

    def params(self, site: _Site, *, before: str | None = None) -> list[tuple[str, str]]:
        params = [("source", source) for source in self.sources]
        if self.topic is not None:
            params.append(("topic", self.topic.id))
        elif self.search is not None:
            params.append(("q", str(self.search)))
        if self.script is not None:
            params.append(("script", self.script))
        if self.limit != site.default_limit:
            params.append(("limit", str(self.limit)))
        if before:
            params.append(("before", before))
        return params


def _parse_query(request: Request, site: _Site) -> _Query:
    query = request.query_params
    for name in ("limit", "before", "q", "topic", "script"):
        if len(query.getlist(name)) > 1:
            raise BadRequest(f"{name} given more than once")
    sources = tuple(sorted(set(query.getlist("source"))))
    for source in sources:
        if source not in site.sources:
            raise BadRequest(f"unknown source {source[:64]!r}")
    raw_limit = query.get("limit")
    if raw_limit is None:
        limit = site.default_limit
    else:
        if not _LIMIT_RE.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= site.max_limit:
            raise BadRequest(f"limit must be a whole number from 1 to {site.max_limit}")
        limit = int(raw_limit)
    token = query.get("before")
    before = None
    if token is not None:
        try:
            before = decode_cursor(token)
        except ValueError:
            raise BadRequest("malformed before= cursor") from None
    search, topic = _search_of(request, site)
    return _Query(sources, limit, before, token, search, topic, _script_of(request))


def _script_of(request: Request) -> Script | None:
    wanted = request.query_params.get("script")
    if wanted is None:
        return None
    for script in SCRIPTS:
        if wanted == script:
            return script
    raise BadRequest("script must be hans or hant")


def _in_script(stored: StoredArticle, script: Script | None) -> StoredArticle:
    """``stored`` with title and body in ``script`` (as stored when ``None``)."""
    if script is None:
        return stored
    article = stored.article
    converted = replace(
        article, title=convert(article.title, script), body=convert_html(article.body, script)
    )
    return replace(stored, article=converted)


def _search_of(request: Request, site: _Site) -> tuple[Query | None, Topic | None]:
    """The search a request asks for: a topic (``/topics/ID/...`` or ``?topic=``)
    or a query (``?q=``); a blank ``q`` is no search (an empty search box)."""
    topic_id = request.path_params.get("topic") or request.query_params.get("topic")
    if topic_id is not None:
        topic = site.topics.get(topic_id)
        if topic is None:
            raise BadRequest(f"unknown topic {topic_id[:64]!r}")
        return topic.query, topic
    text = request.query_params.get("q", "")
    if not text.strip():
        return None, None
    try:
        return parse_query(text), None
    except QueryError as exc:
        raise BadRequest(f"q: {exc.message}") from None


def _articles(
    reader: ArticleReader, query: _Query, bound: ReadBound
) -> tuple[list[StoredArticle], bool]:
    """One page of the selection (read within ``bound``), and whether older ones exist."""
    if query.search is None:
        return reader.feed_page(
            sources=query.selection, limit=query.limit, before=query.before, bound=bound
        )
    rows = reader.search(
        query.search, sources=query.selection, limit=query.limit + 1, before=query.before
    )
    return rows[: query.limit], len(rows) > query.limit


def _http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


def _etag(site: _Site, kind: str, query: _Query, last_updated: datetime | None) -> str:
    digest = hashlib.sha256()
    stamp = last_updated.isoformat() if last_updated else "-"
    for part in (_RENDER_VERSION, site.base_url, site.title, kind, stamp):
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
        if query.topic is not None and "topic" in request.path_params:
            where = f"/topics/{query.topic.id}{path}"
        else:
            where = path
        last_updated = reader.last_updated(query.selection)
        # The path is part of the document (its self link), so part of the validator.
        etag = _etag(site, fmt.name if where == path else where, query, last_updated)
        headers = {
            "ETag": etag,
            "Cache-Control": f"public, max-age={site.cache_max_age}",
            "Vary": "Accept-Encoding",
        }
        if last_updated is not None:
            headers["Last-Modified"] = _http_date(last_updated)
        if _not_modified(request, etag, last_updated):
            return Response(status_code=304, headers=headers)
        rendered = cache.get(etag)
        if rendered is None:
            rendered = cache.put(etag, _render(reader, site, fmt, where, query, last_updated))
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


def _render(
    reader: ArticleReader,
    site: _Site,
    fmt: FeedFormat,
    path: str,
    query: _Query,
    last_updated: datetime | None,
) -> bytes:
    rows, more = _articles(reader, query, site.read_bound)
    page = [shortened(_in_script(stored, query.script), site.max_item_chars) for stored in rows]
    while True:
        next_token = encode_cursor(page[-1].cursor) if more and page else None
        # The site's metadata, with the title and links of this search's selection.
        meta = replace(
            site.meta(path, query.sources, query.limit, updated=last_updated),
            title=_feed_title(site, query),
            self_url=site.url(path, query.params(site, before=query.before_token)),
            first_url=site.url(path, query.params(site)),
            next_url=site.url(path, query.params(site, before=next_token)) if next_token else None,
            html_url=site.url("/", query.params(site)),
        )
        body = fmt.render(meta, page)
        if len(body) <= site.max_page_bytes or len(page) <= 1:
            return body
        # Fewer items, the rest on the next page (its link starts after the last kept).
        page = page[: _fitting(page, len(body), site.max_page_bytes)]
        more = True


def _feed_title(site: _Site, query: _Query) -> str:
    title = site.feed_title(query.sources)
    if query.topic is not None:
        title += f": {query.topic.title}"
    if query.search is not None and query.topic is None:
        title += f" (search: {query.search})"
    return title


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


# --- the HTML index ------------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
{alternates}
<style>
body {{ font-family: sans-serif; max-width: 48rem; margin: 1rem auto; padding: 0 1rem; }}
nav a {{ margin-right: .75rem; }} nav a.current {{ font-weight: bold; }}
li {{ margin: .4rem 0; }} .meta {{ color: #666; font-size: .9em; }}
form.search input {{ width: min(100%, 24rem); }} .snippet {{ margin: .2rem 0; }}
mark {{ background: #fe6; color: inherit; }}
.failing {{ color: #a00; }}
</style>
</head>
<body>
<h1>{title}</h1>
<nav>{nav}</nav>
{failing}
{search}
<p>Feeds: {feed_links}</p>
<ol class="articles">
{items}
</ol>
{older}
</body>
</html>
"""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _safe_href(url: str) -> str | None:
    """Article links come from third-party feeds: only http(s) may become an href."""
    return url if urlsplit(url).scheme.lower() in ("http", "https") else None


def _index_endpoint(reader: ArticleReader, site: _Site) -> Route:
    def endpoint(request: Request) -> Response:
        query = _parse_query(request, site)
        # Titles only for a plain listing: no body is read (a search reads bodies
        # for its snippets).
        bound = dataclasses.replace(site.read_bound, body_chars=0, head_chars=0)
        page, more = _articles(reader, query, bound)
        counts = reader.article_counts()
        title = _feed_title(site, query)
        params = query.params(site)
        alternates = "\n".join(
            f'<link rel="alternate" type="{fmt.mime}" title="{_e(title)} ({fmt.name})" '
            f'href="{_e(site.url(path, params))}">'
            for path, fmt in _FEED_PATHS.items()
        )
        feed_links = " ".join(
            f'<a href="{_e(site.url(path, params))}">{fmt.name}</a>'
            for path, fmt in _FEED_PATHS.items()
        )
        problems = {
            problem.source_id: problem
            for problem in health.failing(reader.states(), site.catalog.enabled)
        }
        nav = [f'<a href="{_e(site.url("/"))}"{_current(not query.sources)}>All</a>']
        for source_id, name in site.sources.items():
            href = site.url("/", [("source", source_id)])
            label = f"{name} ({counts.get(source_id, 0)})"
            marked = ' class="failing" title="failing"' if source_id in problems else ""
            current = _current(query.sources == (source_id,))
            nav.append(f'<a href="{_e(href)}"{current}><span{marked}>{_e(label)}</span></a>')
        for topic in site.topics.values():
            href = site.url("/", [("topic", topic.id)])
            current = _current(query.topic is not None and query.topic.id == topic.id)
            nav.append(f'<a class="topic" href="{_e(href)}"{current}>{_e(topic.title)}</a>')
        empty = "<li>No articles found.</li>" if query.search else "<li>No articles yet.</li>"
        items = "\n".join(
            _index_item(site, _in_script(stored, query.script), query) for stored in page
        )
        items = items or empty
        older = ""
        if more and page:
            href = site.url("/", query.params(site, before=encode_cursor(page[-1].cursor)))
            older = f'<p><a rel="next" href="{_e(href)}">Older articles</a></p>'
        document = _PAGE.format(
            lang=_e(site.language or "en"),
            title=_e(title),
            alternates=alternates,
            nav="\n".join(nav),
            search=_search_form(site, query),
            failing=_failing_list(problems.values(), site.sources),
            feed_links=feed_links,
            items=items,
            older=older,
        )
        return Response(
            document,
            media_type="text/html; charset=utf-8",
            headers={
                "Cache-Control": "no-cache",
                # No scripts at all; inline style only for the small stylesheet above.
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return Route("/", endpoint, methods=["GET"], name="index")


def _failing_list(problems: Iterable[health.Failing], names: Mapping[str, str]) -> str:
    """The failing sources, each with since when and why, above the articles."""
    rows = []
    for problem in problems:
        since = f"{problem.since:%Y-%m-%d %H:%M} UTC" if problem.since else "the last poll"
        retry = (
            f" (next try {problem.next_retry:%Y-%m-%d %H:%M} UTC)"
            if problem.next_retry
            else " (disabled)"
        )
        name = names.get(problem.source_id, problem.source_id)
        rows.append(
            f'<li class="failing"><b>{_e(name)}</b>: failing since {since}: '
            f"{_e(problem.message[:300])}{retry}</li>"
        )
    if not rows:
        return ""
    return '<ul class="failing-sources">\n' + "\n".join(rows) + "\n</ul>"


def _current(flag: bool) -> str:
    return ' class="current"' if flag else ""


def _search_form(site: _Site, query: _Query) -> str:
    """A plain GET form: the page stays script-free."""
    value = str(query.search) if query.search is not None and query.topic is None else ""
    kept = [("source", source) for source in query.sources]
    kept += [("script", query.script)] if query.script else []
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{_e(value)}">' for name, value in kept
    )
    return (
        f'<form class="search" role="search" method="get" action="{_e(site.url("/"))}">'
        f'<input type="search" name="q" value="{_e(value)}" aria-label="Search" '
        f'placeholder="防长, &quot;exact phrase&quot;, -excluded, a OR b">{hidden}'
        "<button>Search</button></form>"
    )


def _snippet_html(stored: StoredArticle, search: Query) -> str:
    text = " ".join(html_text(stored.article.body).split())
    pieces = snippet(text, search, width=140)
    return "".join(f"<mark>{_e(part)}</mark>" if marked else _e(part) for part, marked in pieces)


def _index_item(site: _Site, stored: StoredArticle, query: _Query) -> str:
    article = stored.article
    search = query.search
    href = _safe_href(article.link)
    title = _e(article.title or article.link)
    heading = f'<a href="{_e(href)}">{title}</a>' if href else title
    names = dict.fromkeys(p.source_name for p in stored.provenance) or {article.source_name: None}
    stamp = _time_html(site, stored.cursor.sort_time)
    read = _e(_article_url(site, stored.id, query.script))
    meta = (
        f'<span class="meta">{_e(", ".join(names))} · {stamp} · '
        f'<a class="read" href="{read}">read here</a></span>'
    )
    if search is None:
        return f"<li>{heading} {meta}</li>"
    return f'<li>{heading} {meta}<p class="snippet">{_snippet_html(stored, search)}</p></li>'


# --- the article page ----------------------------------------------------------------

_ARTICLE_PAGE = """<!DOCTYPE html>
<html lang="{site_lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title} · {site_title}</title>
<style>
:root {{ color-scheme: light dark; --fg: #1d1d1f; --bg: #fff; --muted: #666; --link: #0b57d0; }}
@media (prefers-color-scheme: dark) {{
  :root {{ --fg: #e6e6e6; --bg: #121212; --muted: #9a9a9a; --link: #8ab4f8; }}
}}
body {{ margin: 0; color: var(--fg); background: var(--bg);
  font: 1.0625rem/1.75 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; }}
:lang(zh-Hans) {{ font-family: "PingFang SC", "Hiragino Sans GB", "Noto Sans CJK SC",
  "Source Han Sans SC", "Microsoft YaHei", system-ui, sans-serif; }}
:lang(zh-Hant) {{ font-family: "PingFang TC", "Noto Sans CJK TC", "Source Han Sans TC",
  "Microsoft JhengHei", system-ui, sans-serif; }}
main {{ max-width: 40rem; margin: 0 auto; padding: 1rem; overflow-wrap: anywhere; }}
article:lang(zh) {{ max-width: 36em; }}
h1 {{ font-size: 1.5rem; line-height: 1.4; margin: .5rem 0; }}
a {{ color: var(--link); }} a.current {{ font-weight: bold; }}
.meta {{ color: var(--muted); font-size: .9rem; }}
.meta ul {{ margin: .2rem 0; padding-left: 1.2rem; }}
.body img, .body video {{ max-width: 100%; height: auto; }}
.body pre {{ overflow-x: auto; }} .body table {{ display: block; overflow-x: auto; }}
blockquote {{ margin: 1rem 0; padding-left: 1rem; border-left: 3px solid var(--muted); }}
</style>
</head>
<body>
<main>
<nav class="meta"><a href="{home}">{site_title}</a> · {scripts}</nav>
<article lang="{lang}">
<h1>{heading}</h1>
<div class="meta">
<p>Published {published} · updated {updated}</p>
<ul class="sources">{sources}</ul>
</div>
<div class="body">
{body}
</div>
</article>
</main>
</body>
</html>
"""
_LANG: Mapping[Script, str] = {"hans": "zh-Hans", "hant": "zh-Hant"}
_SCRIPT_LABELS: Mapping[Script, str] = {"hans": "简体", "hant": "繁體"}


def _time_html(site: _Site, moment: datetime | None) -> str:
    if moment is None:
        return "unknown"
    local = moment.astimezone(site.timezone)
    return f'<time datetime="{moment.isoformat()}">{local:%Y-%m-%d %H:%M %Z}</time>'


def _article_url(site: _Site, article_id: int, script: Script | None) -> str:
    return site.url(f"/articles/{article_id}", [("script", script)] if script else [])


def _source_item(site: _Site, route: Provenance) -> str:
    """One route the article came by: the source, a link to its copy (named by its
    host: a percent-encoded Chinese path fills a phone's screen) and when we saw it."""
    name = _e(route.source_name or route.source_id)
    seen = f"seen {_time_html(site, route.first_seen)}"
    link = _safe_href(route.link)
    if link is None:
        return f"<li>{name}, {seen}</li>"
    host = _e(urlsplit(link).hostname or link)
    return f'<li>{name}: <a href="{_e(link)}">{host}</a>, {seen}</li>'


def _article_endpoint(reader: ArticleReader, site: _Site) -> Route:
    """``/articles/ID``: one article to read here, cleaned, in the reader's script."""

    def endpoint(request: Request) -> Response:
        article_id: int = request.path_params["article_id"]
        script = _script_of(request)
        found = reader.article(article_id)
        if found is None:
            return PlainTextResponse("no such article\n", status_code=404)
        stored = _in_script(found, script)
        article = stored.article
        written = script or chinese_script(article.title + article.body)
        href = _safe_href(article.link)
        title = _e(article.title or article.link)
        sources = "".join(_source_item(site, route) for route in stored.provenance)
        scripts = " ".join(
            f'<a href="{_e(_article_url(site, article_id, choice))}" lang="{_LANG[choice]}"'
            f"{_current(choice == script)}>{label}</a>"
            for choice, label in _SCRIPT_LABELS.items()
        )
        document = _ARTICLE_PAGE.format(
            site_lang=_e(site.language or "en"),
            site_title=_e(site.title),
            title=title,
            home=_e(site.url("/")),
            scripts=scripts,
            lang=_LANG[written] if written else _e(site.language or "en"),
            heading=f'<a href="{_e(href)}">{title}</a>' if href else title,
            published=_time_html(site, article.published),
            updated=_time_html(site, stored.updated),
            sources=sources,
            body=article.body,  # cleaned and sanitised when stored
        )
        return Response(
            document,
            media_type="text/html; charset=utf-8",
            headers={
                "Cache-Control": "no-cache",
                # As the index, plus the article's own pictures (https only).
                "Content-Security-Policy": (
                    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:"
                ),
            },
        )

    return Route("/articles/{article_id:int}", endpoint, methods=["GET"], name="article")


# --- operations ----------------------------------------------------------------------


def _state_json(state: SourceState, name: str | None) -> dict[str, object]:
    return {
        "name": name,
        "last_success": _iso(state.last_success),
        "last_attempt": _iso(state.last_attempt),
        "next_poll": _iso(state.next_poll),
        "consecutive_failures": state.consecutive_failures,
        "last_error_kind": state.last_error_kind,
        "last_error": state.last_error,
        "failing_since": _iso(state.failing_since),
        "disabled": state.disabled_reason,
        **(
            {"urls": [_url_json(record) for record in state.url_states]} if state.url_states else {}
        ),
    }


def _url_json(record: UrlState) -> dict[str, object]:
    """One URL of a source with mirrors; its error text stays in the log and the CLI,
    like the source's own, but the kind says which URL failed how."""
    return {
        "url": record.configured,
        "last_success": record.last_success.isoformat() if record.last_success else None,
        "last_attempt": record.last_attempt.isoformat() if record.last_attempt else None,
        "error_kind": record.error_kind,
        "retired": record.gone is not None,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _failing_json(problem: health.Failing) -> dict[str, object]:
    return {
        "source": problem.source_id,
        "message": problem.message,
        "kind": problem.kind,
        "since": _iso(problem.since),
        "next_retry": _iso(problem.next_retry),
        "consecutive_failures": problem.failures,
    }


def _healthz_endpoint(reader: ArticleReader, site: _Site) -> Route:
    def endpoint(request: Request) -> Response:
        try:
            reader.ping()
            states = reader.states()
        except StorageError as exc:
            # The reason goes to the log only: it may name the database URL.
            logger.warning("health check: database unreachable: %s", exc)
            down = {"status": "unavailable", "database": "unreachable"}
            return JSONResponse(down, status_code=503, headers={"Cache-Control": "no-store"})
        sources = {s.source_id: _state_json(s, site.sources.get(s.source_id)) for s in states}
        problems = health.failing(states, site.catalog.enabled)
        # A feed outage is "degraded" with 200, never 503: a health check that fails
        # on it would get the container restarted, which mends no feed.
        body: dict[str, object] = {
            "status": "degraded" if problems else "ok",
            "database": "ok",
            "failing": [_failing_json(problem) for problem in problems],
            "sources": sources,
        }
        return _json(body, headers={"Cache-Control": "no-store"})

    return Route("/healthz", endpoint, methods=["GET"], name="healthz")


def _json(body: object, headers: Mapping[str, str]) -> Response:
    payload = json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return Response(payload, media_type="application/json", headers=dict(headers))


def _metrics_endpoint(reader: ArticleReader, site: _Site) -> Route:
    def endpoint(request: Request) -> Response:
        try:
            site.metrics.observe_states(reader.states())
            site.metrics.database_up.set(1)
        except StorageError as exc:
            # A scrape must still succeed when the database is down: that is when the
            # counters and database_up=0 matter most.
            logger.warning("metrics: cannot read source states: %s", exc)
            site.metrics.database_up.set(0)
        payload, content_type = site.metrics.render()
        return Response(payload, headers={"Content-Type": content_type})

    return Route("/metrics", endpoint, methods=["GET"], name="metrics")


class _SecurityHeaders:
    """Headers every answer carries: feeds, errors and the page alike.

    ``nosniff`` keeps a browser from treating a 400 message that quotes the
    client's input (``unknown source '<script>…'``) as HTML; the page needs no
    scripts, frames or plugins, so the content security policy forbids them all.
    """

    HEADERS: tuple[tuple[bytes, bytes], ...] = (
        (b"x-content-type-options", b"nosniff"),
        (
            b"content-security-policy",
            b"default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
        (b"referrer-policy", b"no-referrer"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [item for item in self.HEADERS if item[0] not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _TokenGate:
    """With ``feed_token`` set, everything but ``/healthz`` needs the token: as
    ``?token=``, as ``Authorization: Bearer``, or as the cookie a page visit with
    ``?token=`` sets (so the page's own links and search form keep working in a
    browser without the token in every URL).  Compared with
    :func:`hmac.compare_digest`, so the time taken does not tell how much matched.
    """

    COOKIE = "aggregator_token"
    OPEN = frozenset({"/healthz"})

    def __init__(self, app: ASGIApp, token: str, *, secure: bool) -> None:
        self.app = app
        self.token = token.encode("utf-8")
        self.cookie = f"{self.COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict" + (
            "; Secure" if secure else ""
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.OPEN:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        from_query = request.query_params.get("token")
        given = from_query or _bearer(request) or request.cookies.get(self.COOKIE) or ""
        if not hmac.compare_digest(given.encode("utf-8"), self.token):
            answer = PlainTextResponse(
                "a token is required (?token= or Authorization: Bearer)\n",
                status_code=401,
                headers={
                    "WWW-Authenticate": 'Bearer realm="aggregator"',
                    "Cache-Control": "no-store",
                },
            )
            await answer(scope, receive, send)
            return
        if from_query is None:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("set-cookie", self.cookie)
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _bearer(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _bad_request(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(f"bad request: {exc}\n", status_code=400)


def _storage_unavailable(request: Request, exc: Exception) -> Response:
    logger.warning("request %s failed: database unavailable: %s", request.url.path, exc)
    return PlainTextResponse(
        "database unavailable, try again later\n", status_code=503, headers={"Retry-After": "30"}
    )


def create_app(
    reader: ArticleReader,
    *,
    base_url: str,
    title: str = "aggregator",
    sources: Mapping[str, str] | SourceCatalog | None = None,
    default_limit: int = 50,
    max_limit: int = 500,
    id_authority: str | None = None,
    description: str = "",
    language: str | None = None,
    cache_max_age: int = 60,
    max_page_bytes: int = MAX_PAGE_BYTES,
    metrics: metrics_module.Metrics | None = None,
    topics: Sequence[Topic] = (),
    display_timezone: str = "UTC",
    feed_token: str | None = None,
) -> Starlette:
    """Build the ASGI app.

    Args:
        base_url: the public absolute URL the service is reached at (every link and
            feed id is built from it, never from the request).
        sources: source id -> display name; ``?source=`` accepts exactly these ids.  A
            :class:`SourceCatalog` (which also knows which are enabled) can be
            replaced while the app runs, when the daemon reloads its sources.
        id_authority: the ``host,year`` of the ``tag:`` item ids; defaults to the host
            of ``base_url`` and 2025.  Set it explicitly to keep ids when moving host.
        max_page_bytes: a feed page larger than this is served with fewer items (the
            rest on the next page), and a body too long for any page as its excerpt.
        metrics: defaults to :data:`aggregator.metrics.DEFAULT`, where the pipeline
            records polls.
        topics: saved searches, served at ``/topics/ID/feed.xml`` (and the other
            formats) and as ``?topic=ID``.
        display_timezone: the IANA zone the pages show times in.
        feed_token: when set, every endpoint but ``/healthz`` asks for it.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
    if not 1 <= default_limit <= max_limit:
        raise ValueError("need 1 <= default_limit <= max_limit")
    catalog = sources if isinstance(sources, SourceCatalog) else SourceCatalog(sources or {})
    site = _Site(
        base_url=base_url.rstrip("/"),
        title=title,
        sources=catalog,
        catalog=catalog,
        default_limit=default_limit,
        max_limit=max_limit,
        id_authority=id_authority or default_id_authority(base_url),
        description=description,
        language=language,
        cache_max_age=cache_max_age,
        max_page_bytes=max_page_bytes,
        metrics=metrics or metrics_module.DEFAULT,
        topics={topic.id: topic for topic in topics},
        timezone=zoneinfo.ZoneInfo(display_timezone),
    )
    cache = _ResponseCache(ttl=cache_max_age)
    routes = [
        _index_endpoint(reader, site),
        _article_endpoint(reader, site),
        *(_feed_endpoint(reader, site, fmt, path, cache) for path, fmt in _FEED_PATHS.items()),
        *(_topic_endpoint(reader, site, fmt, path, cache) for path, fmt in _FEED_PATHS.items()),
        _healthz_endpoint(reader, site),
        _metrics_endpoint(reader, site),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(_SecurityHeaders),
            *(
                [Middleware(_TokenGate, token=feed_token, secure=parts.scheme == "https")]
                if feed_token
                else []
            ),
            Middleware(GZipMiddleware, minimum_size=500, compresslevel=6),
        ],
        exception_handlers={BadRequest: _bad_request, StorageError: _storage_unavailable},
    )


# --- running it ----------------------------------------------------------------------


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that runs inside someone else's asyncio loop.

    Plain ``uvicorn.Server.serve()`` takes over SIGINT/SIGTERM and re-raises them on
    exit, which would fight the CLI's own shutdown handling for the scheduler.  Here
    the caller owns the signals and calls :meth:`stop`.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def stop(self) -> None:
        """Ask :meth:`serve` to finish in-flight requests and return."""
        self.should_exit = True


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the server starts.

    uvicorn binds inside ``serve()`` and, when the port is taken, logs the error and
    calls ``sys.exit(1)`` from within the event loop, which escaped the daemon as a
    traceback.  Binding first turns it into one :class:`ServiceError` line.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise ServiceError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def build_server(
    app: Starlette,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    max_header_bytes: int = 16 * 1024,
    max_connections: int = 1024,
    head_timeout: float = HEAD_TIMEOUT,
    access_log: bool = True,
    graceful_timeout: int = 10,
) -> EmbeddedServer:
    """A server to ``await server.serve()`` beside the scheduler; ``server.stop()`` ends it.

    The h11 protocol is chosen explicitly because its ``h11_max_incomplete_event_size``
    caps the request line plus headers (httptools would ignore that option); lifespan
    is off because the app has no startup work, and ``log_config=None`` leaves logging
    configuration to the CLI.  The protocol is h11 with a request-head deadline and
    slow sockets closed first when the connection limit is reached
    (:mod:`aggregator.httpguard`), so idle or trickling connections cannot lock out
    real requests.  ``max_connections`` (uvicorn's ``limit_concurrency``: open
    connections and requests in flight) is 1,024 rather than 256: an idle socket costs
    a few KB, and below the limit no socket is closed early, while at it attackers
    that reconnect at once turn eviction into a lottery (bench/flood.py: 600
    reconnecting sockets against a limit of 256 failed 9 of 10 client requests).
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(max_connections=max_connections, head_timeout=head_timeout),
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=access_log,
        server_header=False,
        h11_max_incomplete_event_size=max_header_bytes,
        limit_concurrency=max_connections,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=graceful_timeout,
    )
    return EmbeddedServer(config)
