"""Operational faults end in one log line (or one error line and an exit code), never a
traceback: a full disk under the daemon, a port in use, a database folder that cannot
be created, an unsupported database URL, a misspelled ``AGGREGATOR_*`` variable, and
an archive file whose front matter is nested 100,000 deep."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.pool import ConnectionPoolEntry

from aggregator import archive
from aggregator.errors import ArchiveError
from aggregator.fetch import Fetcher, FetchLimits
from aggregator.pipeline import Poller
from aggregator.scheduler import Daemon
from aggregator.settings import Settings, unknown_environment
from aggregator.store import Store
from aggregator.types import Source

CLI = Path(sys.executable).with_name("aggregator")
SOURCES = """[[source]]
id = "one"
name = "One"
url = "https://example.org/feed.xml"
adapter = "generic"
"""


# --- a full disk under the daemon -----------------------------------------------------


@pytest.fixture
def full_store(tmp_path: Path) -> Iterator[Store]:
    """A store whose database may not grow by a page: SQLite's view of a full disk."""
    with Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}") as store:

        def no_room(connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
            (pages,) = connection.execute("PRAGMA page_count").fetchone()
            connection.execute(f"PRAGMA max_page_count={pages}")

        event.listen(store.engine, "connect", no_room)
        store.engine.dispose()  # every connection from now on gets the limit
        yield store


def test_a_full_disk_logs_one_line_per_report_with_the_count(
    full_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # Port 9 on loopback (discard): should a claim ever succeed, no poll leaves the machine.
    sources = [
        Source(f"s{index:03}", "S" * 100, f"http://127.0.0.1:9/{index}/" + "p" * 200)
        for index in range(400)  # their first claim inserts rows: more pages than allowed
    ]
    settings = Settings(
        database_url="sqlite://", tick_seconds=1, jitter=0.0, max_concurrent_polls=100
    )

    async def ticks(daemon: Daemon, count: int) -> list[list[str]]:
        return [await daemon.poll_due() for _ in range(count)]

    async def run() -> tuple[list[list[str]], list[list[str]]]:
        async with Fetcher(FetchLimits()) as fetcher:
            daemon = Daemon(settings, sources, full_store, Poller(full_store, fetcher), owner="me")
            quiet = await ticks(daemon, 5)  # one report for the first, then counted
            daemon.claim_failures.interval = 0.0  # from now on, report every tick
            loud = await ticks(daemon, 2)
            await daemon.shutdown()
            return quiet, loud

    with caplog.at_level(logging.INFO):
        quiet, loud = asyncio.run(run())
    assert quiet + loud == [[]] * 7  # nothing claimed, nothing raised
    records = [record for record in caplog.records if record.name == "aggregator.scheduler"]
    errors = [record for record in records if record.levelno >= logging.ERROR]
    assert [record.exc_info for record in records] == [None] * len(records)  # no traceback
    assert len(errors) == 3
    assert "database or disk is full" in errors[0].getMessage()
    assert "\n" not in errors[0].getMessage()
    assert "(5 times since the last report, 6 in a row)" in errors[1].getMessage()
    assert "(1 times since the last report, 7 in a row)" in errors[2].getMessage()


# --- start-up faults through the installed command -------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "sources.toml").write_text(SOURCES, encoding="utf-8")
    clean = {name: value for name, value in os.environ.items() if not name.startswith("AGGREGATOR")}
    return {
        **clean,
        "AGGREGATOR_SOURCES_FILE": str(tmp_path / "sources.toml"),
        "AGGREGATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'db.sqlite'}",
        "AGGREGATOR_HTTP_PORT": "0",
    }


def aggregator(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and text in lines[0], result.stderr


def test_a_port_in_use_is_one_line_and_exit_1(env: dict[str, str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        env["AGGREGATOR_HTTP_PORT"] = str(taken.getsockname()[1])
        result = aggregator(env, "serve")
    assert_one_error_line(result, 1, "cannot listen on 127.0.0.1:")


def test_an_uncreatable_database_folder_is_one_line_and_exit_1(
    env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("not a folder")
    env["AGGREGATOR_DATABASE_URL"] = f"sqlite:///{tmp_path / 'file' / 'data' / 'db.sqlite'}"
    assert_one_error_line(aggregator(env, "sources"), 1, "cannot create the database folder")


@pytest.mark.parametrize("url", ["mysql://user@db/news", "oracle+cx_oracle://db", "://nothing"])
def test_an_unsupported_database_url_is_one_line_and_exit_2(env: dict[str, str], url: str) -> None:
    env["AGGREGATOR_DATABASE_URL"] = url
    assert_one_error_line(aggregator(env, "sources"), 2, "database_url")


def test_unknown_aggregator_variables_are_reported_at_start(env: dict[str, str]) -> None:
    env["AGGREGATOR_DATABSE_URL"] = "sqlite:///elsewhere.db"
    env["AGGREGATOR_CONFIG"] = ""  # the tooling's own variables are known
    result = aggregator(env, "sources")
    assert result.returncode == 0, result.stderr
    assert "unknown environment variable AGGREGATOR_DATABSE_URL" in result.stderr
    assert "did you mean AGGREGATOR_DATABASE_URL?" in result.stderr
    assert "AGGREGATOR_CONFIG" not in result.stderr


def test_known_variables_are_not_reported() -> None:
    known = {"AGGREGATOR_HTTP_PORT": "1", "aggregator_log_level": "INFO", "PATH": "/bin"}
    known |= {"AGGREGATOR_CONFIG": "", "AGGREGATOR_TEST_DATABASE_URL": ""}
    assert unknown_environment(known) == []
    assert unknown_environment({"AGGREGATOR_NOPE": "1"}) == ["AGGREGATOR_NOPE"]


# --- an archive file nested 100,000 deep ------------------------------------------------


def test_deeply_nested_front_matter_skips_only_its_file(tmp_path: Path) -> None:
    bad = tmp_path / "2024-01-01-bad.md"
    bad.write_text("---\ntitle: x\ntags: " + "[" * 100_000 + "]" * 100_000 + "\n---\n")
    good = tmp_path / "2024-01-02-good.md"
    good.write_text(
        "---\nlayout: post\ntitle: Good\nauthor: A\ntags: [ a ]\ncategories: [ b ]\n"
        "from: https://example.org/good\n---\n<!--1704153600000-->\n"
        "[Good](https://example.org/good)\n------\n\n<p>Body</p>\n",
        encoding="utf-8",
    )
    results = dict(archive.read_files([bad, good]))
    assert isinstance(results[bad], ArchiveError)
    assert "nested too deeply" in str(results[bad])
    good_read = results[good]
    assert not isinstance(good_read, ArchiveError), good_read
    assert good_read.article.title == "Good"
