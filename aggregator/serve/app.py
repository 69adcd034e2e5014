"""The ASGI app: the routes, the middleware every answer passes (security headers,
the feed token, gzip) and the error pages.

Endpoints are plain ``def`` functions on purpose: the store is synchronous, and
Starlette runs sync endpoints in its thread pool, so a slow query never stalls the
event loop that the scheduler shares with this server.

Imports from the package: ``export``, ``metrics``, ``search``, ``errors`` and the
endpoint modules of this package.
"""

from __future__ import annotations

import hmac
import logging
import zoneinfo
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import metrics as metrics_module
from ..errors import StorageError
from ..export.site import default_id_authority
from ..search import Topic
from .feeds import _feed_endpoint, _ResponseCache, _topic_endpoint
from .page import _article_endpoint, _index_endpoint
from .site import (
    _FEED_PATHS,
    LINK_TOKEN,
    ArticleReader,
    BadRequest,
    SourceCatalog,
    TopicCatalog,
    _Site,
)
from .status import _healthz_endpoint, _metrics_endpoint

logger = logging.getLogger(__name__)

MAX_PAGE_BYTES = 10 * 1024 * 1024  # a feed page is cut to fewer items above this


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
    ``Authorization: Bearer``, as ``?token=``, or as the cookie a page visit with
    ``?token=`` sets (so the page's own links and search form keep working in a
    browser without the token in every URL).  Compared with
    :func:`hmac.compare_digest`, so the time taken does not tell how much matched.

    A request let in by ``?token=`` has the token left in its scope under
    :data:`LINK_TOKEN`, for the links of the answer (:class:`~.site._Links` says why
    only those).
    """

    COOKIE = "aggregator_token"
    OPEN = frozenset({"/healthz"})

    def __init__(self, app: ASGIApp, token: str, *, secure: bool) -> None:
        self.app = app
        self.token = token
        self.cookie = f"{self.COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict" + (
            "; Secure" if secure else ""
        )

    def _valid(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(
            given.encode("utf-8"), self.token.encode("utf-8")
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.OPEN:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        by_header = self._valid(_bearer(request))
        by_query = not by_header and self._valid(request.query_params.get("token"))
        if not (by_header or by_query or self._valid(request.cookies.get(self.COOKIE))):
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
        if not by_query:
            await self.app(scope, receive, send)
            return
        scope[LINK_TOKEN] = self.token

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
    topics: Iterable[Topic] | TopicCatalog = (),
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
            formats) and as ``?topic=ID``.  A :class:`TopicCatalog` can be replaced
            while the app runs, when the daemon reloads its sources file.
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
        topics=topics if isinstance(topics, TopicCatalog) else TopicCatalog(topics),
        timezone=zoneinfo.ZoneInfo(display_timezone),
        private=feed_token is not None,
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
