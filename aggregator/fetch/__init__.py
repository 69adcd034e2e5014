"""The network edge: one conditional GET per poll, with hard limits.

This is the only module that talks HTTP (through httpx2).  Everything a hostile or
broken feed server can do to us is bounded here, so the rest of the pipeline only
ever sees a :class:`~aggregator.types.FetchResult` or a
:class:`~aggregator.errors.FetchError`:

* **time** - connect and read-idle timeouts *and* a total deadline over the whole
  fetch (all redirect hops and the body).  Idle timeouts alone never stop a server
  that trickles one byte just often enough (of the aggregators we studied, only
  CommaFeed has such a separate response deadline).
* **size** - the body is counted *after* decompression, and gzip/deflate are
  inflated by :mod:`aggregator.inflate` with ``zlib.decompressobj(max_length=...)``
  so a decompression bomb never allocates much more than the cap: while streaming,
  or, for a feed the poller parses in a worker, there (``fetch(inflate=False)``).
  httpx2's own decoders inflate a whole network chunk at once, which is unbounded.
* **where** - redirects are followed by hand so each hop's scheme is checked and the
  permanent-vs-temporary decision (:attr:`FetchResult.permanent_url`) is ours; the
  address check happens at connect time in :mod:`aggregator.netguard`.
* **how many** - one keep-alive pool per address policy per :class:`Fetcher`, and
  at most ``max_connections`` fetches in flight.

Why httpx2 and not httpx: httpx2 is httpx's maintained continuation (same API, the
Pydantic team; Starlette's test client already prefers it).  Its connection pool
(httpcore2) assigns requests in one linear pass; httpcore 1.0's pass was quadratic in
the pool size and was half the CPU of a 304 poll.  Measured on loopback, 16
connections: 1.19 ms of CPU per conditional GET with httpx 0.28, 0.64 ms with httpx2.

Here the fetch itself (redirects, body, errors); beside it, each importing none of the
other (the ``fetch`` contract in ``pyproject.toml``): :mod:`.headers` (the limits and
the header values) and :mod:`.transport` (the guarded pools).

Imports from the package: ``netguard``, ``errors``, ``types`` and, in
:mod:`.headers`, the package's ``__version__`` (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass, replace
from types import TracebackType
from urllib.parse import urlsplit

import httpx2

from aggregator.errors import (
    BlockedURLError,
    FetchError,
    FetchTimeoutError,
    GoneError,
    HTTPStatusError,
    RateLimitedError,
    ResponseTooLargeError,
)
from aggregator.fetch.headers import (
    ACCEPT,
    DEFAULT_USER_AGENT,
    PAGE_ACCEPT,
    RETRY_AFTER_MAX,
    FetchLimits,
    _declared_length,
    _validator,
    parse_retry_after,
)
from aggregator.fetch.transport import (
    _LAX,
    _POLICY_EXTENSION,
    _PUBLIC,
    _STRICT,
    _guarded_transport,
    _PolicyRouter,
)
from aggregator.inflate import Body
from aggregator.netguard import AddressPolicy, AddressRefusedError
from aggregator.types import FetchResult, Source, SourceState

__all__ = [
    "ACCEPT",
    "DEFAULT_USER_AGENT",
    "FetchLimits",
    "Fetcher",
    "RETRY_AFTER_MAX",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)

_ALLOWED_SCHEMES = frozenset({"http", "https"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT_REDIRECTS = frozenset({301, 308})
_DRAIN_LIMIT = 64 * 1024  # an unread body worth reading to keep its connection alive


@dataclass
class _Attempt:
    """Where one fetch is, so every error can name the hop it failed on."""

    source: Source
    url: str
    allow_private: bool
    hops: int = 0
    permanent: bool = True
    #: For an article page: the hosts allowed on private addresses (the source's feed
    #: hosts, when it may live there); ``None`` for a feed, where ``allow_private`` rules.
    private_hosts: frozenset[str] | None = None
    accept: str = ACCEPT
    #: Undo the content codings here; else they stay on the result's content.
    inflate: bool = True

    def error_context(self) -> dict[str, str]:
        return {"source": self.source.id, "url": self.url}

    def policy(self, host: str) -> str:
        """The pool for a request to ``host``: chosen per hop, so a page's redirect to
        another private host is refused even when the first hop was allowed."""
        if self.private_hosts is None:
            return _LAX if self.allow_private else _STRICT
        return _LAX if host.lower() in self.private_hosts else _PUBLIC


class Fetcher:
    """Fetches feeds over one shared, bounded HTTP client.

    Use as ``async with Fetcher(limits) as fetcher: await fetcher.fetch(source, state)``.
    ``max_connections`` bounds both the fetches in flight and each connection pool;
    fetches beyond it wait *before* their deadline starts, so queueing behind slow
    feeds is not mistaken for a slow feed.
    """

    def __init__(self, limits: FetchLimits | None = None, *, max_connections: int = 16) -> None:
        self.limits = limits = limits if limits is not None else FetchLimits()
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        pool_limits = httpx2.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        )
        strict = AddressPolicy(
            allow_private=limits.allow_private, allow_networks=limits.allow_networks
        )
        public = AddressPolicy(allow_private=False, allow_networks=limits.allow_networks)
        # The transport, not an httpx2.AsyncClient: redirects are followed by hand (each
        # hop checked), and no auth, cookie jar or event hooks are wanted, yet the client
        # runs them on every request (about 0.14 ms of CPU each, a sixth of a 304 poll).
        # No cookies also means no state shared between sources, as with Miniflux.
        # One TLS context for both pools: loading the trust store is the costly part.
        # SSL_CERT_FILE / SSL_CERT_DIR are honoured (a private CA); proxies are not
        # (the transports' trust_env=False), since a proxy would bypass the SSRF guard.
        ssl_context = httpx2.create_ssl_context()
        lax = AddressPolicy(allow_private=True)
        self._transport = _PolicyRouter(
            {
                name: _guarded_transport(policy, pool_limits, ssl_context)
                for name, policy in ((_STRICT, strict), (_LAX, lax), (_PUBLIC, public))
            }
        )
        self._timeout = httpx2.Timeout(
            connect=limits.connect_timeout,
            read=limits.read_timeout,
            write=limits.read_timeout,
            pool=limits.total_timeout,
        ).as_dict()
        self._headers = {
            "User-Agent": limits.user_agent,
            "Accept": ACCEPT,
            "Accept-Encoding": "gzip, deflate",
        }
        self._slots = asyncio.Semaphore(max_connections)

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def fetch(
        self, source: Source, state: SourceState | None = None, *, inflate: bool = True
    ) -> FetchResult:
        """One conditional GET of ``state.url`` (else ``source.url``).

        With ``inflate=False`` a gzip or deflate body stays compressed, its codings in
        ``FetchResult.encodings``: its parse undoes them with the same bounds
        (:func:`aggregator.inflate.decoded`), so a daemon with parse workers neither
        inflates a feed nor sends it to a worker inflated (the pipe carried 266 MB
        instead of 109 in a 1,000-feed first poll, and the daemon's peak was 2-4 MB
        higher).

        Raises:
            BlockedURLError: a hop's scheme or address is refused.
            GoneError: 410.
            RateLimitedError: 429 or 503, with ``retry_after`` if the server gave one.
            HTTPStatusError: any other status that is not 2xx or 304.
            FetchTimeoutError: connect/idle timeout or the total deadline.
            ResponseTooLargeError: body over ``max_bytes`` (after decompression, when
                this call inflates).
            FetchError: anything else on the network leg (reset, refused, DNS, bad gzip).
        """
        attempt = _Attempt(
            source=source,
            url=state.url if state is not None else source.url,
            allow_private=source.allow_private or self.limits.allow_private,
            inflate=inflate,
        )
        return await self._fetch(attempt, state)

    async def fetch_page(
        self,
        url: str,
        *,
        source: Source,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> FetchResult:
        """One conditional GET of an article page of ``source`` (full text).

        The same limits and errors as :meth:`fetch`, with one difference in where it
        may go: a source allowed on private addresses is allowed there only on the
        hosts of its own feed URLs; any other private, loopback or link-local
        address, on any hop, is refused (:class:`BlockedURLError`).
        """
        allowed = source.allow_private or self.limits.allow_private
        hosts = {urlsplit(feed).hostname or "" for feed in source.urls} if allowed else set()
        attempt = _Attempt(
            source=source,
            url=url,
            allow_private=False,
            private_hosts=frozenset(host.lower() for host in hosts if host),
            accept=PAGE_ACCEPT,
        )
        state = SourceState(source.id, url, etag=etag, last_modified=last_modified)
        return await self._fetch(attempt, state)

    async def _fetch(self, attempt: _Attempt, state: SourceState | None) -> FetchResult:
        headers: dict[str, str] = {}
        # Validated again: a state written before the check (or by hand) may hold any text.
        etag = _validator(state.etag) if state is not None else None
        last_modified = _validator(state.last_modified) if state is not None else None
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        async with self._slots:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.limits.total_timeout):
                    result = await self._follow(attempt, headers, state, started)
            except TimeoutError as exc:
                logger.debug("fetch exceeded the %.1f s total deadline", self.limits.total_timeout)
                raise FetchTimeoutError(
                    f"no complete answer within the {self.limits.total_timeout:g} s deadline",
                    **attempt.error_context(),
                ) from exc
        # DEBUG: the pipeline logs each poll's outcome once; this is the network detail.
        # The poll's log lines already start with its source and URL (log.bound).
        logger.debug(
            "fetched status=%d bytes=%s%s in %.2f s",
            result.status,
            "-" if result.content is None else len(result.content),
            f" ({', '.join(result.encodings)}, left to the parse)" if result.encodings else "",
            result.elapsed,
        )
        return result

    async def _follow(
        self,
        attempt: _Attempt,
        headers: dict[str, str],
        state: SourceState | None,
        started: float,
    ) -> FetchResult:
        start_url = attempt.url
        while True:
            self._check_scheme(attempt)
            response = await self._send(attempt, headers)
            try:
                status = response.status_code
                if status not in _REDIRECTS:
                    result = await self._answer(attempt, response, state, started)
                    if attempt.permanent and attempt.hops > 0 and attempt.url != start_url:
                        result = replace(result, permanent_url=attempt.url)
                    return result
                location = response.headers.get("location")
                if not location:
                    raise HTTPStatusError(
                        "redirect without a Location", status=status, **attempt.error_context()
                    )
                try:
                    target = str(response.url.join(location.strip()))
                except (httpx2.InvalidURL, ValueError) as exc:  # UnicodeError (IDNA) too
                    raise FetchError(
                        f"redirect to an invalid URL {location!r}", **attempt.error_context()
                    ) from exc
            finally:
                await _close(response)
            attempt.hops += 1
            if attempt.hops > self.limits.max_redirects:
                raise FetchError(
                    f"more than {self.limits.max_redirects} redirects", **attempt.error_context()
                )
            attempt.permanent = attempt.permanent and status in _PERMANENT_REDIRECTS
            logger.debug("following %d redirect from %s to %s", status, attempt.url, target)
            attempt.url = target

    @staticmethod
    def _check_scheme(attempt: _Attempt) -> None:
        scheme = attempt.url.partition(":")[0].lower() if ":" in attempt.url else ""
        if scheme not in _ALLOWED_SCHEMES:
            logger.debug("refusing URL scheme %r of %s", scheme, attempt.url)
            raise BlockedURLError(
                f"scheme {scheme or '(none)'!r} is not http or https", **attempt.error_context()
            )

    async def _send(self, attempt: _Attempt, headers: dict[str, str]) -> httpx2.Response:
        try:
            request = httpx2.Request(
                "GET",
                _parsed_url(attempt.url),
                headers={**self._headers, "Accept": attempt.accept, **headers},
                extensions={"timeout": self._timeout},
            )
        except (httpx2.InvalidURL, ValueError) as exc:  # UnicodeError (IDNA) too
            raise FetchError("invalid URL", **attempt.error_context()) from exc
        if not request.url.host:
            # ``http:/path`` and the like: nothing to connect to.
            raise FetchError("invalid URL: no host", **attempt.error_context())
        request.extensions[_POLICY_EXTENSION] = attempt.policy(request.url.host)
        with _translate(attempt):
            response = await self._transport.handle_async_request(request)
        response.request = request
        return response

    async def _answer(
        self,
        attempt: _Attempt,
        response: httpx2.Response,
        state: SourceState | None,
        started: float,
    ) -> FetchResult:
        status = response.status_code
        context = attempt.error_context()
        if status == 410:
            raise GoneError(**context)
        if status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise RateLimitedError(f"HTTP {status}", retry_after=retry_after, **context)
        if status != 304 and not 200 <= status < 300:
            raise HTTPStatusError(status=status, **context)
        content: bytes | None = None
        encodings: tuple[str, ...] = ()
        if status != 304:
            content, encodings = await self._read_body(attempt, response)
        headers = {name.lower(): value for name, value in response.headers.items()}
        etag = _validator(headers.get("etag"))
        last_modified = _validator(headers.get("last-modified"))
        if status == 304 and state is not None:
            # A 304 need not repeat the validators; the stored ones stay valid.
            etag = etag or state.etag
            last_modified = last_modified or state.last_modified
        return FetchResult(
            url=attempt.url,
            status=status,
            content=content,
            encodings=encodings,
            headers=headers,
            etag=etag,
            last_modified=last_modified,
            elapsed=time.monotonic() - started,
        )

    async def _read_body(
        self, attempt: _Attempt, response: httpx2.Response
    ) -> tuple[bytes, tuple[str, ...]]:
        """The body, and the content codings still on it (none unless the attempt
        leaves them: see :meth:`Fetcher.fetch`)."""
        cap = self.limits.max_bytes
        context = attempt.error_context()
        declared = _declared_length(response.headers.get("content-length"))
        if declared is not None and declared > cap:
            raise ResponseTooLargeError(
                f"Content-Length {declared} is over the {cap} byte cap", **context
            )
        encodings = [
            token.strip().lower()
            for token in response.headers.get("content-encoding", "").split(",")
            if token.strip() and token.strip().lower() != "identity"
        ]
        unknown = [name for name in encodings if name not in ("gzip", "x-gzip", "deflate")]
        if unknown:
            raise FetchError(f"unsupported Content-Encoding {unknown[0]!r}", **context)
        # Left on the body (undone by the parse, in a worker) when the caller asks.
        undone, kept = (encodings, ()) if attempt.inflate else ((), tuple(encodings))
        body = Body(undone, cap, **context)
        received = 0
        with _translate(attempt):
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received > cap:  # compressed padding can be endless too
                    raise ResponseTooLargeError(f"body is over the {cap} byte cap", **context)
                body.feed(chunk)
        return body.finish(), kept


@functools.lru_cache(maxsize=4096)
def _parsed_url(url: str) -> httpx2.URL:
    """``url`` parsed once: the same few thousand feed URLs are fetched over and over,
    and parsing them (IDNA, percent-encoding checks) was 5% of the instructions of a
    conditional GET (callgrind, loopback 304s).  URLs are immutable, so requests can
    share one."""
    return httpx2.URL(url)


async def _close(response: httpx2.Response) -> None:
    """Close ``response``, first reading a short unread body so its connection is kept.

    httpcore2 puts a connection back in the keep-alive pool only once its response was
    read to the end.  A 304, a redirect or an error page is closed unread, so without
    this every conditional GET (most polls) would open a new TCP and TLS connection:
    measured on loopback, 0.97 ms of CPU per 304 instead of 0.57 ms.  A long body is not
    worth reading; its connection is dropped.
    """
    try:
        if not response.is_stream_consumed:
            received = 0
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received > _DRAIN_LIMIT:
                    break
    except httpx2.HTTPError as exc:
        # Only the connection's reuse is lost; the answer was already taken.
        logger.debug("connection to %s not reusable (%s)", response.request.url, exc)
    finally:
        await response.aclose()


class _translate:
    """Turn httpx2 exceptions into ours, naming the source and the hop."""

    def __init__(self, attempt: _Attempt) -> None:
        self._attempt = attempt

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not isinstance(exc, httpx2.HTTPError):
            return
        attempt = self._attempt
        context = attempt.error_context()
        refused = _find_cause(exc, AddressRefusedError)
        if refused is not None:
            raise BlockedURLError(
                f"address {refused.address} of {refused.host!r} is not public (to poll it, set "
                "allow_private = true on the source or allow_private_addresses = true)",
                **context,
            ) from exc
        if isinstance(exc, httpx2.TimeoutException):
            logger.debug("%s from %s", type(exc).__name__, attempt.url)
            raise FetchTimeoutError(f"timed out ({type(exc).__name__})", **context) from exc
        # DEBUG: the error is raised with the same context and the pipeline logs it once.
        logger.debug("network error from %s: %s", attempt.url, exc)
        raise FetchError(f"network error ({type(exc).__name__})", **context) from exc


def _find_cause(exc: BaseException, kind: type[AddressRefusedError]) -> AddressRefusedError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
