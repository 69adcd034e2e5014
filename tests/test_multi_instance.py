"""Three ``aggregator run`` processes sharing one PostgreSQL database.

The sources are split through leases in the database (``Store.claim_due_states``), so
every source must be fetched about once per interval *in total*, never by two
instances at once, and articles that several feeds share, stored concurrently by
different instances, must still be stored once.  A crashed instance's sources
must come back to the survivors once its leases expire.

Needs ``AGGREGATOR_TEST_DATABASE_URL`` (skipped with that reason otherwise); each
test runs in a fresh schema that is dropped afterwards.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_helpers import (
    DaemonProcess,
    SourceSpec,
    daemons,
    delayed,
    rss,
    to_monotonic,
    wait_until,
    write_config,
)
from dbhelpers import postgres_database
from feedserver import FeedServer
from sqlalchemy import create_engine, text

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SOURCES = [f"f{n:02d}" for n in range(50)]
SHARED = 10  # shared stories; feed n carries shared story n % SHARED
OWN = 3  # stories only one feed carries
INTERVAL = 3.0
TICK = 0.5
SLACK = 0.05


def _items(source: str) -> list[tuple[str, str, str]]:
    n = int(source[1:])
    own = [
        (f"{source}-{k}", f"https://example.org/{source}/{k}", f"Story {k} of {source}")
        for k in range(OWN)
    ]
    shared = n % SHARED
    return [
        *own,
        (f"{source}-shared", f"https://example.org/shared/{shared}", f"Shared story {shared}"),
    ]


EXPECTED_LINKS = {link for source in SOURCES for _, link, _ in _items(source)}


@pytest.fixture
def database_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as feed_server:
        for source in SOURCES:
            # A short wait keeps a few polls in flight at any moment (leases held).
            feed_server.route(f"/{source}.xml", delayed(rss(source, _items(source)), 0.2))
        yield feed_server


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    with daemons(tmp_path) as factory:
        yield factory


def _config(tmp_path: Path, server: FeedServer, *, lease: float) -> Path:
    return write_config(
        tmp_path,
        server,
        [SourceSpec(source, f"/{source}.xml", interval=f"{INTERVAL:g}s") for source in SOURCES],
        tick_seconds=TICK,
        lease_seconds=lease,
    )


def _start_three(
    start: Callable[..., DaemonProcess], config: Path, database_url: str
) -> dict[str, DaemonProcess]:
    """Three instances started together (they also race to migrate); by owner name."""
    processes = [start(config, database_url=database_url, name=f"i{n}") for n in range(3)]
    return {process.wait_started(): process for process in processes}


def _fetches(server: FeedServer) -> dict[str, list[float]]:
    return {source: [r.time for r in server.requests(f"/{source}.xml")] for source in SOURCES}


def _too_close(times: dict[str, list[float]]) -> dict[str, float]:
    """Sources fetched twice within 0.8 intervals: the smallest gap of each."""
    close = {}
    for source, moments in times.items():
        gaps = [b - a for a, b in zip(moments, moments[1:], strict=False)]
        if gaps and min(gaps) < 0.8 * INTERVAL:
            close[source] = round(min(gaps), 3)
    return close


def _polled_sources(process: DaemonProcess) -> set[str]:
    return set(re.findall(r"source=(\S+) url=\S+: poll (?:ok|not-modified):", process.log()))


def _check_database(database_url: str) -> None:
    """Every generated story stored once, with one provenance row per feed carrying it."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            links = list(conn.scalars(text("SELECT link FROM articles")))
            routes = list(
                conn.execute(
                    text(
                        "SELECT a.link, p.source_id FROM provenance p"
                        " JOIN articles a ON a.id = p.article_id"
                    )
                )
            )
            pairs = list(conn.execute(text("SELECT article_id, source_id FROM provenance")))
            raws = conn.scalar(text("SELECT count(*) FROM raw_entries"))
            failures = conn.scalar(
                text("SELECT count(*) FROM source_state WHERE consecutive_failures > 0")
            )
    finally:
        engine.dispose()
    assert len(links) == len(set(links)), "an article stored twice"
    assert set(links) == EXPECTED_LINKS
    assert len(pairs) == len(set(pairs)), "a provenance row twice for one (article, source)"
    expected_routes = {(link, source) for source in SOURCES for _, link, _ in _items(source)}
    assert len(routes) == len(expected_routes)
    assert {(link, source) for link, source in routes} == expected_routes
    assert raws == len(expected_routes)
    assert failures == 0


def test_three_instances_share_the_sources_without_double_polling(
    server: FeedServer,
    tmp_path: Path,
    database_url: str,
    start: Callable[..., DaemonProcess],
) -> None:
    config = _config(tmp_path, server, lease=4.0)
    instances = _start_three(start, config, database_url)
    assert len(instances) == 3

    run_for = 15.0
    began = time.monotonic()
    time.sleep(run_for)
    for process in instances.values():
        assert process.running(), process.log()
    stopped = time.monotonic()
    for process in instances.values():
        assert process.stop(timeout=30) == 0, process.log()

    times = _fetches(server)
    assert all(times.values()), [s for s, moments in times.items() if not moments]
    assert _too_close(times) == {}, "a source fetched twice within 0.8 intervals"
    for source, all_moments in times.items():
        # The instances are stopped one after the other, and poll until they are.
        moments = [t for t in all_moments if t <= stopped]
        # From the source's first fetch to the stop, once per interval (the tick
        # adds up to half a second to each gap; a slow CI machine a little more).
        span = stopped - moments[0]
        assert len(moments) <= span / INTERVAL + 1, (source, len(moments), span)
        assert len(moments) >= 0.6 * span / INTERVAL, (source, len(moments), span)
    assert stopped - began >= run_for
    # The load really was shared: each instance polled some sources.
    for owner, process in instances.items():
        assert _polled_sources(process), f"{owner} never polled"
    _check_database(database_url)


def test_a_killed_instance_s_sources_are_taken_over(
    server: FeedServer,
    tmp_path: Path,
    database_url: str,
    start: Callable[..., DaemonProcess],
) -> None:
    # Longer than the interval: a dead instance's poll may have started a moment
    # before it fetched, and the takeover must still come an interval after the fetch.
    lease = 4.0
    config = _config(tmp_path, server, lease=lease)
    instances = _start_three(start, config, database_url)
    engine = create_engine(database_url)
    try:
        time.sleep(2 * INTERVAL)  # a couple of rounds, shared among the three

        victim: list[str] = []

        def pick_victim() -> bool:
            # An instance with polls behind it and a claim held right now: killing it
            # strands leases (claimed sources queued or in flight).
            with engine.connect() as conn:
                owners = conn.execute(
                    text(
                        "SELECT owner FROM leases WHERE owner IS NOT NULL AND expires > now()"
                        " GROUP BY owner ORDER BY count(*) DESC"
                    )
                ).scalars()
                for owner in owners:
                    if owner in instances and _polled_sources(instances[owner]):
                        instances[owner].kill()
                        victim.append(owner)
                        return True
            return False

        assert wait_until(pick_victim, 10, step=0.01)
        killed = time.monotonic()
        owner = victim[0]
        with engine.connect() as conn:
            held = {
                source: to_monotonic(expires)
                for source, expires in conn.execute(
                    text("SELECT source_id, expires FROM leases WHERE owner = :owner"),
                    {"owner": owner},
                )
            }
    finally:
        engine.dispose()
    assert held, "the killed instance held no lease; the takeover is not exercised"
    orphaned = _polled_sources(instances[owner])
    assert orphaned, "the killed instance had polled nothing"

    # Its leases run out, then every source must be fetched within two intervals.
    recovered = max(held.values())
    assert recovered <= killed + lease + SLACK
    window_end = recovered + 2 * INTERVAL + 1.0
    time.sleep(max(window_end - time.monotonic(), 0))
    survivors = {name: process for name, process in instances.items() if name != owner}
    for process in survivors.values():
        assert process.running(), process.log()
    for process in survivors.values():
        assert process.stop(timeout=30) == 0, process.log()

    times = _fetches(server)
    late = [s for s, moments in times.items() if not any(recovered <= t for t in moments)]
    assert late == [], f"not polled after the dead instance's leases ran out: {late}"
    assert orphaned - {s for s, m in times.items() if any(t > killed for t in m)} == set()
    # What the dead instance was polling waited for its lease, and nothing was polled
    # twice within an interval across the crash either.
    for source, expires in held.items():
        again = [t for t in times[source] if t > killed]
        assert again and again[0] >= expires - SLACK, (source, again[:1], expires)
    assert _too_close(times) == {}
    _check_database(database_url)
