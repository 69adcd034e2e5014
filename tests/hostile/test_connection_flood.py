"""Connection floods cannot lock out the HTTP service (aggregator.httpguard).

Before, 257 sockets that sent nothing made every request answer 503, and the server
closed none of them.  The attackers here connect from 127.0.0.2, the server listens
on 127.0.0.1 (with a 2 s head deadline instead of the default 10 s, for speed).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from aggregator.serve import EmbeddedServer, build_server, create_app
from aggregator.store import Store

HEAD_TIMEOUT = 2.0
ATTACKER = "127.0.0.2"
LIMIT = 256  # below the 300 attackers, so making room is exercised too


@dataclass
class Running:
    server: EmbeddedServer
    port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Running]:
    with Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}") as store:
        app = create_app(store, base_url="http://127.0.0.1", title="Flood", sources={})
        server = build_server(
            app, access_log=False, head_timeout=HEAD_TIMEOUT, max_connections=LIMIT
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.01)
            assert server.started
            yield Running(server, sock.getsockname()[1])
        finally:
            server.stop()
            thread.join(timeout=15)
            sock.close()


def attackers(stack: ExitStack, port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        attacker = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        attacker.bind((ATTACKER, 0))
        attacker.connect(("127.0.0.1", port))
        sockets.append(attacker)
    return sockets


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server has closed ``sock`` (EOF or reset), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def trickle(sockets: list[socket.socket], data: bytes, stop: threading.Event) -> None:
    """One byte per socket every 0.5 s, for as long as the server takes them."""
    for index in range(len(data)):
        for sock in sockets:
            try:
                sock.send(data[index : index + 1])
            except OSError:
                continue
        if stop.wait(0.5):
            return


def test_idle_and_trickling_sockets_are_closed_after_the_head_deadline(
    service: Running,
) -> None:
    request_head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 200
    stop = threading.Event()
    with ExitStack() as stack:
        idle = attackers(stack, service.port, 10)
        slow = attackers(stack, service.port, 10)
        feeder = threading.Thread(target=trickle, args=(slow, request_head, stop))
        feeder.start()
        try:
            time.sleep(HEAD_TIMEOUT / 2)
            assert not any(closed_by_server(sock) for sock in idle + slow)
            time.sleep(HEAD_TIMEOUT / 2 + 1.5)
            assert all(closed_by_server(sock) for sock in idle), "idle sockets kept open"
            assert all(closed_by_server(sock) for sock in slow), "trickling sockets kept open"
        finally:
            stop.set()
            feeder.join()


def test_keep_alive_connection_gets_a_new_head_deadline(service: Running) -> None:
    with socket.create_connection(("127.0.0.1", service.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 ")
        started = time.monotonic()
        closed = False
        while not closed and time.monotonic() - started < HEAD_TIMEOUT * 3:
            # Trickle the next head: each byte would reset an idle timer.
            try:
                sock.send(b"G")
            except OSError:
                closed = True
                break
            time.sleep(0.25)
            closed = closed_by_server(sock)
            sock.setblocking(True)
        assert closed, "a trickled keep-alive head was never cut off"
        assert time.monotonic() - started < HEAD_TIMEOUT + 1.5


def test_requests_are_answered_while_300_sockets_hold_on(service: Running) -> None:
    """Over the 256-connection limit: the slow sockets make room, the request is served."""
    stop = threading.Event()
    with ExitStack() as stack:
        idle = attackers(stack, service.port, 150)
        slow = attackers(stack, service.port, 150)
        feeder = threading.Thread(target=trickle, args=(slow, b"GET / HTTP/1.1\r\n", stop))
        feeder.start()
        try:
            time.sleep(0.3)  # let the server accept them all
            with httpx2.Client(timeout=5) as client:
                for path in ("/healthz", "/feed.xml", "/healthz"):
                    started = time.monotonic()
                    response = client.get(service.url(path), headers={"Connection": "close"})
                    assert response.status_code == 200, (path, response.text)
                    assert time.monotonic() - started < 1.0
            # Room was made by closing attackers' sockets, not by refusing real requests.
            assert sum(closed_by_server(sock) for sock in idle + slow) >= 300 - (LIMIT - 1)
        finally:
            stop.set()
            feeder.join()
