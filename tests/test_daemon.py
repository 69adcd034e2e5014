"""The daemon as a process: ``aggregator run`` against a real feed server and SQLite file.

Each test starts the real CLI in a subprocess (see :mod:`daemon_helpers`), lets it
poll a :class:`FeedServer`, and then stops it the way production does: SIGTERM
(clean stop, in-flight polls finish), SIGKILL (a crash), or a restart.  What is
asserted is what was observed: the server's request log (monotonic arrival
times) and the rows in the database file.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import httpx2
import pytest
from daemon_helpers import (
    CONSOLE_SCRIPT,
    DaemonProcess,
    SourceSpec,
    child_processes,
    daemons,
    delayed,
    process_alive,
    rss,
    to_monotonic,
    wait_until,
    write_config,
)
from feedserver import RSS_TYPE, Exchange, FeedServer, stall, static, status
from lxml import etree
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text as sa_text

from aggregator.cli.poll import _poll_once
from aggregator.fetch import Fetcher, FetchLimits
from aggregator.pipeline import Poller
from aggregator.scheduler import Daemon
from aggregator.settings import Settings
from aggregator.store import Store
from aggregator.store.engine import create_engine
from aggregator.types import UTC, Source, SourceState
from aggregator.workers import DEMAND_ENTRIES

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures"
ATOM = "{http://www.w3.org/2005/Atom}"
# Clock conversion (wall <-> monotonic) and storage rounding are well under this.
SLACK = 0.05


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    with daemons(tmp_path) as factory:
        yield factory


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


def _connect(tmp_path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection (no store code between the test and the file)."""
    connection = sqlite3.connect(tmp_path / "db.sqlite", timeout=30)
    connection.row_factory = sqlite3.Row
    return connection


def _wall(value: str | None) -> datetime | None:
    """A timestamp column as SQLite hands it back (naive UTC text) -> aware UTC."""
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _states(tmp_path: Path) -> dict[str, sqlite3.Row]:
    """source_state rows by source id; empty before the schema exists."""
    connection = _connect(tmp_path)
    try:
        return {row["source_id"]: row for row in connection.execute("SELECT * FROM source_state")}
    except sqlite3.OperationalError:
        return {}
    finally:
        connection.close()


def _stored(tmp_path: Path) -> tuple[dict[str, tuple[str, str]], set[tuple[str, str]]]:
    """(link -> (title, body) of every article, {(link, source)} of every provenance row)."""
    connection = _connect(tmp_path)
    try:
        articles = {
            row["link"]: (row["title"], row["body"])
            for row in connection.execute("SELECT link, title, body FROM articles")
        }
        routes = {
            (row["link"], row["source_id"])
            for row in connection.execute(
                "SELECT a.link, p.source_id FROM provenance p JOIN articles a"
                " ON a.id = p.article_id"
            )
        }
    except sqlite3.OperationalError:
        return {}, set()
    finally:
        connection.close()
    return articles, routes


# --------------------------------------------------------------------------- SIGTERM


def test_sigterm_lets_the_in_flight_poll_finish_and_commit(
    server: FeedServer, tmp_path: Path, start: Callable[..., DaemonProcess]
) -> None:
    answered = threading.Event()
    slow_feed = rss("Slow", [("slow-1", "https://example.org/slow/1", "Slow story")])
    server.route("/slow.xml", delayed(slow_feed, 2.0, on_done=answered.set))
    server.route("/voa.xml", static((FIXTURES / "adapters" / "seeds-voa.xml").read_bytes()))
    server.route("/rfi.xml", static((FIXTURES / "adapters" / "seeds-rfi.xml").read_bytes()))
    config = write_config(
        tmp_path,
        server,
        [
            SourceSpec("voa", "/voa.xml", adapter="voa"),
            SourceSpec("rfi", "/rfi.xml", adapter="rfi"),
            SourceSpec("slow", "/slow.xml"),
        ],
        shutdown_grace=15,
    )
    daemon = start(config, database_url=_sqlite_url(tmp_path))
    daemon.wait_started()
    # The quick sources are stored while the slow one is still waiting for its answer.
    assert wait_until(
        lambda: (
            {"voa", "rfi"} <= {s for s, row in _states(tmp_path).items() if row["last_success"]}
        ),
        20,
    ), daemon.log()
    assert server.requests("/slow.xml"), "the slow source was never requested"
    assert not answered.is_set(), "the slow poll finished before SIGTERM; the test proves nothing"

    signalled = time.monotonic()
    assert daemon.stop(timeout=15 + 10) == 0, daemon.log()

    log = daemon.log()
    assert "stopped" in log
    assert "waiting up to" in log  # it did wait for the in-flight poll...
    assert "cancelled" not in log  # ...and did not have to cancel it
    assert answered.is_set()
    assert not [r for r in server.requests() if r.time > signalled], "new poll after SIGTERM"
    states = _states(tmp_path)
    assert states["slow"]["last_success"] is not None
    articles, routes = _stored(tmp_path)
    assert articles["https://example.org/slow/1"][0] == "Slow story"
    assert ("https://example.org/slow/1", "slow") in routes
    assert {"voa", "rfi"} <= {source for _, source in routes}


def test_sigterm_cancels_a_poll_that_outlasts_the_grace_period(
    server: FeedServer, tmp_path: Path, start: Callable[..., DaemonProcess]
) -> None:
    server.route("/stuck.xml", stall(seconds=60))
    server.route("/voa.xml", static((FIXTURES / "adapters" / "seeds-voa.xml").read_bytes()))
    config = write_config(
        tmp_path,
        server,
        [SourceSpec("stuck", "/stuck.xml"), SourceSpec("voa", "/voa.xml", adapter="voa")],
        shutdown_grace=1,
        total_timeout=60.0,
        read_timeout=60.0,
    )
    daemon = start(config, database_url=_sqlite_url(tmp_path))
    daemon.wait_started()
    assert wait_until(
        lambda: (
            server.requests("/stuck.xml")
            and (_states(tmp_path).get("voa") or {"last_success": None})["last_success"]
        ),
        20,
    ), daemon.log()

    # The fetch would wait 60 s; the grace period is 1 s, so the stop is bounded by it.
    assert daemon.stop(timeout=1 + 10) == 0, daemon.log()
    log = daemon.log()
    assert "cancelled 1 polls" in log
    assert "stopped" in log
    states = _states(tmp_path)
    assert "stuck" not in states or states["stuck"]["last_success"] is None
    connection = _connect(tmp_path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        held = connection.execute("SELECT source_id FROM leases WHERE owner IS NOT NULL").fetchall()
    finally:
        connection.close()
    # The cancelled poll gave its claim back, so a restart need not wait out the lease.
    # (Only this source: a claim racing the stop is tested further below.)
    assert "stuck" not in {row[0] for row in held}


class _SlowClaims(Store):
    """A store whose claims take a while, so that a stop can arrive in the middle."""

    claiming = threading.Event()

    def claim_due_states(self, *args: Any, **kwargs: Any) -> list[SourceState]:
        self.claiming.set()
        time.sleep(0.5)
        return super().claim_due_states(*args, **kwargs)


def test_a_stop_during_a_claim_leaves_no_lease_held(server: FeedServer, tmp_path: Path) -> None:
    server.route("/a.xml", static(rss("A", [("a-1", "https://example.org/a/1", "One")])))
    url = _sqlite_url(tmp_path)
    Store.open(url).close()  # migrated
    store = _SlowClaims(create_engine(url))
    settings = Settings(
        database_url=url, tick_seconds=0.5, lease_seconds=300, jitter=0.0, shutdown_grace=5
    )
    source = Source("a", "A", server.url("/a.xml"), interval=timedelta(seconds=60))

    async def run_until_mid_claim() -> None:
        stop = asyncio.Event()
        async with Fetcher(FetchLimits(allow_private=True)) as fetcher:
            daemon = Daemon(settings, [source], store, Poller(store, fetcher), owner="me")
            running = asyncio.create_task(daemon.run(stop))
            assert await asyncio.to_thread(store.claiming.wait, 10)
            stop.set()  # SIGTERM arrives while the claim is in its transaction
            await running

    try:
        asyncio.run(run_until_mid_claim())  # returns once the claim's thread is done too
        with store.engine.connect() as conn:
            held = conn.execute(sa_text("SELECT source_id FROM leases WHERE owner = 'me'"))
            # Either polled and released, or never claimed: a stopped daemon holds nothing.
            assert list(held) == []
    finally:
        store.close()


def test_a_poll_that_outlasts_its_lease_keeps_its_claim(server: FeedServer, tmp_path: Path) -> None:
    body = rss("A", [("a-1", "https://example.org/a/1", "One")])
    server.route("/a.xml", delayed(body, 2.0))  # four leases long
    url = _sqlite_url(tmp_path)
    store = Store.open(url)
    settings = Settings(
        database_url=url, tick_seconds=0.2, lease_seconds=0.5, jitter=0.0, shutdown_grace=5
    )
    source = Source("a", "A", server.url("/a.xml"), interval=timedelta(seconds=60))
    rival_claims: list[list[SourceState]] = []

    async def rival_claims_during_the_poll() -> None:
        stop = asyncio.Event()
        limits = FetchLimits(allow_private=True, total_timeout=10, read_timeout=10)
        async with Fetcher(limits) as fetcher:
            daemon = Daemon(settings, [source], store, Poller(store, fetcher), owner="me")
            running = asyncio.create_task(daemon.run(stop))
            await wait_until_async(lambda: "a" in daemon.in_flight, timeout=10)
            for _ in range(6):  # 1.5 s: three times the lease, all while the poll runs
                await asyncio.sleep(0.25)
                assert "a" in daemon.in_flight
                rival_claims.append(
                    await asyncio.to_thread(
                        store.claim_due_states,
                        [source],
                        now=datetime.now(UTC),
                        owner="rival",
                        lease=timedelta(seconds=60),
                        limit=1,
                    )
                )
            await wait_until_async(lambda: "a" not in daemon.in_flight, timeout=10)
            stop.set()
            await running

    try:
        asyncio.run(rival_claims_during_the_poll())
        assert rival_claims == [[]] * 6
        assert len(server.requests("/a.xml")) == 1
        assert store.get_state(source).last_success is not None  # the slow poll was stored
    finally:
        store.close()


class _ConcurrencyByHost:
    """Feeds that answer after a delay, recording the most requests in flight per Host."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.peak_total = 0

    def handler(self, body: bytes) -> Any:
        def handle(exchange: Exchange) -> None:
            host = exchange.request.headers["host"].rpartition(":")[0]
            with self.lock:
                self.now[host] = self.now.get(host, 0) + 1
                self.peak[host] = max(self.peak.get(host, 0), self.now[host])
                self.peak_total = max(self.peak_total, sum(self.now.values()))
            try:
                if not exchange.sleep(self.delay):
                    exchange.send(200, body, {"Content-Type": RSS_TYPE})
            finally:
                with self.lock:
                    self.now[host] -= 1

        return handle


def test_polls_of_one_host_are_limited_while_other_hosts_go_ahead(
    server: FeedServer, tmp_path: Path
) -> None:
    feeds = _ConcurrencyByHost(delay=0.4)
    sources = []
    # The same loopback server under two host names: six feeds on one, two on the other.
    for n, host in enumerate(["127.0.0.1"] * 6 + ["localhost"] * 2):
        path = f"/f{n}.xml"
        server.route(path, feeds.handler(rss(f"F{n}", [(f"f{n}", f"https://e.org/{n}", "x")])))
        url = server.url(path).replace("127.0.0.1", host)
        sources.append(Source(f"f{n}", f"F{n}", url, interval=timedelta(seconds=600)))
    url = _sqlite_url(tmp_path)
    store = Store.open(url)
    settings = Settings(
        database_url=url,
        tick_seconds=0.2,
        jitter=0.0,
        max_concurrent_polls=8,
        max_polls_per_host=2,
        parse_processes=0,
        allow_private_addresses=True,
    )

    async def poll_everything() -> None:
        stop = asyncio.Event()
        async with Fetcher(FetchLimits(allow_private=True)) as fetcher:
            daemon = Daemon(settings, sources, store, Poller(store, fetcher), owner="me")
            running = asyncio.create_task(daemon.run(stop))
            await wait_until_async(
                lambda: all(store.get_state(s).last_success for s in sources), timeout=20
            )
            stop.set()
            await running

    try:
        asyncio.run(poll_everything())
        assert feeds.peak == {"127.0.0.1": 2, "localhost": 2}
        assert feeds.peak_total == 4  # the second host did not wait behind the first

        # `aggregator poll` (all sources at once, no scheduler) keeps the same limit.
        feeds.peak, feeds.peak_total = {}, 0
        outcomes = asyncio.run(_poll_once(settings, sources, store))
        assert [outcome.status for outcome in outcomes] == ["ok"] * len(sources)
        assert feeds.peak == {"127.0.0.1": 2, "localhost": 2}
        assert feeds.peak_total == 4
    finally:
        store.close()


async def wait_until_async(condition: Callable[[], bool], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- SIGKILL


class _SlowFeeds:
    """30 feeds that answer after a delay, counting the requests still unanswered."""

    def __init__(self, server: FeedServer, count: int, delay: float) -> None:
        self.ids = [f"s{n:02d}" for n in range(count)]
        self.in_flight: set[str] = set()
        self.lock = threading.Lock()
        self.items = {
            source: [
                (f"{source}-{k}", f"https://example.org/{source}/{k}", f"Story {k} of {source}")
                for k in range(3)
            ]
            for source in self.ids
        }
        for source in self.ids:
            server.route(f"/{source}.xml", self._handler(source, rss(source, self.items[source])))
        self.delay = delay

    def _handler(self, source: str, body: bytes) -> Callable[[Exchange], None]:
        def handle(exchange: Exchange) -> None:
            with self.lock:
                self.in_flight.add(source)
            try:
                if not exchange.sleep(self.delay):
                    exchange.send(200, body, {"Content-Type": RSS_TYPE})
            finally:
                with self.lock:
                    self.in_flight.discard(source)

        return handle

    def unanswered(self) -> set[str]:
        with self.lock:
            return set(self.in_flight)


def _check_consistent(tmp_path: Path, feeds: _SlowFeeds) -> dict[str, tuple[str, str]]:
    """Integrity, complete rows, and each poll stored all-or-nothing with its state."""
    connection = _connect(tmp_path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        orphans = connection.execute(
            "SELECT a.link FROM articles a WHERE NOT EXISTS"
            " (SELECT 1 FROM provenance p WHERE p.article_id = a.id)"
        ).fetchall()
        assert orphans == [], "articles without provenance"
        without_raw = connection.execute(
            "SELECT p.article_id, p.source_id FROM provenance p WHERE NOT EXISTS (SELECT 1"
            " FROM raw_entries r WHERE r.article_id = p.article_id AND r.source_id = p.source_id)"
        ).fetchall()
        assert without_raw == [], "provenance without its raw entry"
    finally:
        connection.close()
    articles, routes = _stored(tmp_path)
    for link, (title, body) in articles.items():
        assert link and title.strip() and body.strip(), link
    states = _states(tmp_path)
    for source in feeds.ids:
        expected = {(link, source) for _, link, _ in feeds.items[source]}
        got = {route for route in routes if route[1] == source}
        polled = source in states and states[source]["last_success"] is not None
        # save_poll is one transaction: the state says "polled" exactly when the
        # articles are there, all of them.
        assert got == (expected if polled else set()), (source, polled, got)
    return articles


def test_sigkill_mid_poll_loses_nothing_and_the_restart_keeps_the_schedule(
    server: FeedServer, tmp_path: Path, start: Callable[..., DaemonProcess]
) -> None:
    feeds = _SlowFeeds(server, 30, delay=0.6)
    interval, lease = 6.0, 2.0
    config = write_config(
        tmp_path,
        server,
        [SourceSpec(source, f"/{source}.xml", interval=f"{interval:g}s") for source in feeds.ids],
        lease_seconds=lease,
        max_concurrent_polls=8,
        # One loopback host serves all 30 feeds: at the default 2 polls per host the
        # restarted daemon alone would need 9 s of the 10 s it is given to catch up.
        max_polls_per_host=8,
    )
    first = start(config, database_url=_sqlite_url(tmp_path), name="first")
    owner = first.wait_started()

    snapshot: dict[str, tuple[str, str]] = {}

    def mid_poll() -> bool:
        # Some polls stored, others waiting for their answer: kill now.
        nonlocal snapshot
        polled = [s for s, row in _states(tmp_path).items() if row["last_success"]]
        if len(polled) < 10 or not feeds.unanswered():
            return False
        snapshot = _stored(tmp_path)[0]
        return bool(feeds.unanswered())

    assert wait_until(mid_poll, 30, step=0.02), first.log()
    in_flight = feeds.unanswered()
    first.kill()
    killed = time.monotonic()
    assert in_flight and snapshot

    # The crash left a sound database that lost nothing committed.
    articles = _check_consistent(tmp_path, feeds)
    assert snapshot.items() <= articles.items()
    states = _states(tmp_path)
    polled_before = {s: _wall(row["next_poll"]) for s, row in states.items() if row["last_success"]}
    assert 10 <= len(polled_before) < 30
    connection = _connect(tmp_path)
    try:
        held = {
            row["source_id"]: _wall(row["expires"])
            for row in connection.execute(
                "SELECT source_id, expires FROM leases WHERE owner = ?", (owner,)
            )
        }
    finally:
        connection.close()
    # Sources whose answer had not arrived were still claimed by the dead instance.
    assert in_flight <= held.keys(), (in_flight, held)

    second = start(config, database_url=_sqlite_url(tmp_path), name="second")
    second.wait_started()
    restarted = time.monotonic()

    def fetched_after(source: str, moment: float) -> list[float]:
        return [r.time for r in server.requests(f"/{source}.xml") if r.time > moment]

    # Every source comes back: the held ones after their lease, the polled ones on
    # their schedule (both within a few ticks of when they are due).
    due_last = max(
        [to_monotonic(m) for m in polled_before.values() if m]
        + [to_monotonic(m) for m in held.values() if m]
    )
    assert wait_until(
        lambda: all(fetched_after(source, killed) for source in feeds.ids),
        max(due_last - time.monotonic(), 0) + 10,
    ), second.log()
    assert second.stop(timeout=30) == 0, second.log()

    early = []
    for source, next_poll in polled_before.items():
        assert next_poll is not None
        first_again = fetched_after(source, killed)[0]
        if first_again < to_monotonic(next_poll) - SLACK:
            early.append((source, round(to_monotonic(next_poll) - first_again, 2)))
    assert early == [], f"re-polled before their stored next_poll (s early): {early}"
    # The check is not vacuous: the restarted daemon was up before these were due.
    assert any(to_monotonic(m) > restarted for m in polled_before.values() if m)

    stolen = []
    for source, expires in held.items():
        assert expires is not None
        if source in polled_before:
            continue
        first_again = fetched_after(source, killed)[0]
        if first_again < to_monotonic(expires) - SLACK:
            stolen.append(source)
    assert stolen == [], f"claimed before the dead instance's lease ran out: {stolen}"

    # After the restart, every poll was stored whole, and nothing is duplicated.
    articles = _check_consistent(tmp_path, feeds)
    assert len(articles) == 30 * 3
    assert all(row["last_success"] for row in _states(tmp_path).values())


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason=f"no console script at {CONSOLE_SCRIPT}")
def test_parse_workers_load_no_daemon_code_and_go_with_a_killed_daemon(
    server: FeedServer, tmp_path: Path, start: Callable[..., DaemonProcess]
) -> None:
    # Enough entries that the pool starts: a smaller poll is parsed on a thread.
    items = [(f"g{n}", f"https://example.org/{n}", f"T{n}") for n in range(DEMAND_ENTRIES + 1)]
    server.route("/feed.xml", static(rss("One", items)))
    config = write_config(tmp_path, server, [SourceSpec("one", "/feed.xml")], parse_processes=2)
    daemon = start(config, database_url=_sqlite_url(tmp_path), console_script=True)
    daemon.wait_started()
    assert wait_until(lambda: "parse pool started" in daemon.log(), 60), daemon.log()

    children = child_processes(daemon.pid)
    workers = [pid for pid, command in children.items() if "aggregator.processes" in command]
    # The workers and nothing else (multiprocessing's pool brought its resource tracker).
    assert len(workers) == 2 and len(children) == 2, children
    for worker in workers:
        # multiprocessing's spawn re-ran the console script in each worker, which
        # imported the whole CLI; nothing may bring that back
        loaded = Path(f"/proc/{worker}/maps").read_text()
        for package in ("sqlalchemy", "pydantic_core"):  # both load .so files
            assert f"/{package}/" not in loaded, (worker, package)

    daemon.kill()  # SIGKILL: the daemon cannot shut its pool down
    assert wait_until(lambda: not any(map(process_alive, children)), 15), {
        pid: command for pid, command in children.items() if process_alive(pid)
    }


# --------------------------------------------------------------------------- backoff


def test_restart_resumes_the_backoff(
    server: FeedServer, tmp_path: Path, start: Callable[..., DaemonProcess]
) -> None:
    server.route("/down.xml", status(500))
    # Failures retry after 3, 6, 12, 24 s: the restart has the 12 s after the third
    # failure to come up, ample even for a start on a busy machine.
    interval = 12.0
    config = write_config(
        tmp_path, server, [SourceSpec("down", "/down.xml", interval=f"{interval:g}s")]
    )
    first = start(config, database_url=_sqlite_url(tmp_path), name="first")
    first.wait_started()
    assert wait_until(
        lambda: (
            (_states(tmp_path).get("down") or {"consecutive_failures": 0})["consecutive_failures"]
            >= 3
        ),
        30,
    ), first.log()
    assert first.stop(timeout=30) == 0, first.log()
    stopped = time.monotonic()

    before = _states(tmp_path)["down"]
    failures = before["consecutive_failures"]
    last_attempt, next_poll = _wall(before["last_attempt"]), _wall(before["next_poll"])
    assert last_attempt is not None and next_poll is not None
    assert before["last_error_kind"] == "http"
    expected_delay = timedelta(seconds=interval / 4 * 2 ** (failures - 1))
    assert abs((next_poll - last_attempt) - expected_delay) < timedelta(seconds=SLACK)
    fetches_before = len(server.requests("/down.xml"))
    assert fetches_before == failures

    second = start(config, database_url=_sqlite_url(tmp_path), name="second")
    second.wait_started()
    up = time.monotonic()
    assert to_monotonic(next_poll) > up, "restart too slow for the test to mean anything"
    assert wait_until(
        lambda: _states(tmp_path)["down"]["consecutive_failures"] > failures,
        to_monotonic(next_poll) - time.monotonic() + 10,
    ), second.log()
    assert second.stop(timeout=30) == 0, second.log()

    after_restart = [r.time for r in server.requests("/down.xml") if r.time > stopped]
    assert len(after_restart) == 1
    assert after_restart[0] >= to_monotonic(next_poll) - SLACK, "polled before its backoff ended"
    after = _states(tmp_path)["down"]
    assert after["consecutive_failures"] == failures + 1
    delay = _wall(after["next_poll"]) - _wall(after["last_attempt"])  # type: ignore[operator]
    assert abs(delay - 2 * expected_delay) < timedelta(seconds=SLACK)


# --------------------------------------------------------------------------- HTTP


FEEDS = {
    "voa": ("voa", FIXTURES / "adapters" / "seeds-voa.xml"),
    "rfi": ("rfi", FIXTURES / "adapters" / "seeds-rfi.xml"),
    "rfa": ("rfa", FIXTURES / "feeds" / "rfa-1.xml"),
    "zaobao": ("zaobao", FIXTURES / "feeds" / "zaobao-1.xml"),
    "zaobao-seeds": ("zaobao", FIXTURES / "adapters" / "seeds-zaobao.xml"),
    "zaobao-site": ("zaobao", FIXTURES / "adapters" / "seeds-zaobao.xml"),
}


def _backlog(daemon: DaemonProcess) -> int:
    body = httpx2.get(daemon.url + "/healthz", timeout=10).json()
    return int(body["search_backlog"])


def test_the_running_daemon_serves_what_it_polled(
    server: FeedServer, tmp_path: Path, start: Callable[..., DaemonProcess]
) -> None:
    for source, (_, path) in FEEDS.items():
        server.route(f"/{source}.xml", static(path.read_bytes(), etag=f'"{source}"'))
    config = write_config(
        tmp_path,
        server,
        [
            SourceSpec(source, f"/{source}.xml", adapter=adapter, interval="60s")
            for source, (adapter, _) in FEEDS.items()
        ],
        feed_limit=200,
    )
    daemon = start(config, database_url=_sqlite_url(tmp_path))
    daemon.wait_http()

    def health() -> dict[str, dict[str, object]]:
        body = httpx2.get(daemon.url + "/healthz", timeout=10).json()
        assert body["status"] == "ok"
        return body["sources"]  # type: ignore[no-any-return]

    assert wait_until(
        lambda: all((health().get(s) or {}).get("last_success") for s in FEEDS), 30, step=0.2
    ), daemon.log()

    # The index takes what the polls stored in the next pause (a tick).
    assert wait_until(lambda: health() and _backlog(daemon) == 0, 30, step=0.2), daemon.log()
    with Store.open(_sqlite_url(tmp_path), migrate=False) as store:
        stored = store.latest(limit=1000)
        assert store.search_backlog() == 0
    assert len(stored) > 30
    db_links = [item.article.link for item in stored]
    db_titles = {item.article.link: item.article.title for item in stored}

    with httpx2.Client(base_url=daemon.url, timeout=10) as client:
        responses = {path: client.get(path) for path in ("/feed.xml", "/atom.xml", "/feed.json")}
        for url_path, response in responses.items():
            assert response.status_code == 200, url_path
            etag = response.headers["etag"]
            again = client.get(url_path, headers={"If-None-Match": etag})
            assert again.status_code == 304, url_path
            assert again.content == b""
        metrics = client.get("/metrics").text
        sources = health()

    parsed = feedparser.parse(responses["/feed.xml"].content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    from_rss = [(e.id, e.link, e.title) for e in parsed.entries]

    atom = etree.fromstring(responses["/atom.xml"].content)
    from_atom = [
        (
            entry.findtext(f"{ATOM}id"),
            next(link.get("href") for link in entry.iterfind(f"{ATOM}link[@rel='alternate']")),
            entry.findtext(f"{ATOM}title"),
        )
        for entry in atom.iter(f"{ATOM}entry")
    ]
    from_json = [
        (item["id"], item["url"], item["title"])
        for item in json.loads(responses["/feed.json"].content)["items"]
    ]

    assert from_rss == from_atom == from_json
    assert [link for _, link, _ in from_rss] == db_links  # all of them, newest first
    assert all(title == db_titles[link] for _, link, title in from_rss)
    assert len({item_id for item_id, _, _ in from_rss}) == len(from_rss)

    for source in FEEDS:
        assert sources[source]["last_success"], source
        assert sources[source]["consecutive_failures"] == 0
    polls = {
        sample.labels["source"]: sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "aggregator_polls"
        for sample in family.samples
        if sample.name == "aggregator_polls_total" and sample.labels["outcome"] == "ok"
    }
    assert all(polls.get(source, 0) >= 1 for source in FEEDS), polls

    assert daemon.stop(timeout=30) == 0, daemon.log()
