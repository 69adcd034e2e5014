"""The real daemon, as an operator meets it: failing sources shown, sources reloaded live."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from daemon_helpers import DaemonProcess, SourceSpec, daemons, rss, wait_until, write_config
from feedserver import FeedServer, static, status
from test_browser import CHROMIUM, chromium

FEED = rss("Feed", [("g1", "https://example.org/1", "First [story]")])


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as feed_server:
        for path in ("/a", "/b", "/c"):
            feed_server.route(path, static(FEED))
        feed_server.route("/down", status(503))
        yield feed_server


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    with daemons(tmp_path) as factory:
        yield factory


def _database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


def _source_block(server: FeedServer, source_id: str, path: str) -> str:
    return (
        f'[[source]]\nid = "{source_id}"\nname = "{source_id}"\n'
        f'url = "{server.url(path)}"\ninterval = "2s"\n'
    )


def _polled(server: FeedServer, path: str) -> Callable[[], bool]:
    return lambda: bool(server.requests(path))


# -- failing sources ---------------------------------------------------------------


def _failing_daemon(
    tmp_path: Path, server: FeedServer, start: Callable[..., DaemonProcess]
) -> DaemonProcess:
    """A daemon whose every source fails: one answers 503, one is on a closed port."""
    closed = "http://127.0.0.1:9/"
    config = write_config(tmp_path, server, [SourceSpec("down", "/down")], parse_processes=0)
    sources = tmp_path / "sources.toml"
    sources.write_text(
        sources.read_text(encoding="utf-8")
        + f'\n[[source]]\nid = "nowhere"\nname = "Nowhere [x]"\nurl = "{closed}feed.xml"\n',
        encoding="utf-8",
    )
    daemon = start(config, database_url=_database(tmp_path))
    daemon.wait_http()

    def both_failing() -> bool:
        body = httpx2.get(daemon.url + "/healthz", timeout=5).json()
        return len(body["failing"]) == 2

    assert wait_until(both_failing, 30), daemon.log()
    return daemon


def test_healthz_is_degraded_with_messages_when_every_source_fails(
    tmp_path: Path, server: FeedServer, start: Callable[..., DaemonProcess]
) -> None:
    daemon = _failing_daemon(tmp_path, server, start)
    response = httpx2.get(daemon.url + "/healthz", timeout=5)
    assert response.status_code == 200  # a feed outage must not get the container restarted
    body = response.json()
    assert body["status"] == "degraded" and body["database"] == "ok"
    failing = {problem["source"]: problem for problem in body["failing"]}
    assert "HTTP 503" in failing["down"]["message"]
    assert "refused" in failing["nowhere"]["message"].lower() or "connect" in (
        failing["nowhere"]["message"].lower()
    )
    for problem in failing.values():
        assert problem["since"] and problem["next_retry"]
    assert daemon.stop(30) == 0


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
def test_the_page_marks_failing_sources_in_a_browser(
    tmp_path: Path, server: FeedServer, start: Callable[..., DaemonProcess]
) -> None:
    daemon = _failing_daemon(tmp_path, server, start)
    result = chromium(tmp_path, "--dump-dom", daemon.url + "/")
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    dom = result.stdout.decode("utf-8")
    listed = re.findall(r'<li class="failing">(.*?)</li>', dom, flags=re.S)
    assert len(listed) == 2, dom
    down = next(item for item in listed if "<b>down</b>" in item)
    assert re.search(r"failing since \d{4}-\d\d-\d\d \d\d:\d\d UTC: HTTP 503", down)
    assert any("Nowhere [x]" in item for item in listed)  # brackets are text
    assert dom.count('class="failing" title="failing"') == 2  # both marked in the source list
    assert daemon.stop(30) == 0


# -- reloading the sources file ------------------------------------------------------


def test_a_source_added_to_the_file_is_polled_after_sighup(
    tmp_path: Path, server: FeedServer, start: Callable[..., DaemonProcess]
) -> None:
    config = write_config(tmp_path, server, [SourceSpec("a", "/a")], parse_processes=0)
    sources = tmp_path / "sources.toml"
    added = _source_block(server, "b", "/b")
    # Padding the new source replaces, so the file keeps its size, inode and time:
    # only the signal can make the daemon read it.
    original = sources.read_text(encoding="utf-8")
    sources.write_text(original + "#" * len(added) + "\n", encoding="utf-8")
    daemon = start(config, database_url=_database(tmp_path))
    daemon.wait_started()
    assert wait_until(_polled(server, "/a"), 30), daemon.log()

    before = os.stat(sources)
    with sources.open("r+", encoding="utf-8") as handle:  # in place: the same inode
        handle.seek(len(original.encode()))
        handle.write(added)
    os.utime(sources, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(sources)
    assert (after.st_size, after.st_ino, after.st_mtime_ns) == (
        before.st_size,
        before.st_ino,
        before.st_mtime_ns,
    )
    wait_until(lambda: False, 2)  # several ticks: the unchanged file is not re-read
    assert not server.requests("/b")

    daemon.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    assert wait_until(_polled(server, "/b"), 30), daemon.log()
    assert "sources reloaded: 2 polled; added b" in daemon.log()
    assert daemon.stop(30) == 0


def test_an_edited_file_is_reloaded_without_a_signal_and_a_broken_one_is_not(
    tmp_path: Path, server: FeedServer, start: Callable[..., DaemonProcess]
) -> None:
    config = write_config(tmp_path, server, [SourceSpec("a", "/a")], parse_processes=0)
    sources = tmp_path / "sources.toml"
    daemon = start(config, database_url=_database(tmp_path))
    daemon.wait_started()
    assert wait_until(_polled(server, "/a"), 30), daemon.log()

    # An edit: "a" removed, "b" added.
    sources.write_text(_source_block(server, "b", "/b"), encoding="utf-8")
    assert wait_until(_polled(server, "/b"), 30), daemon.log()
    assert "added b; removed a" in daemon.log()
    polls_of_a = len(server.requests("/a"))

    # A broken edit (two problems): every problem is logged, "b" goes on being polled.
    broken = _source_block(server, "b", "/b") + _source_block(server, "c", "/c")
    broken = broken.replace('name = "c"', 'name = "c"\ncolour = "red"')
    sources.write_text(broken.replace('interval = "2s"', 'interval = "soon"'), encoding="utf-8")
    assert wait_until(lambda: "not reloaded" in daemon.log(), 30), daemon.log()
    log = daemon.log()
    assert "source[0] (b).interval" in log
    assert "source[1] (c).interval" in log
    assert "source[1] (c).colour: unknown key" in log
    polls_of_b = len(server.requests("/b"))
    assert wait_until(lambda: len(server.requests("/b")) > polls_of_b, 30), daemon.log()
    assert not server.requests("/c")
    assert len(server.requests("/a")) <= polls_of_a + 1  # at most one already under way
    assert daemon.stop(30) == 0


# -- topics reload with the sources file ---------------------------------------------


def _topic_block(topic_id: str, title: str, query: str) -> str:
    return f'\n[[topic]]\nid = "{topic_id}"\ntitle = "{title}"\nquery = "{query}"\n'


def test_topics_added_changed_and_removed_in_the_file_are_served_without_a_restart(
    tmp_path: Path, server: FeedServer, start: Callable[..., DaemonProcess]
) -> None:
    config = write_config(tmp_path, server, [SourceSpec("a", "/a")], parse_processes=0)
    sources = tmp_path / "sources.toml"
    base = sources.read_text(encoding="utf-8")
    sources.write_text(base + _topic_block("story", "Stories", "story"), encoding="utf-8")
    daemon = start(config, database_url=_database(tmp_path))
    daemon.wait_http()

    def feed(topic_id: str, headers: dict[str, str] | None = None) -> httpx2.Response:
        url = f"{daemon.url}/topics/{topic_id}/feed.json"
        return httpx2.get(url, headers=headers or {}, timeout=5)

    def titles(topic_id: str) -> list[str] | None:
        """The topic feed's item titles; None while it is no topic (400)."""
        response = feed(topic_id)
        if response.status_code == 400:
            return None
        assert response.status_code == 200, response.text
        return [item["title"] for item in response.json()["items"]]

    def page() -> str:
        return httpx2.get(daemon.url + "/", timeout=5).text

    assert wait_until(lambda: titles("story") == ["First [story]"], 30), daemon.log()
    before = feed("story")
    assert "Firsts" not in page()

    # "story" searches for something else now (its articles change under the same URL,
    # so its validator must too); "first" is added.
    sources.write_text(
        base
        + _topic_block("story", "Stories", "nothing-matches-this")
        + _topic_block("first", "Firsts", "first"),
        encoding="utf-8",
    )
    assert wait_until(lambda: titles("story") == [], 30), daemon.log()
    assert titles("first") == ["First [story]"]
    assert "added first; removed none; changed story" in daemon.log()
    again = feed("story", {"If-None-Match": before.headers["etag"]})
    assert again.status_code == 200 and again.json()["items"] == []
    listed = page()
    assert f'href="{daemon.url}/?topic=first">Firsts</a>' in listed and "Stories" in listed
    atom = httpx2.get(f"{daemon.url}/topics/first/atom.xml", timeout=5).text
    assert "<title>aggregator: Firsts</title>" in atom

    # "first" is broken by an edit (it stays as it was), "story" removed, "third" added.
    sources.write_text(
        base
        + _topic_block("first", "Firsts", "first OR")
        + _topic_block("third", "Thirds", "body"),
        encoding="utf-8",
    )
    assert wait_until(lambda: titles("third") is not None, 30), daemon.log()
    assert titles("story") is None
    assert titles("first") == ["First [story]"]
    assert titles("third") == ["First [story]"]
    reported = [line for line in daemon.log().splitlines() if "(first)" in line]
    assert len(reported) == 1, reported  # one line, naming the file and the topic
    assert (
        f"topic not reloaded: {sources}:topic[0] (first).query: OR needs a term on each side;"
        " the topic stays as it was"
    ) in reported[0]
    listed = page()
    assert "Thirds" in listed and "Stories" not in listed and "Firsts" in listed
    assert daemon.stop(30) == 0
