"""One connection pool per address policy, each guarded by :mod:`aggregator.netguard`.

Imports from the package: ``netguard``.
"""

from __future__ import annotations

import ssl

import httpcore2
import httpx2

from aggregator.netguard import AddressPolicy, GuardedBackend

_POLICY_EXTENSION = "aggregator.policy"  # request extension read by _PolicyRouter
# The pools by address policy: private addresses allowed; the configured policy (the
# settings' allow_private_addresses and exact networks); public addresses only (an
# article page off the source's own feed hosts: a source allowed on the intranet must
# not be a way to read other intranet hosts through its article links).
_LAX, _STRICT, _PUBLIC = "lax", "strict", "public"


class _PolicyRouter(httpx2.AsyncBaseTransport):
    """Sends each request through the connection pool matching its address policy.

    A pool per policy rather than one guard consulting per-request state: a keep-alive
    connection opened for a source allowed on a private address must never be
    reused by a source that is not (the guard only runs when a connection is made).
    """

    def __init__(self, pools: dict[str, httpx2.AsyncBaseTransport]) -> None:
        self._pools = pools

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        transport = self._pools[request.extensions.get(_POLICY_EXTENSION, _STRICT)]
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        for transport in self._pools.values():
            await transport.aclose()


def _guarded_transport(
    policy: AddressPolicy, limits: httpx2.Limits, ssl_context: ssl.SSLContext
) -> httpx2.AsyncHTTPTransport:
    """An httpx2 transport whose connections go through :class:`GuardedBackend`.

    httpx2 (2.16) has no public way to pass an httpcore2 network backend, so the
    pool is replaced after construction; the isinstance check makes an httpx2
    upgrade that renames the attribute fail loudly instead of silently unguarded.
    """
    transport = httpx2.AsyncHTTPTransport(verify=ssl_context, limits=limits, trust_env=False)
    if not isinstance(getattr(transport, "_pool", None), httpcore2.AsyncConnectionPool):
        raise RuntimeError("httpx2 internals changed: cannot install the SSRF guard")
    transport._pool = httpcore2.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(policy),
    )
    return transport
