"""Headless Chromium renders the HTML index served by a real uvicorn server."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_serve import BASE, SOURCES, sample_reader

from aggregator.metrics import Metrics
from aggregator.serve import build_server, create_app

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None,
    reason="headless browser test needs Debian's chromium at /usr/bin/chromium "
    "(apt-get install -y chromium)",
)


@pytest.fixture
def index_url() -> Iterator[str]:
    """The index of a real server on a free local port, running in its own thread."""
    reader = sample_reader()
    app = create_app(reader, base_url=BASE, title="新闻汇总", sources=SOURCES, metrics=Metrics())
    server = build_server(app, access_log=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        assert server.started
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.stop()
        thread.join(timeout=10)
        sock.close()


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    profile = tmp_path / "profile"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, timeout=90, check=False)


def test_chromium_renders_the_index(index_url: str, tmp_path: Path) -> None:
    result = chromium(tmp_path, "--dump-dom", index_url)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    dom = result.stdout.decode("utf-8")
    for title in ("中俄防长视频通话", "美国之音报道", "同一时刻 A"):
        assert title in dom
    # The title with markup stays text after the browser parsed the page.
    assert "Second &lt;b&gt;story&lt;/b&gt; &amp; more" in dom
    assert "<b>story</b>" not in dom
    assert 'type="application/rss+xml"' in dom

    screenshot = tmp_path / "index.png"
    shot = chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1024,768", index_url)
    assert shot.returncode == 0, shot.stderr.decode(errors="replace")[-2000:]
    data = screenshot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 1000
