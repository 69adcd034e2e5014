"""The SSRF address rules and the connect-time guard."""

from __future__ import annotations

import asyncio
import ipaddress

import httpcore2
import pytest
from feedserver import FeedServer

from aggregator.netguard import (
    AddressPolicy,
    AddressRefusedError,
    GuardedBackend,
    is_public_address,
    parse_networks,
)

REFUSED = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # CGNAT
    "100.127.255.255",
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "::",
    "::1",
    "fc00::1",  # ULA
    "fd12:3456::1",
    "fe80::1",  # link-local
    "fe80::1%1",
    "ff02::1",  # multicast
    "2001:db8::1",  # documentation
    "::ffff:127.0.0.1",  # v4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # v4-compatible
    "::10.0.0.1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::808:808",  # local-use NAT64 prefix
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 (obfuscated)
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "172.32.0.1",  # just outside 172.16/12
    "100.128.0.1",  # just outside 100.64/10
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",  # v4-mapped public
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, client 8.8.8.8, server 65.54.227.120
]


@pytest.mark.parametrize("address", REFUSED)
def test_refused_addresses(address: str) -> None:
    assert not is_public_address(address)
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses(address: str) -> None:
    assert is_public_address(address)


def test_teredo_fixture_really_embeds_the_addresses_it_claims() -> None:
    # Guards the table above: a typo in the obfuscated client would make the
    # Teredo rows test nothing.
    refused = ipaddress.IPv6Address("2001:0:4136:e378:8000:63bf:80ff:fffe").teredo
    public = ipaddress.IPv6Address("2001:0:4136:e378:8000:63bf:f7f7:f7f7").teredo
    assert refused is not None and str(refused[1]) == "127.0.0.1"
    assert public is not None and str(public[1]) == "8.8.8.8"


def test_policy_allow_private_permits_everything() -> None:
    policy = AddressPolicy(allow_private=True)
    assert policy.permits("127.0.0.1")
    assert policy.permits("169.254.169.254")
    assert policy.permits("8.8.8.8")


def test_policy_allow_networks_is_exact() -> None:
    policy = AddressPolicy(allow_networks=parse_networks(["127.0.0.1", "10.1.0.0/16"]))
    assert policy.permits("127.0.0.1")
    assert policy.permits("10.1.2.3")
    assert policy.permits("8.8.8.8")
    assert not policy.permits("127.0.0.2")
    assert not policy.permits("10.2.0.1")
    assert not policy.permits("::ffff:127.0.0.1")  # the mapped form is not listed
    assert not policy.permits("169.254.169.254")


def test_guard_refuses_before_connecting() -> None:
    with FeedServer() as server:
        backend = GuardedBackend(AddressPolicy())

        async def connect() -> None:
            await backend.connect_tcp("127.0.0.1", server.port, timeout=1)

        with pytest.raises(AddressRefusedError) as info:
            asyncio.run(connect())
        assert info.value.address == "127.0.0.1"
        assert isinstance(info.value, httpcore2.ConnectError)
        assert server.requests() == []


def test_guard_checks_resolved_names() -> None:
    # "localhost" is a name, not a literal: the guard must resolve it and judge
    # the addresses, which are all loopback.
    backend = GuardedBackend(AddressPolicy())
    with pytest.raises(AddressRefusedError):
        asyncio.run(backend.connect_tcp("localhost", 9, timeout=1))


def test_guard_connects_to_the_checked_address() -> None:
    with FeedServer() as server:
        backend = GuardedBackend(AddressPolicy(allow_networks=parse_networks(["127.0.0.1"])))

        async def roundtrip() -> bytes:
            stream = await backend.connect_tcp("localhost", server.port, timeout=2)
            try:
                assert stream.get_extra_info("server_addr")[0] == "127.0.0.1"
                await stream.write(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                reply: bytes = await stream.read(1024, timeout=2)
                return reply
            finally:
                await stream.aclose()

        reply = asyncio.run(roundtrip())
        assert reply.startswith(b"HTTP/1.1 404")
        assert [r.path for r in server.requests()] == ["/x"]


def test_guard_refuses_if_any_resolved_address_is_refused() -> None:
    class TwoFaced(GuardedBackend):
        async def resolve(
            self, host: str, port: int, timeout: float | None
        ) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
            return [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.1")]

    backend = TwoFaced(AddressPolicy())
    with pytest.raises(AddressRefusedError) as info:
        asyncio.run(backend.connect_tcp("rebind.example", 80, timeout=1))
    assert info.value.address == "10.0.0.1"
