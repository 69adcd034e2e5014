"""Running the app: a uvicorn server inside the daemon's loop, on a socket bound first.

Imports from the package: ``httpguard``, ``errors``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from ..errors import ServiceError
from ..httpguard import HEAD_TIMEOUT, guarded_protocol


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
