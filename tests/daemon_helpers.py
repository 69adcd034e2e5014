"""Running ``aggregator run`` as a real process, for the daemon and multi-instance tests.

A :class:`DaemonProcess` is the CLI started exactly as a user would start it
(``python -m aggregator --config FILE run``), its log going to a file so a chatty
daemon can never block on a full pipe.  Settings that differ per instance (the
database URL, the HTTP port) travel as ``AGGREGATOR_*`` environment variables, which
win over the settings file.  :func:`daemons` hands out processes and kills whatever
is still running when the test ends, pass or fail.

The server's request log times are ``time.monotonic()``; the database stores wall
clock UTC.  :func:`to_monotonic` converts the latter for comparisons.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx2
from feedserver import RSS_TYPE, Exchange, FeedServer, Handler

__all__ = [
    "DaemonProcess",
    "SourceSpec",
    "daemons",
    "delayed",
    "free_port",
    "rss",
    "to_monotonic",
    "wait_until",
    "write_config",
]


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def to_monotonic(moment: datetime) -> float:
    """A wall-clock time (from the database) on this process's monotonic clock."""
    return moment.timestamp() - (time.time() - time.monotonic())


def wait_until(condition: Callable[[], object], timeout: float, *, step: float = 0.05) -> bool:
    """Poll ``condition`` until it is truthy or ``timeout`` passes; its last verdict."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


# -- feeds ------------------------------------------------------------------------


def rss(title: str, items: Iterable[tuple[str, str, str]]) -> bytes:
    """A small RSS 2.0 document; ``items`` are ``(guid, link, title)``."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>',
        f"<title>{title}</title><link>https://example.org/</link><description>d</description>",
    ]
    for guid, link, item_title in items:
        parts.append(
            f"<item><title>{item_title}</title><link>{link}</link>"
            f'<guid isPermaLink="false">{guid}</guid>'
            f"<description>&lt;p&gt;Body of {item_title}.&lt;/p&gt;</description>"
            "<pubDate>Mon, 03 Jun 2024 10:00:00 GMT</pubDate></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode()


def delayed(body: bytes, seconds: float, *, on_done: Callable[[], None] | None = None) -> Handler:
    """Answer 200 with ``body`` after ``seconds`` (the poll is in flight meanwhile)."""

    def handle(exchange: Exchange) -> None:
        if exchange.sleep(seconds):
            return
        exchange.send(200, body, {"Content-Type": RSS_TYPE})
        if on_done is not None:
            on_done()

    return handle


# -- configuration ----------------------------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    id: str
    path: str  # on the FeedServer
    interval: str = "2s"
    adapter: str = "generic"
    name: str | None = None


def write_config(
    folder: Path, server: FeedServer, sources: Iterable[SourceSpec], **settings: object
) -> Path:
    """``sources.toml`` and ``aggregator.toml`` in ``folder``; returns the settings file.

    ``settings`` are written as TOML values (str, int, float, bool); the defaults
    here suit a test: loopback sources allowed, polls on a 0.5 s tick, no jitter.
    """
    blocks = [
        f'[[source]]\nid = "{spec.id}"\nname = "{spec.name or spec.id}"\n'
        f'url = "{server.url(spec.path)}"\nadapter = "{spec.adapter}"\n'
        f'interval = "{spec.interval}"\n'
        for spec in sources
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sources.toml").write_text("\n".join(blocks), encoding="utf-8")
    values: dict[str, object] = {
        "sources_file": str(folder / "sources.toml"),
        "allow_private_addresses": True,
        "tick_seconds": 0.5,
        "jitter": 0.0,
        "total_timeout": 10.0,
        "read_timeout": 10.0,
        "log_level": "DEBUG",  # tests read every poll's outcome from the log
        **settings,
    }
    lines = []
    for key, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        else:
            lines.append(f'{key} = "{value}"')
    config = folder / "aggregator.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


# -- the process ------------------------------------------------------------------

_STARTED = re.compile(r"daemon (\S+) started")
CONSOLE_SCRIPT = Path(sys.executable).with_name("aggregator")


def child_processes(pid: int) -> dict[int, str]:
    """The live children of ``pid`` (from ``/proc``): their command lines."""
    children = {}
    for entry in Path("/proc").iterdir():
        stat = _stat(entry.name) if entry.name.isdigit() else None
        if stat is not None and stat[1] == pid and _running(stat[0]):
            try:
                children[int(entry.name)] = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
            except OSError:
                continue  # gone meanwhile
    return children


def process_alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent (maybe init) to reap it."""
    stat = _stat(str(pid))
    return stat is not None and _running(stat[0])


def _stat(pid: str) -> tuple[str, int] | None:
    """``(state, parent pid)`` of a process, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def _running(state: str) -> bool:
    return state not in ("Z", "X")


class DaemonProcess:
    """One ``aggregator run`` subprocess; its combined output goes to ``log_path``."""

    def __init__(
        self,
        config: Path,
        *,
        database_url: str,
        http_port: int,
        log_path: Path,
        console_script: bool = False,
    ) -> None:
        self.config = config
        # The `aggregator` script pip installs, as a user runs it; else `python -m aggregator`.
        self.command = (
            [str(CONSOLE_SCRIPT)] if console_script else [sys.executable, "-m", "aggregator"]
        )
        self.database_url = database_url
        self.http_port = http_port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        env = {key: value for key, value in os.environ.items() if not key.startswith("AGGREGATOR_")}
        env["AGGREGATOR_DATABASE_URL"] = self.database_url
        env["AGGREGATOR_HTTP_PORT"] = str(self.http_port)
        env["PYTHONUNBUFFERED"] = "1"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.command, "--config", str(self.config), "run"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_started(self, timeout: float = 30) -> str:
        """Wait for the "daemon ... started" line; returns the instance's owner name."""
        found: list[str] = []

        def started() -> bool:
            match = _STARTED.search(self.log())
            if match:
                found.append(match.group(1))
                return True
            assert self.running(), f"daemon exited early:\n{self.log()}"
            return False

        assert wait_until(started, timeout), f"daemon did not start:\n{self.log()}"
        return found[0]

    def wait_http(self, timeout: float = 30) -> None:
        """Wait until the HTTP service answers /healthz."""

        def answers() -> bool:
            assert self.running(), f"daemon exited early:\n{self.log()}"
            try:
                return httpx2.get(self.url + "/healthz", timeout=2).status_code == 200
            except httpx2.TransportError:
                return False

        assert wait_until(answers, timeout, step=0.1), f"no HTTP service:\n{self.log()}"

    def stop(self, timeout: float) -> int:
        """SIGTERM, then wait up to ``timeout`` seconds; the exit code (asserts it exited)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"daemon still running {timeout}s after SIGTERM:\n{self.log()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL (a crash: no cleanup of any kind) and reap."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=30)


@contextlib.contextmanager
def daemons(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """A factory of started daemons; every one still running at exit is killed."""
    started: list[DaemonProcess] = []

    def start(
        config: Path, *, database_url: str, name: str = "daemon", console_script: bool = False
    ) -> DaemonProcess:
        process = DaemonProcess(
            config,
            database_url=database_url,
            http_port=free_port(),
            log_path=tmp_path / f"{name}-{len(started)}.log",
            console_script=console_script,
        )
        started.append(process)
        return process.start()

    try:
        yield start
    finally:
        for process in started:
            with contextlib.suppress(Exception):
                process.kill()
