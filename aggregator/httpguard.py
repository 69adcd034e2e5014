"""Connection-flood defence for the HTTP service: slow sockets go first.

uvicorn counts every open connection against ``limit_concurrency`` and has no
deadline for a request's head: 257 sockets that send nothing (or one header byte
every few seconds) made every request, ``/healthz`` included, answer 503 for as long
as they stayed open.  This protocol adds two rules to uvicorn's h11 one:

* **a head deadline**: a connection must deliver a complete request head within
  ``head_timeout`` of connecting, and again of each response on a keep-alive
  connection; trickling bytes does not extend it (uvicorn's own keep-alive timer is
  reset by any byte);
* **slow sockets make room**: when the server holds its connection limit, the
  connection that has waited longest for a head is closed to admit the new one.  A
  real client sends its head at once, so under a flood it is never the oldest
  waiter; the limit then only ever counts requests being answered, and no per-client
  cap is needed (behind a load balancer every user is one client).

Why not another server: hypercorn's ``read_timeout`` is per read, so a trickle
resets it; granian has a header-read timeout but runs its own runtime and workers,
and this service must share the daemon's asyncio loop (``aggregator run``); a reverse
proxy is a deployment choice the service cannot count on.  This is about sixty lines
over uvicorn, which the service already uses.

Imports from the package: nothing of the package (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HEAD_TIMEOUT", "guarded_protocol"]

HEAD_TIMEOUT = 10.0  # seconds for a request's head: a real client needs milliseconds


class _Waiting:
    """The connections waiting for a request head, oldest first, with their deadlines."""

    def __init__(self) -> None:
        self.deadlines: OrderedDict[_GuardedH11, asyncio.TimerHandle] = OrderedDict()

    def start(self, protocol: _GuardedH11, timeout: float) -> None:
        self.stop(protocol)
        self.deadlines[protocol] = asyncio.get_running_loop().call_later(timeout, protocol.drop)

    def stop(self, protocol: _GuardedH11) -> None:
        handle = self.deadlines.pop(protocol, None)
        if handle is not None:
            handle.cancel()

    def oldest(self, besides: _GuardedH11) -> _GuardedH11 | None:
        return next((waiting for waiting in self.deadlines if waiting is not besides), None)


class _GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a head deadline and eviction of the oldest waiter."""

    head_timeout: ClassVar[float]
    room: ClassVar[int]  # connections held before the oldest waiter is closed
    waiting: ClassVar[_Waiting]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting.start(self, self.head_timeout)
        if len(self.connections) > self.room:
            oldest = self.waiting.oldest(besides=self)
            if oldest is not None:
                oldest.drop()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._check_head()

    def on_response_complete(self) -> None:
        # Armed before the base class runs, which may start a pipelined request at once.
        if not self.transport.is_closing():
            self.waiting.start(self, self.head_timeout)
        super().on_response_complete()
        self._check_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting.stop(self)
        super().connection_lost(exc)

    def _check_head(self) -> None:
        """A request is being answered: its head is in, so the deadline is off."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.waiting.stop(self)

    def drop(self) -> None:
        """Close a connection that has not sent a request head in time (or made room)."""
        self.waiting.stop(self)
        if not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(*, max_connections: int, head_timeout: float = HEAD_TIMEOUT) -> type[Any]:
    """A protocol class for ``uvicorn.Config(http=...)``, with its own waiting list.

    One class per server, so two servers in a process (tests) never evict each
    other's connections.  ``max_connections`` must equal the server's
    ``limit_concurrency``: one below it is the most connections held, so a new
    request never finds the limit reached by idle sockets.
    """
    if max_connections < 2 or not head_timeout > 0:
        raise ValueError("need max_connections >= 2 and a positive head_timeout")
    return type(
        "GuardedH11Protocol",
        (_GuardedH11,),
        {"head_timeout": head_timeout, "room": max_connections - 1, "waiting": _Waiting()},
    )
