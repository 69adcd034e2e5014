"""The operator's commands in-process: config, --version, OPML import as TOML, plain text."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_helpers import rss
from feedserver import FeedServer, static, status
from lxml import etree
from typer.testing import CliRunner

from aggregator import __version__, health
from aggregator.cli import app
from aggregator.store import Store
from aggregator.types import SourceState

# Brackets in a name and a URL longer than a terminal line: neither may be eaten or wrapped.
SOURCES = """
[[source]]
id = "bracketed"
name = "[VOA] 美国之音 [[source]]"
url = "https://feeds.example.org/a/very/long/path/that/goes/on/and/on/past/eighty/columns/feed.xml?x=1"
adapter = "voa"
interval = "2h"

[[source]]
id = "quiet"
name = "Quiet"
url = "https://quiet.example.org/feed.xml"
enabled = false
retention_days = 30
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AGGREGATOR_") and not name.startswith("AGGREGATOR_TEST_"):
            monkeypatch.delenv(name)


def _config(folder: Path, sources: str, *extra: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sources.toml").write_text(sources, encoding="utf-8")
    path = folder / "aggregator.toml"
    path.write_text(
        f'database_url = "sqlite:///{folder / "db.sqlite"}"\n'
        f'sources_file = "{folder / "sources.toml"}"\n' + "".join(f"{line}\n" for line in extra),
        encoding="utf-8",
    )
    return path


def _run(*args: str, code: int = 0) -> tuple[str, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.stdout, result.stderr


def test_opml_import_prints_toml_that_round_trips_through_export(tmp_path: Path) -> None:
    first = _config(tmp_path / "first", SOURCES)
    exported = tmp_path / "sources.opml"
    _run("--config", str(first), "opml", "export", "--out", str(exported))

    second = _config(tmp_path / "second", "")
    toml, summary = _run("--config", str(second), "opml", "import", str(exported))
    assert "2 new sources" in summary
    parsed = tomllib.loads(toml)  # the printed text is a sources file as it stands
    assert [table["name"] for table in parsed["source"]] == ["[VOA] 美国之音 [[source]]", "Quiet"]

    (tmp_path / "second" / "sources.toml").write_text(toml, encoding="utf-8")
    again = tmp_path / "again.opml"
    _run("--config", str(second), "opml", "export", "--out", str(again))

    def outlines(path: Path) -> list[dict[str, str]]:
        return [dict(node.attrib) for node in etree.parse(str(path)).iter("outline")]

    assert outlines(again) == outlines(exported)


def test_help_and_errors_keep_their_brackets(tmp_path: Path) -> None:
    help_text, _ = _run("opml", "import", "--help")
    assert "[[source]]" in help_text
    config = _config(tmp_path, SOURCES.replace('id = "quiet"', 'id = "Not[Valid]"'))
    _, error = _run("--config", str(config), "sources", code=2)
    assert "[a-z0-9]" in error  # the id rule, shown whole
    assert "Not[Valid]" in error


def test_config_prints_valid_toml_with_origins_and_a_masked_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, SOURCES, "http_port = 9090")
    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", "postgresql+psycopg://feeds:s3cret@db/news")
    text, _ = _run("--config", str(config), "--log-level", "warning", "config")
    assert "s3cret" not in text
    values = tomllib.loads(text)
    assert values["database_url"] == "postgresql+psycopg://feeds:***@db/news"
    assert values["http_port"] == 9090
    assert values["log_level"] == "WARNING"
    assert "base_url" not in values  # unset: a comment, not a value
    lines = {line.split(" =")[0].lstrip("# "): line for line in text.splitlines()}
    assert lines["http_port"].endswith(f"# file {config}")
    assert lines["database_url"].endswith("# environment AGGREGATOR_DATABASE_URL")
    assert lines["log_level"].endswith("# command line --log-level")
    assert lines["feed_limit"].endswith("# default")


def test_version() -> None:
    text, _ = _run("--version")
    assert text.strip() == f"aggregator {__version__}"


def test_a_bad_log_level_is_one_usage_line_not_a_traceback() -> None:
    result = CliRunner().invoke(app, ["--log-level", "LOUD", "config"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "'LOUD'" in result.output


def test_config_errors_list_every_problem(tmp_path: Path) -> None:
    config = _config(tmp_path, SOURCES, "http_port = 'eighty'", "jitter = 7", "colour = 'red'")
    _, error = _run("--config", str(config), "config", code=2)
    for key in ("http_port", "jitter", "colour"):
        assert f"{config}:{key}:" in error
    assert "more problem" not in error

    broken = SOURCES.replace('adapter = "voa"', 'adapter = "nope"').replace("= 30", "= -1")
    config = _config(tmp_path, broken)
    _, error = _run("--config", str(config), "sources", code=2)
    assert "source[0] (bracketed).adapter: unknown adapter 'nope'" in error
    assert "source[1] (quiet).retention_days:" in error


SEEDS = Path(__file__).parent / "fixtures" / "seeds"


def test_item_ids_keep_the_first_base_urls_authority(tmp_path: Path) -> None:
    def ids_and_links(config: Path) -> tuple[set[str], set[str]]:
        text, _ = _run("--config", str(config), "export", "--format", "json")
        feed = json.loads(text)
        return {item["id"] for item in feed["items"]}, {feed["home_page_url"]}

    unset = _config(tmp_path, SOURCES)
    _run("--config", str(unset), "import", "--source", "bracketed", str(SEEDS))
    stand_in, _ = ids_and_links(unset)
    assert all(item.startswith("tag:127.0.0.1,2025:") for item in stand_in)

    first = _config(tmp_path, SOURCES, 'base_url = "https://news.example.org"')
    kept, _ = ids_and_links(first)
    assert all(item.startswith("tag:news.example.org,2025:") for item in kept)

    moved = _config(tmp_path, SOURCES, 'base_url = "https://feeds.example.net"')
    ids, links = ids_and_links(moved)
    assert ids == kept  # readers see the same items
    assert links == {"https://feeds.example.net/"}  # while links follow the new URL


# -- poll honours what servers asked --------------------------------------------------


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    with FeedServer() as server:
        server.route("/busy", status(429, retry_after="7200"))
        server.route("/gone", status(410))
        server.route("/fine", static(rss("Fine", [("g1", "https://example.org/1", "One")])))
        yield server


def _feed_sources(server: FeedServer, *paths: str) -> str:
    return "".join(
        f'[[source]]\nid = "{path}"\nname = "{path}"\nurl = "{server.url("/" + path)}"\n'
        'interval = "2h"\n'
        for path in paths
    )


def _rows(table: str) -> dict[str, str]:
    """Table lines by source id (the first cell); wrapped continuation lines are joined."""
    rows: dict[str, str] = {}
    current = None
    for line in table.splitlines():
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.rstrip()[1:-1].split("│")]
        if cells[0]:
            current = cells[0]
        if current is not None:
            rows[current] = (rows.get(current, "") + " " + " ".join(cells[1:])).strip()
    return rows


def test_poll_skips_what_servers_asked_to_leave_unless_forced(
    tmp_path: Path, feeds: FeedServer
) -> None:
    config = _config(
        tmp_path, _feed_sources(feeds, "busy", "gone", "fine"), "allow_private_addresses = true"
    )
    first, _ = _run("--config", str(config), "poll", code=0)  # "fine" succeeded
    assert "failed" in _rows(first)["busy"] and "failed" in _rows(first)["gone"]

    again, _ = _run("--config", str(config), "poll", "--source", "busy", "--source", "gone")
    rows = _rows(again)  # exit 0: skipped is not failed
    assert rows["busy"].startswith("skipped") and "Retry-After" in rows["busy"]
    assert rows["gone"].startswith("skipped") and "410" in rows["gone"]
    assert len(feeds.requests("/busy")) == len(feeds.requests("/gone")) == 1

    forced, _ = _run("--config", str(config), "poll", "--force", "-s", "busy", "-s", "gone", code=1)
    assert "failed" in _rows(forced)["busy"]
    assert len(feeds.requests("/busy")) == len(feeds.requests("/gone")) == 2


def test_poll_due_polls_only_sources_whose_time_has_come(tmp_path: Path, feeds: FeedServer) -> None:
    config = _config(tmp_path, _feed_sources(feeds, "fine"), "allow_private_addresses = true")
    _run("--config", str(config), "poll", "--due")  # never polled: due
    later, _ = _run("--config", str(config), "poll", "--due")
    assert _rows(later)["fine"].startswith("skipped") and "not due until" in _rows(later)["fine"]
    assert len(feeds.requests("/fine")) == 1
    _run("--config", str(config), "poll")  # without --due: polled now
    assert len(feeds.requests("/fine")) == 2


def test_a_loopback_source_is_refused_with_the_settings_that_allow_it(
    tmp_path: Path, feeds: FeedServer
) -> None:
    config = _config(tmp_path, _feed_sources(feeds, "fine"))
    _run("--config", str(config), "poll", code=1)
    (listed,) = json.loads(_run("--config", str(config), "sources", "--json")[0])
    assert "not a public address" in listed["problem"]
    assert "allow_private = true" in listed["problem"]
    assert "allow_private_addresses = true" in listed["problem"]


def test_sources_fits_80_columns_and_puts_the_cause_first(
    tmp_path: Path, feeds: FeedServer
) -> None:
    config = _config(
        tmp_path, _feed_sources(feeds, "busy", "fine"), "allow_private_addresses = true"
    )
    _run("--config", str(config), "poll")
    table, _ = _run("--config", str(config), "sources")
    assert max(len(line) for line in table.splitlines()) <= 80
    rows = _rows(table)
    assert "failing since" in rows["busy"] and "429" in rows["busy"]
    assert "failing" not in rows["fine"]
    wide, _ = _run("--config", str(config), "sources", "--wide")
    assert feeds.url("/busy") in wide
    listed = {
        row["id"]: row for row in json.loads(_run("--config", str(config), "sources", "--json")[0])
    }
    assert listed["busy"]["failing"] and "429" in listed["busy"]["problem"]
    assert listed["fine"]["articles"] == 1 and not listed["fine"]["failing"]


@pytest.mark.parametrize(
    "stored",
    [
        "HTTP 429: source=busy url=https://e.org/busy status=429: Retry-After 60",
        # as stored by an earlier version, which quoted every context value
        "HTTP 429: source='busy' url='https://e.org/busy' status=429: Retry-After 60",
    ],
)
def test_the_cause_leads_and_the_shown_source_and_url_are_dropped(stored: str) -> None:
    state = SourceState(source_id="busy", url="https://e.org/busy")
    assert health.cause_first(stored, state) == "HTTP 429: status=429: Retry-After 60"
    other = SourceState(source_id="bus", url="https://e.org/bus")  # a prefix is not a match
    assert "source=" in health.cause_first(stored, other)


def test_the_database_keeps_the_first_id_authority(database_url: str) -> None:
    with Store.open(database_url) as store:
        assert store.adopt_id_authority(None) is None  # reading proposes nothing
        assert store.adopt_id_authority("news.example.org,2025") == "news.example.org,2025"
    with Store.open(database_url) as store:  # another process, another base_url
        assert store.adopt_id_authority("feeds.example.net,2025") == "news.example.org,2025"
        assert store.adopt_id_authority(None) == "news.example.org,2025"
