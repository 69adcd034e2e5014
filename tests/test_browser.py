"""Headless Chromium renders the HTML pages served by a real uvicorn server: the
index, search results with their highlights, and an article page."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from test_serve import BASE, SOURCES, sample_reader

from aggregator import archive
from aggregator.metrics import Metrics
from aggregator.search import html_text
from aggregator.serve import build_server, create_app
from aggregator.store import Store

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None,
    reason="headless browser test needs Debian's chromium at /usr/bin/chromium "
    "(apt-get install -y chromium)",
)


SEEDS = sorted((Path(__file__).parent / "fixtures" / "seeds").glob("*.txt"))


@pytest.fixture
def index_url() -> Iterator[str]:
    """The index of a real server on a free local port, running in its own thread."""
    reader = sample_reader()
    app = create_app(reader, base_url=BASE, title="新闻汇总", sources=SOURCES, metrics=Metrics())
    with _serving(app) as url:
        yield url


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[tuple[str, Store]]:
    """A real server over a store of the seed files, and the store."""
    with Store.open(f"sqlite:///{tmp_path / 'aggregator.db'}") as store:
        store.import_articles(archive.read_file(path).article for path in SEEDS)
        app = create_app(store, base_url=BASE, title="新闻汇总", metrics=Metrics())
        with _serving(app) as url:
            yield url, store


@contextlib.contextmanager
def _serving(app: Starlette) -> Iterator[str]:
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


def test_chromium_renders_search_highlights_and_the_article_page(
    store_url: tuple[str, Store], tmp_path: Path
) -> None:
    url, store = store_url
    result = chromium(tmp_path, "--dump-dom", f"{url}?q=%E9%98%B2%E9%95%B7")  # ?q=防長
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    dom = result.stdout.decode("utf-8")
    assert re.search(r"<mark>防[长長]</mark>", dom), "no highlighted match in the DOM"
    found = re.search(r'href="[^"]*/articles/(\d+)"', dom)
    assert found, "search results do not link the article page"

    stored = store.article(int(found.group(1)))
    assert stored is not None
    page_url = f"{url}articles/{stored.id}"
    result = chromium(tmp_path, "--dump-dom", page_url)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    dom = result.stdout.decode("utf-8")
    assert stored.article.title in dom
    sentence = max(html_text(stored.article.body).split(), key=len)[:30]
    assert len(sentence) >= 10 and sentence in dom
    assert '<article lang="zh-Hans">' in dom

    # A phone-sized window, light and dark: look at these when the page changes.
    for name, extra in (("article-390.png", ()), ("article-390-dark.png", ("--force-dark-mode",))):
        screenshot = tmp_path / name
        shot = chromium(
            tmp_path, f"--screenshot={screenshot}", "--window-size=390,844", *extra, page_url
        )
        assert shot.returncode == 0, shot.stderr.decode(errors="replace")[-2000:]
        assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
