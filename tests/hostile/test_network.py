"""The SSRF guard, end to end: a real :class:`Fetcher` against the loopback server.

The loopback server stands in for a *public* feed host: ``allow_networks`` admits
exactly ``127.0.0.1/32`` (an exact allow-list, see netguard.py), so the first hop
connects and every redirect target is judged as it would be for a public feed.
Addresses are checked on what the name *resolves to* (``127.2``, ``2130706434``,
``0x7f000002`` and ``localhost`` only become loopback after resolution).

Unit-level tables of the address rules are in tests/test_netguard.py; the
scheme and redirect basics in tests/test_fetch.py.  This is the compact summary
table the Security section of the README points at.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from feedserver import FeedServer, redirect, static

from aggregator.errors import BlockedURLError, FetchError
from aggregator.fetch import Fetcher, FetchLimits
from aggregator.netguard import parse_networks
from aggregator.types import FetchResult, Source

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
BASE = FetchLimits(connect_timeout=2.0, read_timeout=2.0, total_timeout=5.0, max_bytes=1 << 20)
#: The loopback server plays a public host; nothing else private is allowed.
AS_PUBLIC = FetchLimits(**{**BASE.__dict__, "allow_networks": parse_networks(["127.0.0.1/32"])})


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        running.route("/feed", static(FEED))
        yield running


def fetch(url: str, limits: FetchLimits = AS_PUBLIC, *, allow_private: bool = False) -> FetchResult:
    source = Source(id="src", name="Source", url=url, allow_private=allow_private)

    async def run() -> FetchResult:
        async with Fetcher(limits) as fetcher:
            return await fetcher.fetch(source)

    return asyncio.run(run())


# Redirect targets a public feed may never lead us to.  {port} is the server's port,
# so a refusal cannot be mistaken for "nothing listens there".
PRIVATE_TARGETS = [
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "http://[fd00:ec2::254]/latest/meta-data/",  # AWS IPv6 metadata (unique local)
    "http://[::ffff:169.254.169.254]/",  # v4-mapped metadata
    "http://[::ffff:a9fe:a9fe]/",  # the same, hex spelling
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of the metadata address
    "http://[2002:a9fe:a9fe::1]/",  # 6to4 of the metadata address
    "http://[::169.254.169.254]/",  # deprecated v4-compatible form
    "http://10.0.0.1/",  # RFC 1918
    "http://192.168.1.1/",  # RFC 1918
    "http://172.16.0.1/",  # RFC 1918
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://0.0.0.0:{port}/feed",  # "this host"
    "http://127.0.0.2:{port}/feed",  # loopback, not the allowed /32
    "http://127.2:{port}/feed",  # short form, loopback only after resolution
    "http://2130706434:{port}/feed",  # decimal 127.0.0.2
    "http://0x7f000002:{port}/feed",  # hex 127.0.0.2
    "http://[::1]:{port}/feed",  # IPv6 loopback
    "http://[::ffff:127.0.0.1]:{port}/feed",  # v4-mapped loopback (exact allow-list)
    "http://[fe80::1]/",  # IPv6 link-local
    "http://224.0.0.1/",  # multicast
]


@pytest.mark.parametrize("target", PRIVATE_TARGETS)
def test_redirect_from_public_into_private_space_is_refused(
    server: FeedServer, target: str
) -> None:
    target = target.format(port=server.port)
    path = f"/go-{abs(hash(target))}"
    server.route(path, redirect(target, 302))
    started = time.monotonic()
    with pytest.raises(BlockedURLError) as info:
        fetch(server.url(path))
    assert time.monotonic() - started < 2.0  # refused outright, not a timeout
    assert info.value.url == target
    assert [request.path for request in server.requests() if request.path == path] == [path]


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/feed",
        "gopher://127.0.0.1:70/",
        "data:application/rss+xml,<rss/>",
        "javascript:alert(1)",
        "dict://127.0.0.1:11211/",
        "//127.0.0.1/feed",
        "127.0.0.1/feed",
    ],
)
def test_other_schemes_are_refused_configured_or_redirected(server: FeedServer, url: str) -> None:
    with pytest.raises(BlockedURLError):
        fetch(url, BASE, allow_private=True)
    path = f"/scheme-{abs(hash(url))}"
    server.route(path, redirect(url, 301))
    if ":" in url.partition("/")[0]:
        with pytest.raises(BlockedURLError):
            fetch(server.url(path), BASE, allow_private=True)
    else:
        # A relative Location resolves against the server, which answers 404 here.
        with pytest.raises(FetchError):
            fetch(server.url(path), BASE, allow_private=True)


def test_private_source_needs_a_setting(server: FeedServer) -> None:
    url = server.url("/feed")
    with pytest.raises(BlockedURLError):
        fetch(url, BASE)  # default: refused before any connection
    assert fetch(url, BASE, allow_private=True).content == FEED  # per-source setting
    everything = FetchLimits(**{**BASE.__dict__, "allow_private": True})
    assert fetch(url, everything).content == FEED  # the global setting


def test_a_name_resolving_to_loopback_is_refused(server: FeedServer) -> None:
    with pytest.raises(BlockedURLError) as info:
        fetch(f"http://localhost:{server.port}/feed", BASE)
    assert "127.0.0.1" in str(info.value) or "::1" in str(info.value)


def test_uppercase_http_scheme_is_still_http(server: FeedServer) -> None:
    assert fetch(server.url("/feed").replace("http:", "HTTP:")).content == FEED
