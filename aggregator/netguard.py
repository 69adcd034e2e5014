"""SSRF guard: which addresses a feed fetch may connect to.

A feed URL is user-supplied input, and so is every ``Location`` a feed server
answers with.  Without a guard, ``http://169.254.169.254/`` (cloud metadata) or
``http://10.0.0.5/admin`` is one redirect away.

**Why the check lives in the connect step.**  Checking a URL's host before the
request and then letting the HTTP library resolve it again is a time-of-check /
time-of-use gap: a DNS-rebinding server answers the first lookup with a public
address and the second with ``127.0.0.1``.  :class:`GuardedBackend` is an
``httpcore2`` network backend wrapping the default one: it resolves the host
itself, refuses the connection if *any* resolved address is refused (a name with
one public and one private record is treated as hostile, like Miniflux does), and
then connects to the very IP it checked.  There is no second lookup, so nothing
can change in between.  TLS still verifies the certificate against the host name,
because httpcore2 takes the SNI/verification name from the request origin, not
from the address the socket is connected to.

The backend is handed to httpx2 by :mod:`aggregator.fetch`; this module has no
httpx2 dependency (only httpcore2/anyio, which httpx2 is built on) and the
address rules (:func:`is_public_address`) are pure functions.

**Policy.**  :class:`AddressPolicy` says what a connection may reach: public
addresses always; everything else only if ``allow_private`` is set (a source
explicitly configured to live on the intranet) or the address is inside one of
``allow_networks`` (an exact allow-list, matched against the literal address:
allowing ``127.0.0.1/32`` does *not* allow ``::ffff:127.0.0.1``).  The same policy
applies to every hop of a redirect chain.

Imports from the package: nothing of the package (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import httpcore2

__all__ = [
    "AddressPolicy",
    "AddressRefusedError",
    "GuardedBackend",
    "IPAddress",
    "IPNetwork",
    "is_public_address",
    "parse_networks",
]

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Spelled out rather than trusting ``ipaddress.is_global`` alone: its tables
# changed between CPython patch releases, and it calls multicast "global".
_REFUSED_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network", incl. the unspecified 0.0.0.0
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, incl. 169.254.169.254 cloud metadata
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. broadcast 255.255.255.255
    )
)
_REFUSED_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/128",  # unspecified
        "::1/128",  # loopback
        "64:ff9b:1::/48",  # local-use NAT64: embeds an unspecified network's IPv4
        "100::/64",  # discard-only
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique local addresses
        "fe80::/10",  # link-local
        "fec0::/10",  # deprecated site-local
        "ff00::/8",  # multicast
    )
)
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """IPv4 addresses an IPv6 address would actually deliver packets to.

    A dual-stack socket connecting to ``::ffff:127.0.0.1`` reaches loopback; a
    NAT64 gateway turns ``64:ff9b::a00:1`` into ``10.0.0.1``.  These must be
    judged by the IPv4 address they carry, not by the IPv6 tables.
    """
    mapped = address.ipv4_mapped
    if mapped is not None:
        return (mapped,)
    if address in _V4_COMPATIBLE or address in _NAT64:
        return (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF),)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        server, client = address.teredo
        return (server, client)
    return ()


def is_public_address(ip: IPAddress | str) -> bool:
    """True if ``ip`` is a globally routable unicast address a feed may live on.

    Loopback, private, link-local, CGNAT, multicast, unspecified, reserved and
    documentation ranges are refused, as are IPv6 forms that embed a refused
    IPv4 address (v4-mapped, v4-compatible, NAT64, 6to4, Teredo).
    """
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(address, ipaddress.IPv6Address):
        address = ipaddress.IPv6Address(int(address))  # drop any %scope: rules ignore it
        if address in _REFUSED_V6[:2]:  # :: and ::1 also match the v4-compatible prefix
            return False
        embedded = _embedded_ipv4(address)
        if embedded:
            return all(is_public_address(inner) for inner in embedded)
        if any(address in net for net in _REFUSED_V6):
            return False
    elif any(address in net for net in _REFUSED_V4):
        return False
    return address.is_global and not address.is_multicast


def parse_networks(networks: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    """Normalize an allow-list given as strings (``"127.0.0.1"``, ``"10.1.0.0/16"``)."""
    return tuple(
        net if not isinstance(net, str) else ipaddress.ip_network(net, strict=False)
        for net in networks
    )


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses a connection may reach; see the module docstring."""

    allow_private: bool = False
    allow_networks: tuple[IPNetwork, ...] = ()

    def permits(self, ip: IPAddress | str) -> bool:
        address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        if self.allow_private or is_public_address(address):
            return True
        return any(address.version == net.version and address in net for net in self.allow_networks)


class AddressRefusedError(httpcore2.ConnectError):
    """The guard refused to connect.

    A subclass of ``httpcore2.ConnectError`` so that httpx2 treats it like any
    other failed connect (cleaning up the pool slot) and wraps it in
    ``httpx2.ConnectError``; :mod:`aggregator.fetch` finds it again through
    ``__cause__`` / ``__context__`` and turns it into ``BlockedURLError``.
    """

    def __init__(self, host: str, address: str, reason: str) -> None:
        super().__init__(f"refused to connect to {host!r} ({address}): {reason}")
        self.host = host
        self.address = address
        self.reason = reason


class GuardedBackend(httpcore2.AsyncNetworkBackend):
    """An httpcore2 backend that only connects to addresses ``policy`` permits."""

    def __init__(
        self,
        policy: AddressPolicy,
        inner: httpcore2.AsyncNetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self._inner = inner if inner is not None else httpcore2.AnyIOBackend()

    async def resolve(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        """Every address ``host`` resolves to, in resolver order, de-duplicated."""
        try:
            return [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            pass
        try:
            with anyio.fail_after(timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError as exc:
            raise httpcore2.ConnectTimeout(f"DNS lookup of {host!r} timed out") from exc
        except (OSError, UnicodeError) as exc:
            raise httpcore2.ConnectError(f"DNS lookup of {host!r} failed: {exc}") from exc
        addresses: list[IPAddress] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise httpcore2.ConnectError(f"DNS lookup of {host!r} returned no address")
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        addresses = await self.resolve(host, port, timeout)
        for address in addresses:
            if not self.policy.permits(address):
                logger.warning(
                    "refusing connection to %s:%d (%s): not a public address",
                    host,
                    port,
                    address,
                )
                raise AddressRefusedError(host, str(address), "not a public address")
        last_error: Exception | None = None
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
                return _PooledStream(stream)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None  # addresses is never empty
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise AddressRefusedError(path, path, "unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PooledStream(httpcore2.AsyncNetworkStream):
    """A connection's stream that answers httpcore2's "is it readable?" cheaply.

    Before routing each request, httpcore2 asks every pooled connection whether its
    socket is readable (an idle keep-alive socket with data or EOF waiting is dead).
    anyio answers by building a dict of all its stream attributes each time, and with a
    pool of a dozen connections that was the largest single cost of a 304 poll.  The
    socket of a stream never changes (TLS runs over the same one), so it is looked up
    once; everything else is the wrapped stream's.
    """

    def __init__(self, inner: httpcore2.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")
        self._poller = _poller(self._socket)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        tls = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _PooledStream(tls)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            if self._socket is None or self._socket.fileno() < 0:
                return True  # closed: a read would return EOF at once
            if self._poller is None:  # no poll() (Windows)
                return bool(select.select([self._socket], [], [], 0)[0])
            return bool(self._poller.poll(0))
        return self._inner.get_extra_info(info)


def _poller(sock: socket.socket | None) -> Any:
    """A poll object watching ``sock`` for input, made once per connection."""
    if sock is None or not hasattr(select, "poll"):
        return None
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return poller
