"""A real HTTP server on 127.0.0.1 for tests that must not mock the network.

Mocks cannot reset a connection, stall halfway through a body or trickle one byte a
second; a socket can.  Usage::

    with FeedServer() as server:
        server.route("/feed", static(b"<rss/>", etag='"v1"'))
        server.route("/old", redirect("/feed", 301))
        url = server.url("/old")
        ...  # fetch it
        assert server.requests("/feed")[0].headers["if-none-match"] == '"v1"'

A *handler* is any callable taking an :class:`Exchange` (the request plus the raw
socket streams); the helpers below build the common ones.  Unrouted paths get 404.
The server speaks HTTP/1.1 with keep-alive, so connection reuse is observable through
``LoggedRequest.client`` (the peer's address and port).

Shutdown never hangs on a stalled or trickling handler: handlers sleep with
:meth:`Exchange.sleep`, which wakes when the server stops, and :meth:`FeedServer.stop`
shuts down every open connection socket so blocked reads and writes fail at once.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

__all__ = [
    "Exchange",
    "FeedServer",
    "Handler",
    "LoggedRequest",
    "endless",
    "gzip_bomb",
    "redirect",
    "reset",
    "stall",
    "static",
    "status",
    "trickle",
    "wrong_charset",
]

RSS_TYPE = "application/rss+xml; charset=utf-8"
# Errors a handler sees when the client gives up first; they are the expected end
# of most fault-injection handlers, not test failures.
_DISCONNECTED = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


@dataclass(frozen=True)
class LoggedRequest:
    """One request as it arrived: ``headers`` has lower-cased names."""

    method: str
    path: str
    headers: Mapping[str, str]
    time: float  # time.monotonic() at arrival
    client: tuple[str, int]


@dataclass
class Exchange:
    """What a handler gets: the request and the raw streams of its connection."""

    request: LoggedRequest
    rfile: io.BufferedIOBase
    wfile: io.BufferedIOBase
    connection: socket.socket
    stopping: threading.Event
    close: bool = field(default=False)  # set True to close the connection afterwards

    def send_head(self, code: int, headers: Mapping[str, str] | None = None) -> None:
        """Status line and headers, as given: no Content-Length is added for you."""
        lines = [f"HTTP/1.1 {code} {_reason(code)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if self.close:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.wfile.flush()

    def send(self, code: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> None:
        """A complete response with a correct Content-Length."""
        self.send_head(code, {**(headers or {}), "Content-Length": str(len(body))})
        if body and self.request.method != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def sleep(self, seconds: float) -> bool:
        """Sleep, waking early if the server stops; True if it is stopping."""
        return self.stopping.wait(seconds)


Handler = Callable[[Exchange], None]


def _reason(code: int) -> str:
    return BaseHTTPRequestHandler.responses.get(code, ("Unknown",))[0]


# -- handler helpers ------------------------------------------------------------


def static(
    body: bytes | str,
    *,
    code: int = 200,
    headers: Mapping[str, str] | None = None,
    content_type: str = RSS_TYPE,
    etag: str | None = None,
    last_modified: str | None = None,
    content_encoding: str | None = None,
) -> Handler:
    """A fixed response; answers 304 to a matching If-None-Match / If-Modified-Since.

    ``content_encoding`` (``"gzip"`` or ``"deflate"``) compresses the body on the
    fly and sets the header; ``headers`` are added last and win.
    """
    payload = body.encode() if isinstance(body, str) else body
    if content_encoding == "gzip":
        payload = gzip.compress(payload)
    elif content_encoding == "deflate":
        payload = zlib.compress(payload)
    base = {"Content-Type": content_type}
    if content_encoding:
        base["Content-Encoding"] = content_encoding
    if etag:
        base["ETag"] = etag
    if last_modified:
        base["Last-Modified"] = last_modified
    base.update(headers or {})

    def handle(exchange: Exchange) -> None:
        asked = exchange.request.headers
        matches_etag = etag is not None and asked.get("if-none-match") == etag
        matches_date = (
            last_modified is not None
            and "if-none-match" not in asked
            and asked.get("if-modified-since") == last_modified
        )
        if matches_etag or matches_date:
            validators = {k: v for k, v in base.items() if k in ("ETag", "Last-Modified")}
            exchange.send(304, b"", validators)
        else:
            exchange.send(code, payload, base)

    return handle


def redirect(location: str, code: int = 301) -> Handler:
    """A redirect; ``location`` may be relative (``/next``) or absolute."""

    def handle(exchange: Exchange) -> None:
        exchange.send(code, b"", {"Location": location})

    return handle


def status(code: int, *, retry_after: str | None = None, body: bytes = b"") -> Handler:
    """A bare status, optionally with Retry-After (seconds or an HTTP-date, verbatim)."""
    headers = {"Content-Type": "text/plain"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after

    def handle(exchange: Exchange) -> None:
        exchange.send(code, body, headers)

    return handle


def reset(*, after_head: bool = False) -> Handler:
    """Abort the connection with a TCP RST (SO_LINGER 0), optionally after the headers."""

    def handle(exchange: Exchange) -> None:
        if after_head:
            exchange.send_head(200, {"Content-Type": RSS_TYPE, "Content-Length": "1000"})
            exchange.wfile.write(b"<rss>")
            exchange.wfile.flush()
        exchange.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        exchange.close = True
        exchange.connection.close()

    return handle


def stall(
    prefix: bytes = b"<rss><channel>", *, total: int = 10_000, seconds: float = 30
) -> Handler:
    """Promise ``total`` bytes, send ``prefix``, then go silent for ``seconds``."""

    def handle(exchange: Exchange) -> None:
        exchange.close = True
        exchange.send_head(200, {"Content-Type": RSS_TYPE, "Content-Length": str(total)})
        exchange.wfile.write(prefix)
        exchange.wfile.flush()
        exchange.sleep(seconds)

    return handle


def trickle(interval: float = 0.2, byte: bytes = b" ") -> Handler:
    """One byte every ``interval`` seconds, forever (until the client or server quits).

    Each byte arrives well within any sane idle timeout, so only a total deadline
    stops it.  The body is close-delimited (no Content-Length).
    """

    def handle(exchange: Exchange) -> None:
        exchange.close = True
        exchange.send_head(200, {"Content-Type": RSS_TYPE})
        while not exchange.sleep(interval):
            exchange.wfile.write(byte)
            exchange.wfile.flush()

    return handle


def endless(*, content_length: int | None = None, chunk: int = 64 * 1024) -> Handler:
    """Send bytes as fast as the client takes them, forever.

    With ``content_length`` the response *declares* that size (e.g. 10 GiB) but the
    handler still just streams until the client hangs up.
    """
    block = b"x" * chunk

    def handle(exchange: Exchange) -> None:
        exchange.close = True
        headers = {"Content-Type": RSS_TYPE}
        if content_length is not None:
            headers["Content-Length"] = str(content_length)
        exchange.send_head(200, headers)
        while not exchange.stopping.is_set():
            exchange.wfile.write(block)

    return handle


@lru_cache(maxsize=4)
def _bomb_bytes(decompressed: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts = [compressor.compress(zeros) for _ in range(decompressed >> 20)]
    parts.append(compressor.flush())
    return b"".join(parts)


def gzip_bomb(decompressed: int = 128 << 20) -> Handler:
    """One gzip member that inflates to ``decompressed`` zero bytes (~1000:1).

    The compressed body is built once per size and cached: 128 MiB costs ~0.4 s.
    """
    payload = _bomb_bytes(decompressed)
    return static(payload, headers={"Content-Encoding": "gzip"})


def wrong_charset(text: str, *, actual: str = "gb18030", declared: str = "utf-8") -> Handler:
    """``text`` encoded as ``actual`` while Content-Type claims ``declared``."""
    return static(text.encode(actual), content_type=f"application/rss+xml; charset={declared}")


# -- the server -----------------------------------------------------------------


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # the socket was already reset or shut down by stop()
        finally:
            self.server.track(self.connection, add=False)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _DISCONNECTED:
            self.close_connection = True

    def do_GET(self) -> None:
        owner = self.server.owner
        path = self.path.partition("?")[0]
        request = LoggedRequest(
            method=self.command,
            path=path,
            headers={name.lower(): value for name, value in self.headers.items()},
            time=time.monotonic(),
            client=(str(self.client_address[0]), int(self.client_address[1])),
        )
        owner._log(request)
        exchange = Exchange(request, self.rfile, self.wfile, self.connection, owner.stopping)
        handler = owner._handler(path)
        try:
            handler(exchange)
        except _DISCONNECTED + (ValueError,):  # ValueError: write to a closed file
            exchange.close = True
        if exchange.close or request.headers.get("connection", "").lower() == "close":
            self.close_connection = True

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass  # the request log is the record; stderr noise hides real failures


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Several daemons connecting at once overflow the default backlog of 5, and the
    # kernel then retries a connection a second later: a delay that looks like ours.
    request_queue_size = 128

    def __init__(self, owner: FeedServer) -> None:
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _RequestHandler)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def drop_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # disconnects are the point of these tests; handler bugs show in assertions


class FeedServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 with routes, a request log and fault helpers."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._routes: dict[str, Handler] = {}
        self._log_entries: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._server = _Server(self)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"feedserver:{self.port}",
            daemon=True,
        )

    def __enter__(self) -> FeedServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving and unblock every handler; safe to call twice."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.drop_connections()
        self._server.server_close()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, path: str, handler: Handler) -> None:
        with self._lock:
            self._routes[path] = handler

    def requests(self, path: str | None = None) -> list[LoggedRequest]:
        """Requests seen so far, oldest first; only those for ``path`` if given."""
        with self._lock:
            return [r for r in self._log_entries if path is None or r.path == path]

    def _log(self, request: LoggedRequest) -> None:
        with self._lock:
            self._log_entries.append(request)

    def _handler(self, path: str) -> Handler:
        with self._lock:
            return self._routes.get(path, status(404))
