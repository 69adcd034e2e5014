"""Size and time limits of the fetch, against misbehaving loopback servers.

tests/test_fetch.py already proves the basics (close-delimited endless body,
a 10 GiB Content-Length refused before reading, a 128 MiB gzip bomb with bounded
memory, a trickle stopped by the total deadline).  This adds the explicit 100 MB
cases the issue names (with and without Content-Length, and chunked), bombs in
other wrappings, and a server that trickles its *headers* forever.  The cap is
small (256 KiB) so each case stops after a fraction of a second.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
from feedserver import Exchange, FeedServer, Handler, endless, gzip_bomb, static, trickle

from aggregator.errors import FetchTimeoutError, ResponseTooLargeError
from aggregator.fetch import Fetcher, FetchLimits
from aggregator.types import FetchResult, Source

CAP = 256 * 1024
HUNDRED_MB = 100 * 1024 * 1024
LIMITS = FetchLimits(
    connect_timeout=2.0, read_timeout=2.0, total_timeout=5.0, max_bytes=CAP, allow_private=True
)


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


def fetch(url: str, limits: FetchLimits = LIMITS) -> FetchResult:
    async def run() -> FetchResult:
        async with Fetcher(limits) as fetcher:
            return await fetcher.fetch(Source(id="src", name="Source", url=url))

    return asyncio.run(run())


def chunked_endless(chunk: int = 64 * 1024) -> Handler:
    """A chunked body that never ends: neither Content-Length nor a close to count on."""
    block = b"%x\r\n" % chunk + b"y" * chunk + b"\r\n"

    def handle(exchange: Exchange) -> None:
        exchange.close = True
        exchange.send_head(
            200, {"Content-Type": "application/rss+xml", "Transfer-Encoding": "chunked"}
        )
        while not exchange.stopping.is_set():
            exchange.wfile.write(block)

    return handle


def compressed(payload: bytes, encoding: str) -> Handler:
    return static(payload, headers={"Content-Encoding": encoding})


def _zeros_deflate(size: int) -> bytes:
    squeezer = zlib.compressobj(9)
    block = bytes(1 << 20)
    return b"".join(squeezer.compress(block) for _ in range(size >> 20)) + squeezer.flush()


def endless_headers(interval: float = 0.05) -> Handler:
    """Header lines one at a time, forever: each arrives well within the idle timeout."""

    def handle(exchange: Exchange) -> None:
        exchange.close = True
        exchange.wfile.write(b"HTTP/1.1 200 OK\r\n")
        count = 0
        while not exchange.sleep(interval):
            exchange.wfile.write(b"X-Padding-%d: x\r\n" % count)
            exchange.wfile.flush()
            count += 1

    return handle


BODIES: dict[str, Handler] = {
    "100MB-no-content-length": endless(),
    "100MB-with-content-length": endless(content_length=HUNDRED_MB),
    "100MB-chunked": chunked_endless(),
    "gzip-bomb-100MB": gzip_bomb(HUNDRED_MB),
    "deflate-bomb-100MB": compressed(_zeros_deflate(HUNDRED_MB), "deflate"),
    "double-gzip-bomb": compressed(gzip.compress(gzip.compress(bytes(32 << 20))), "gzip, gzip"),
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_body_stops_at_the_cap_after_decompression(server: FeedServer, name: str) -> None:
    server.route(f"/{name}", BODIES[name])
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ResponseTooLargeError) as info:
            fetch(server.url(f"/{name}"))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 3.0
    assert peak < 8 * CAP + (2 << 20), f"peak {peak / 2**20:.1f} MiB"  # never near 100 MB
    assert info.value.url == server.url(f"/{name}")


def test_declared_100MB_is_refused_before_the_body_is_read(server: FeedServer) -> None:
    server.route("/declared", endless(content_length=HUNDRED_MB))
    with pytest.raises(ResponseTooLargeError, match="Content-Length"):
        fetch(server.url("/declared"))


def test_a_lying_small_content_length_cannot_smuggle_more(server: FeedServer) -> None:
    """Only the declared bytes are read; the rest of an endless stream is never taken."""
    server.route("/liar", endless(content_length=1000))
    result = fetch(server.url("/liar"))
    assert result.content is not None and len(result.content) == 1000


@pytest.mark.timeout(20)  # without the deadline these never end: fail, do not hang
@pytest.mark.parametrize(
    ("name", "handler"),
    [("trickle-body", trickle(interval=0.05)), ("trickle-headers", endless_headers())],
)
def test_trickling_server_hits_the_total_deadline(
    server: FeedServer, name: str, handler: Handler
) -> None:
    server.route(f"/{name}", handler)
    limits = FetchLimits(**{**LIMITS.__dict__, "read_timeout": 10.0, "total_timeout": 1.0})
    started = time.monotonic()
    with pytest.raises(FetchTimeoutError, match="deadline"):
        fetch(server.url(f"/{name}"), limits)
    assert 0.9 < time.monotonic() - started < 2.5
