"""Fault injection against a real local HTTP server (tests/feedserver.py).

Limits are shrunk so every failure mode is reached in well under a second or two;
the production defaults are exercised only for their values.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx2
import pytest
from feedserver import (
    Exchange,
    FeedServer,
    endless,
    gzip_bomb,
    redirect,
    reset,
    stall,
    static,
    status,
    trickle,
    wrong_charset,
)

from aggregator.errors import (
    BlockedURLError,
    FetchError,
    FetchTimeoutError,
    GoneError,
    HTTPStatusError,
    RateLimitedError,
    ResponseTooLargeError,
)
from aggregator.fetch import Fetcher, FetchLimits, parse_retry_after
from aggregator.inflate import decoded
from aggregator.netguard import parse_networks
from aggregator.types import FetchResult, Source, SourceState

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
LIMITS = FetchLimits(
    connect_timeout=2.0,
    read_timeout=2.0,
    total_timeout=5.0,
    max_bytes=256 * 1024,
    allow_private=True,
)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


def source_for(url: str, *, allow_private: bool = False) -> Source:
    return Source(id="src", name="Source", url=url, allow_private=allow_private)


def fetch(
    url: str,
    *,
    limits: FetchLimits = LIMITS,
    state: SourceState | None = None,
    allow_private: bool = False,
    inflate: bool = True,
) -> FetchResult:
    async def run() -> FetchResult:
        async with Fetcher(limits) as fetcher:
            source = source_for(url, allow_private=allow_private)
            return await fetcher.fetch(source, state, inflate=inflate)

    return asyncio.run(run())


# -- success, conditional GET, headers --------------------------------------------


def test_200_with_validators_then_304(server: FeedServer) -> None:
    modified = "Tue, 01 Oct 2024 10:00:00 GMT"
    server.route("/feed", static(FEED, etag='"v1"', last_modified=modified))
    url = server.url("/feed")

    first = fetch(url)
    assert (first.status, first.content, first.url) == (200, FEED, url)
    assert (first.etag, first.last_modified) == ('"v1"', modified)
    assert first.headers["content-type"].startswith("application/rss+xml")
    assert all(name == name.lower() for name in first.headers)
    assert first.permanent_url is None
    assert first.elapsed > 0

    state = SourceState(source_id="src", url=url, etag=first.etag, last_modified=modified)
    second = fetch(url, state=state)
    assert second.not_modified and second.status == 304 and second.content is None
    assert second.etag == '"v1"'

    sent = [request.headers for request in server.requests("/feed")]
    assert len(sent) == 2
    assert "if-none-match" not in sent[0] and "if-modified-since" not in sent[0]
    assert sent[1]["if-none-match"] == '"v1"'
    assert sent[1]["if-modified-since"] == modified


def test_304_keeps_stored_validators_when_the_server_omits_them(server: FeedServer) -> None:
    server.route("/feed", status(304))
    state = SourceState(source_id="src", url=server.url("/feed"), etag='"e"', last_modified="x")
    result = fetch(state.url, state=state)
    assert result.not_modified
    assert (result.etag, result.last_modified) == ('"e"', "x")


def test_state_url_wins_over_the_configured_url(server: FeedServer) -> None:
    server.route("/moved", static(FEED))
    state = SourceState(source_id="src", url=server.url("/moved"))

    async def run() -> FetchResult:
        async with Fetcher(LIMITS) as fetcher:
            return await fetcher.fetch(source_for(server.url("/original")), state)

    assert asyncio.run(run()).content == FEED
    assert server.requests("/original") == []


def test_unread_answers_keep_the_connection_alive(server: FeedServer) -> None:
    """A 304, a redirect and an error page leave the connection reusable.

    Most polls are 304s; closing their connection unread would cost a new TCP (and
    TLS) handshake per poll.  A long error body is not read just to save a connection.
    """
    server.route("/feed", static(FEED, etag='"v1"'))
    server.route("/old", redirect("/feed", 302))
    server.route("/missing", status(404, body=b"not here"))
    server.route("/huge-error", status(500, body=b"x" * 200_000))
    state = SourceState(source_id="src", url=server.url("/feed"), etag='"v1"')

    async def run() -> None:
        async with Fetcher(LIMITS, max_connections=1) as fetcher:
            for _ in range(3):
                assert (await fetcher.fetch(source_for(state.url), state)).not_modified
            assert (await fetcher.fetch(source_for(server.url("/old")))).content == FEED
            with pytest.raises(HTTPStatusError):
                await fetcher.fetch(source_for(server.url("/missing")))
            assert (await fetcher.fetch(source_for(state.url), state)).not_modified
            with pytest.raises(HTTPStatusError):
                await fetcher.fetch(source_for(server.url("/huge-error")))
            assert (await fetcher.fetch(source_for(state.url), state)).not_modified

    asyncio.run(run())
    ports = [request.client[1] for request in server.requests()]
    assert len(ports) == 9
    assert len(set(ports[:8])) == 1  # one connection up to and including the huge error
    assert ports[8] != ports[7]  # the unread 200 kB error body cost its connection


def test_a_pooled_connection_the_server_closed_is_not_reused(server: FeedServer) -> None:
    """A keep-alive connection the server hung up on while idle is detected and replaced.

    The server answers without ``Connection: close`` and then closes the socket, as a
    server does when its keep-alive timeout runs out: the next fetch must not be sent
    down the dead connection (it would fail), but on a new one.
    """

    def answer_then_hang_up(exchange: Exchange) -> None:
        exchange.send(200, FEED, {"Content-Type": "application/rss+xml"})
        exchange.close = True  # after the head: the client was not told

    server.route("/feed", answer_then_hang_up)

    async def run() -> list[bytes | None]:
        async with Fetcher(LIMITS, max_connections=1) as fetcher:
            bodies = []
            for _ in range(3):
                bodies.append((await fetcher.fetch(source_for(server.url("/feed")))).content)
                await asyncio.sleep(0.05)  # the FIN arrives
            return bodies

    assert asyncio.run(run()) == [FEED] * 3
    assert len({request.client[1] for request in server.requests("/feed")}) == 3


def test_request_headers_identify_us(server: FeedServer) -> None:
    server.route("/feed", static(FEED))
    fetch(server.url("/feed"))
    headers = server.requests("/feed")[0].headers
    assert headers["user-agent"].startswith("aggregator/")
    assert "application/rss+xml" in headers["accept"]
    assert headers["accept-encoding"] == "gzip, deflate"


def test_wrong_charset_body_is_passed_through_untouched(server: FeedServer) -> None:
    text = "<rss><channel><title>联合早报</title></channel></rss>"
    server.route("/feed", wrong_charset(text))
    result = fetch(server.url("/feed"))
    assert result.content == text.encode("gb18030")
    assert "charset=utf-8" in result.headers["content-type"]


# -- redirects --------------------------------------------------------------------


def chain(server: FeedServer, codes: list[int]) -> str:
    """Route /r0 -> /r1 -> ... -> /feed with the given redirect codes; return /r0's URL."""
    for index, code in enumerate(codes):
        target = f"/r{index + 1}" if index + 1 < len(codes) else "/feed"
        server.route(f"/r{index}", redirect(target, code))
    server.route("/feed", static(FEED))
    return server.url("/r0")


@pytest.mark.parametrize(
    ("codes", "permanent"),
    [
        ([301], True),
        ([308], True),
        ([301, 308, 301], True),
        ([302], False),
        ([307], False),
        ([303], False),
        ([301, 302], False),
        ([307, 308], False),
    ],
)
def test_redirect_chains(server: FeedServer, codes: list[int], permanent: bool) -> None:
    result = fetch(chain(server, codes))
    assert result.content == FEED
    assert result.url == server.url("/feed")
    assert result.permanent_url == (server.url("/feed") if permanent else None)
    assert len(server.requests()) == len(codes) + 1


def test_absolute_redirect_and_conditional_headers_follow(server: FeedServer) -> None:
    server.route("/old", redirect(server.url("/feed"), 301))
    server.route("/feed", static(FEED, etag='"v1"'))
    state = SourceState(source_id="src", url=server.url("/old"), etag='"v1"')
    result = fetch(state.url, state=state)
    assert result.not_modified
    assert result.permanent_url == server.url("/feed")


def test_redirect_limit(server: FeedServer) -> None:
    limits = FetchLimits(**{**LIMITS.__dict__, "max_redirects": 2})
    assert fetch(chain(server, [301, 301]), limits=limits).content == FEED
    with pytest.raises(FetchError, match="more than 2 redirects") as info:
        fetch(chain(server, [301, 301, 301]), limits=limits)
    assert info.value.source == "src"
    assert info.value.url == server.url("/r2")  # the hop whose redirect was one too many
    assert len(server.requests("/r2")) == 1
    assert len(server.requests("/feed")) == 1  # only the first, allowed chain got there


def test_redirect_loop_is_stopped(server: FeedServer) -> None:
    server.route("/a", redirect("/b", 302))
    server.route("/b", redirect("/a", 302))
    with pytest.raises(FetchError, match="redirects"):
        fetch(server.url("/a"))
    assert len(server.requests()) == LIMITS.max_redirects + 1


def test_redirect_without_location(server: FeedServer) -> None:
    server.route("/feed", status(302))
    with pytest.raises(HTTPStatusError) as info:
        fetch(server.url("/feed"))
    assert info.value.status == 302


@pytest.mark.parametrize(
    "target", ["file:///etc/passwd", "ftp://127.0.0.1/feed", "gopher://127.0.0.1/"]
)
def test_redirect_to_other_schemes_is_refused(server: FeedServer, target: str) -> None:
    server.route("/feed", redirect(target, 301))
    with pytest.raises(BlockedURLError) as info:
        fetch(server.url("/feed"))
    assert info.value.url is not None
    assert info.value.url.partition(":")[0] == target.partition(":")[0]  # httpx2 drops "//"
    assert info.value.source == "src"


def test_configured_url_with_other_scheme_is_refused() -> None:
    with pytest.raises(BlockedURLError):
        fetch("file:///etc/passwd")


# -- SSRF guard through the fetcher -------------------------------------------------


def test_private_source_refused_before_connecting(server: FeedServer) -> None:
    server.route("/feed", static(FEED))
    strict = FetchLimits(**{**LIMITS.__dict__, "allow_private": False})
    with pytest.raises(BlockedURLError) as info:
        fetch(server.url("/feed"), limits=strict)
    assert info.value.url == server.url("/feed")
    assert "127.0.0.1" in str(info.value)
    assert server.requests() == []


def test_private_source_allowed_per_source(server: FeedServer) -> None:
    server.route("/feed", static(FEED))
    strict = FetchLimits(**{**LIMITS.__dict__, "allow_private": False})
    assert fetch(server.url("/feed"), limits=strict, allow_private=True).content == FEED


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://127.0.0.2:{port}/feed",
        "http://[::ffff:127.0.0.1]:{port}/feed",
        "http://[::1]:{port}/feed",
    ],
)
def test_redirect_into_private_space_is_refused(server: FeedServer, target: str) -> None:
    # Only 127.0.0.1 itself (the test server) is allowed, exactly, so the first hop
    # works and every redirect target is judged by the strict policy.
    target = target.format(port=server.port)
    server.route("/feed", static(FEED))
    server.route("/go", redirect(target, 302))
    exactly_the_server = parse_networks(["127.0.0.1/32"])
    limits = FetchLimits(
        **{**LIMITS.__dict__, "allow_private": False, "allow_networks": exactly_the_server}
    )
    started = time.monotonic()
    with pytest.raises(BlockedURLError) as info:
        fetch(server.url("/go"), limits=limits)
    assert time.monotonic() - started < 1.0  # refused, not a connect attempt timing out
    assert info.value.url == target
    assert [request.path for request in server.requests()] == ["/go"]


def test_private_keepalive_connection_is_not_reused_by_a_strict_source(
    server: FeedServer,
) -> None:
    server.route("/feed", static(FEED))
    strict = FetchLimits(**{**LIMITS.__dict__, "allow_private": False})

    async def run() -> None:
        async with Fetcher(strict) as fetcher:
            trusted = source_for(server.url("/feed"), allow_private=True)
            assert (await fetcher.fetch(trusted)).content == FEED
            with pytest.raises(BlockedURLError):
                await fetcher.fetch(source_for(server.url("/feed")))

    asyncio.run(run())
    assert len(server.requests("/feed")) == 1


# -- status codes ---------------------------------------------------------------------


def test_410_is_gone(server: FeedServer) -> None:
    server.route("/feed", status(410))
    with pytest.raises(GoneError) as info:
        fetch(server.url("/feed"))
    assert (info.value.status, info.value.source, info.value.url) == (
        410,
        "src",
        server.url("/feed"),
    )


@pytest.mark.parametrize(
    ("code", "header", "expected"),
    [
        (429, "120", 120.0),
        (503, "7", 7.0),
        (429, None, None),
        (503, None, None),
        (429, "soon, maybe", None),
    ],
)
def test_rate_limited(
    server: FeedServer, code: int, header: str | None, expected: float | None
) -> None:
    server.route("/feed", status(code, retry_after=header))
    with pytest.raises(RateLimitedError) as info:
        fetch(server.url("/feed"))
    assert info.value.retry_after == expected
    assert info.value.url == server.url("/feed")


def test_rate_limited_with_http_date(server: FeedServer) -> None:
    when = datetime.now(UTC) + timedelta(seconds=90)
    server.route("/feed", status(429, retry_after=format_datetime(when, usegmt=True)))
    with pytest.raises(RateLimitedError) as info:
        fetch(server.url("/feed"))
    assert info.value.retry_after is not None
    assert 80 <= info.value.retry_after <= 90


@pytest.mark.parametrize("code", [500, 404, 403, 400])
def test_other_statuses(server: FeedServer, code: int) -> None:
    server.route("/feed", status(code))
    with pytest.raises(HTTPStatusError) as info:
        fetch(server.url("/feed"))
    assert type(info.value) is HTTPStatusError
    assert info.value.status == code
    assert f"status={code}" in str(info.value) and "source=src " in str(info.value)


def test_parse_retry_after() -> None:
    now = datetime(2024, 10, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("30", now=now) == 30.0
    assert parse_retry_after(" 0 ", now=now) == 0.0
    assert parse_retry_after("Tue, 01 Oct 2024 12:01:00 GMT", now=now) == 60.0
    assert parse_retry_after("Tue, 01 Oct 2024 11:00:00 GMT", now=now) == 0.0
    for garbage in (None, "", "-5", "1.5", "later", "Tue, 99 Foo 2024"):
        assert parse_retry_after(garbage, now=now) is None


# -- broken connections and time limits ---------------------------------------------------


@pytest.mark.parametrize("after_head", [False, True])
def test_connection_reset(server: FeedServer, after_head: bool) -> None:
    server.route("/feed", reset(after_head=after_head))
    with pytest.raises(FetchError) as info:
        fetch(server.url("/feed"))
    assert type(info.value) is FetchError
    assert isinstance(info.value.__cause__, httpx2.TransportError)
    assert info.value.url == server.url("/feed")


def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FetchError) as info:
        fetch(f"http://127.0.0.1:{port}/feed")
    assert type(info.value) is FetchError
    assert isinstance(info.value.__cause__, httpx2.ConnectError)


def test_unresolvable_host() -> None:
    with pytest.raises(FetchError) as info:
        fetch("http://no-such-host.invalid/feed")
    assert type(info.value) in (FetchError, FetchTimeoutError)
    assert info.value.url == "http://no-such-host.invalid/feed"


def test_stall_mid_body_hits_the_idle_timeout(server: FeedServer) -> None:
    server.route("/feed", stall(seconds=30))
    limits = FetchLimits(**{**LIMITS.__dict__, "read_timeout": 0.5, "total_timeout": 10.0})
    started = time.monotonic()
    with pytest.raises(FetchTimeoutError) as info:
        fetch(server.url("/feed"), limits=limits)
    assert 0.4 < time.monotonic() - started < 3.0
    assert isinstance(info.value.__cause__, httpx2.ReadTimeout)


def test_trickle_is_stopped_by_the_total_deadline(server: FeedServer) -> None:
    # A byte every 0.1 s never trips a 10 s idle timeout; only the deadline can stop it.
    server.route("/feed", trickle(interval=0.1))
    limits = FetchLimits(**{**LIMITS.__dict__, "read_timeout": 10.0, "total_timeout": 1.5})
    started = time.monotonic()
    with pytest.raises(FetchTimeoutError, match="deadline"):
        fetch(server.url("/feed"), limits=limits)
    assert 1.4 < time.monotonic() - started < 3.0


# -- size cap and decompression ---------------------------------------------------------------


def test_endless_body_without_content_length(server: FeedServer) -> None:
    server.route("/feed", endless())
    with pytest.raises(ResponseTooLargeError) as info:
        fetch(server.url("/feed"))
    assert info.value.url == server.url("/feed")


def test_huge_content_length_fails_before_reading(server: FeedServer) -> None:
    server.route("/feed", endless(content_length=10 * 1024**3))
    with pytest.raises(ResponseTooLargeError, match="Content-Length"):
        fetch(server.url("/feed"))


def test_body_exactly_at_the_cap_is_accepted(server: FeedServer) -> None:
    server.route("/feed", static(b"x" * LIMITS.max_bytes))
    assert fetch(server.url("/feed")).content == b"x" * LIMITS.max_bytes
    server.route("/over", static(b"x" * (LIMITS.max_bytes + 1)))
    with pytest.raises(ResponseTooLargeError):
        fetch(server.url("/over"))


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_body_is_decoded(server: FeedServer, encoding: str) -> None:
    body = FEED * 500
    server.route("/feed", static(body, content_encoding=encoding))
    result = fetch(server.url("/feed"))
    assert result.content == body
    assert result.headers["content-encoding"] == encoding


def test_raw_deflate_and_multi_member_gzip(server: FeedServer) -> None:
    squeezer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = squeezer.compress(FEED) + squeezer.flush()
    server.route("/raw", static(raw, headers={"Content-Encoding": "deflate"}))
    members = gzip.compress(FEED[:20]) + gzip.compress(FEED[20:])
    server.route("/members", static(members, headers={"Content-Encoding": "gzip"}))
    assert fetch(server.url("/raw")).content == FEED
    assert fetch(server.url("/members")).content == FEED


def test_compressed_body_over_the_cap_after_decompression(server: FeedServer) -> None:
    body = b"a" * (LIMITS.max_bytes + 1)  # compresses to a few hundred bytes
    server.route("/feed", static(body, content_encoding="gzip"))
    with pytest.raises(ResponseTooLargeError, match="decompression"):
        fetch(server.url("/feed"))


@pytest.mark.parametrize("payload", [b"\x1f\x8bnot really gzip", gzip.compress(FEED)[:-12]])
def test_corrupt_or_truncated_gzip(server: FeedServer, payload: bytes) -> None:
    server.route("/feed", static(payload, headers={"Content-Encoding": "gzip"}))
    with pytest.raises(FetchError, match="compressed body"):
        fetch(server.url("/feed"))


def test_gzip_bomb_is_stopped_with_bounded_memory(server: FeedServer) -> None:
    bomb = gzip_bomb(128 << 20)  # 128 MiB of zeros in ~130 KB; built before measuring
    server.route("/feed", bomb)
    limits = FetchLimits(**{**LIMITS.__dict__, "max_bytes": 1 << 20})
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLargeError):
            fetch(server.url("/feed"), limits=limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The cap (1 MiB; ~1.7 MiB peak seen) plus zlib's bounded output chunks and client overhead; a
    # decoder inflating a whole network read would allocate tens of MiB.
    assert peak < 4 << 20, f"peak {peak / 2**20:.1f} MiB"


def test_a_fetch_may_leave_the_codings_to_the_parse_with_the_same_bounds(
    server: FeedServer,
) -> None:
    body = FEED * 500
    server.route("/feed", static(body, content_encoding="gzip"))
    server.route("/bomb", static(b"a" * (LIMITS.max_bytes + 1), content_encoding="gzip"))
    server.route("/broken", static(gzip.compress(body)[:-12], headers={"Content-Encoding": "gzip"}))

    def run(path: str) -> FetchResult:
        return fetch(server.url(path), inflate=False)

    kept = run("/feed")
    assert kept.encodings == ("gzip",)
    assert kept.content is not None and kept.content != body
    where = {"source": "src", "url": kept.url}
    assert decoded(kept.content, kept.encodings, LIMITS.max_bytes, **where) == body
    # The cap after decompression and a corrupt stream: the errors a fetch that
    # inflates raises, now from the parse's side.
    bomb = run("/bomb")
    assert bomb.content is not None and len(bomb.content) < 100_000
    with pytest.raises(ResponseTooLargeError, match="after decompression"):
        decoded(bomb.content, bomb.encodings, LIMITS.max_bytes, **where)
    broken = run("/broken")
    assert broken.content is not None
    with pytest.raises(FetchError, match="corrupt compressed body"):
        decoded(broken.content, broken.encodings, LIMITS.max_bytes, **where)
    # A body sent as it is has nothing to undo.
    server.route("/plain", static(body))
    plain = run("/plain")
    assert (plain.content, plain.encodings) == (body, ())


def test_unknown_content_encoding(server: FeedServer) -> None:
    server.route("/feed", static(FEED, headers={"Content-Encoding": "br"}))
    with pytest.raises(FetchError, match="Content-Encoding"):
        fetch(server.url("/feed"))


# -- one shared, bounded client ---------------------------------------------------------------


def test_concurrent_fetches_share_one_bounded_pool(server: FeedServer) -> None:
    server.route("/feed", static(FEED))
    url = server.url("/feed")

    async def run() -> list[FetchResult]:
        async with Fetcher(LIMITS, max_connections=2) as fetcher:
            sources = [source_for(url) for _ in range(10)]
            first = await asyncio.gather(*(fetcher.fetch(s) for s in sources))
            second = await asyncio.gather(*(fetcher.fetch(s) for s in sources))
            return [*first, *second]

    results = asyncio.run(run())
    assert all(result.content == FEED for result in results)
    requests = server.requests("/feed")
    assert len(requests) == 20
    # Keep-alive reuse within the bound: 20 requests over at most 2 TCP connections.
    assert len({request.client for request in requests}) <= 2


def test_fetcher_defaults() -> None:
    limits = FetchLimits()
    assert (limits.connect_timeout, limits.read_timeout, limits.total_timeout) == (5, 15, 30)
    assert limits.max_bytes == 20 * 1024 * 1024
    assert limits.max_redirects == 5
    assert limits.allow_private is False
    with pytest.raises(ValueError):
        FetchLimits(total_timeout=0)


def test_feedserver_stops_promptly_with_a_stalled_client_attached() -> None:
    # The fault helpers are only usable if a stuck exchange cannot hang teardown.
    server = FeedServer().__enter__()
    server.route("/feed", stall(seconds=60))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
        client.sendall(b"GET /feed HTTP/1.1\r\nHost: t\r\n\r\n")
        assert client.recv(100).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        server.stop()
        client.settimeout(1.0)
        while client.recv(100):  # the handler woke and the connection was closed
            pass
        assert time.monotonic() - started < 1.0
