"""Connection flood against the real HTTP service, with a client's latency under it.

    .venv/bin/python -m bench.flood                     # 300 idle + 300 trickling, 60 s
    .venv/bin/python -m bench.flood --duration 10       # a short look

Starts ``aggregator serve`` in its own process on a fresh SQLite database of 200
articles, then, from 127.0.0.2, holds ``--idle`` sockets that send nothing and
``--trickle`` sockets that send one byte of a request head every ``--interval``
seconds, each reopened as soon as the server closes it (an attacker keeps the pressure
on).  Meanwhile a client on 127.0.0.1 GETs /feed.xml on a new connection every
``--pause`` seconds.  Prints one JSON object: the client's p50/p99/max latency, its
failures (anything but a 200 within 5 s), and how many attacking sockets the server
closed.  The target (issue 15): p99 under 1 s.

Everything runs on this machine's loopback; every loop is bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ATTACKER = "127.0.0.2"
HEAD = b"GET /feed.xml HTTP/1.1\r\nHost: bench\r\nUser-Agent: " + b"x" * 4096


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _database(folder: Path) -> str:
    from aggregator.store import Store
    from aggregator.types import Article

    url = f"sqlite:///{folder / 'flood.db'}"
    now = datetime.now(UTC)
    with Store.open(url) as store:
        store.import_articles(
            Article(
                source_id="bench",
                source_name="Bench",
                title=f"Article {index}",
                link=f"https://example.org/{index}",
                body="<p>" + "正文" * 1000 + "</p>",
                published=now - timedelta(minutes=index),
                fetched=now,
            )
            for index in range(200)
        )
    return url


@contextlib.contextmanager
def _service(folder: Path, port: int):  # type: ignore[no-untyped-def]
    (folder / "sources.toml").write_text(
        '[[source]]\nid = "bench"\nname = "Bench"\nurl = "https://example.org/feed"\n',
        encoding="utf-8",
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("AGGREGATOR")}
    env |= {
        "AGGREGATOR_DATABASE_URL": _database(folder),
        "AGGREGATOR_SOURCES_FILE": str(folder / "sources.toml"),
        "AGGREGATOR_HTTP_PORT": str(port),
        "AGGREGATOR_LOG_LEVEL": "WARNING",
    }
    log = (folder / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "serve"], env=env, stderr=log, stdout=log
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"the service did not start: {(folder / 'serve.log').read_text()}")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


class _Attack:
    def __init__(self, port: int, interval: float, until: float) -> None:
        self.port = port
        self.interval = interval
        self.until = until
        self.closed_by_server = 0
        self.open = 0

    async def hold(self, trickle: bool) -> None:
        """One attacking socket, reopened whenever the server closes it."""
        while time.monotonic() < self.until:
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=(ATTACKER, 0)
                )
            except OSError:
                await asyncio.sleep(0.1)
                continue
            self.open += 1
            try:
                await self._keep(reader, writer, trickle)
            finally:
                self.open -= 1
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def _keep(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trickle: bool
    ) -> None:
        sent = 0
        while (left := self.until - time.monotonic()) > 0:
            try:
                data = await asyncio.wait_for(reader.read(1024), min(self.interval, left))
            except TimeoutError:
                if trickle:
                    try:
                        writer.write(HEAD[sent % len(HEAD) : sent % len(HEAD) + 1])
                        await writer.drain()
                    except OSError:
                        self.closed_by_server += 1
                        return
                    sent += 1
                continue
            except OSError:
                data = b""
            if not data:
                self.closed_by_server += 1
                return


async def _client(port: int, until: float, pause: float) -> tuple[list[float], int]:
    import httpx2

    latencies: list[float] = []
    failures = 0
    async with httpx2.AsyncClient(timeout=5.0) as client:
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                response = await client.get(
                    f"http://127.0.0.1:{port}/feed.xml", headers={"Connection": "close"}
                )
                if response.status_code != 200:
                    failures += 1
            except httpx2.HTTPError:
                failures += 1
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(pause)
    return latencies, failures


async def _measure(
    port: int, idle: int, trickle: int, interval: float, duration: float, pause: float
) -> dict[str, Any]:
    until = time.monotonic() + duration
    attack = _Attack(port, interval, until)
    holders = [asyncio.create_task(attack.hold(False)) for _ in range(idle)]
    holders += [asyncio.create_task(attack.hold(True)) for _ in range(trickle)]
    await asyncio.sleep(min(2.0, duration / 4))  # let the flood build up first
    latencies, failures = await _client(port, until, pause)
    await asyncio.gather(*holders)
    ordered = sorted(latencies)
    return {
        "idle_sockets": idle,
        "trickling_sockets": trickle,
        "trickle_interval_s": interval,
        "duration_s": duration,
        "requests": len(latencies),
        "failures": failures,
        "p50_s": round(statistics.median(ordered), 4) if ordered else None,
        "p99_s": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 4)
        if ordered
        else None,
        "max_s": round(ordered[-1], 4) if ordered else None,
        "attacking_sockets_closed_by_server": attack.closed_by_server,
    }


def run_flood(
    *,
    idle: int = 300,
    trickle: int = 300,
    interval: float = 4.0,
    duration: float = 60.0,
    pause: float = 0.2,
) -> dict[str, Any]:
    """Start the service, flood it, measure the client; returns the figures."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp, _service(Path(tmp), port):
        return asyncio.run(_measure(port, idle, trickle, interval, duration, pause))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=300)
    parser.add_argument("--trickle", type=int, default=300)
    parser.add_argument("--interval", type=float, default=4.0, help="seconds between bytes")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--pause", type=float, default=0.2, help="between client requests")
    args = parser.parse_args()
    figures = run_flood(
        idle=args.idle,
        trickle=args.trickle,
        interval=args.interval,
        duration=args.duration,
        pause=args.pause,
    )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
