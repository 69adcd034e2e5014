"""The CLI in-process (typer's runner): import, export, sources, prune, OPML, help."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import feedparser
import pytest
from daemon_helpers import daemons
from lxml import etree
from sqlalchemy import update
from typer.testing import CliRunner

from aggregator import archive
from aggregator.adapters import get_adapter, register
from aggregator.cli import app
from aggregator.search import parse_query
from aggregator.store import Store, _search
from aggregator.store.tables import articles
from aggregator.types import Article, RawEntry, Source

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent
SEEDS = sorted((FIXTURES / "seeds").glob("*.txt"))
SOURCES = """
[[source]]
id = "zaobao"
name = "联合早报"
url = "https://feedx.net/rss/zaobao.xml"
adapter = "zaobao"

[[source]]
id = "rfi"
name = "法广"
url = "https://feedx.net/rss/rfi.xml"
adapter = "rfi"

[[source]]
id = "rfa"
name = "自由亚洲电台"
url = "https://feedx.net/rss/rfa.xml"
adapter = "rfa"

[[source]]
id = "voa"
name = "美国之音"
url = "https://feedx.net/rss/mgzy1.xml"
adapter = "voa"
retention_days = 36500
"""


FLAKY_SOURCE = """
[[source]]
id = "flaky"
name = "Flaky"
url = "https://flaky.example.org/feed.xml"
adapter = "test-crashes-on-boom"
"""


@register("test-crashes-on-boom")
def _crashes_on_boom(entry: RawEntry, source: Source, fetched_at: datetime) -> Article:
    """A buggy adapter (a real one, registered): it crashes on one entry in particular."""
    if "boom" in (entry.title or ""):
        raise ZeroDivisionError("division by zero")
    return get_adapter("generic")(entry, source, fetched_at)


def _expected_bodies() -> dict[str, str]:
    """The cleaned bodies the adapter golden files expect, by link (first one per link)."""
    bodies: dict[str, str] = {}
    for path in sorted((FIXTURES / "adapters").glob("seeds-*.expected.json")):
        for item in json.loads(path.read_text(encoding="utf-8"))["articles"]:
            bodies.setdefault(item["link"], item["body"])
    return bodies


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    for name in list(os.environ):
        if name.startswith("AGGREGATOR_"):
            monkeypatch.delenv(name)
    (tmp_path / "sources.toml").write_text(SOURCES, encoding="utf-8")
    path = tmp_path / "aggregator.toml"
    path.write_text(
        f'database_url = "{database_url}"\n'
        f'sources_file = "{tmp_path / "sources.toml"}"\n'
        'base_url = "https://news.example.org"\n',
        encoding="utf-8",
    )
    return path


class Invoke(Protocol):
    def __call__(self, *args: str, code: int = 0) -> str: ...


@pytest.fixture
def invoke(config: Path) -> Iterator[Invoke]:
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, ["--config", str(config), *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    yield run


def test_import_then_jekyll_export_reproduces_the_seeds(
    invoke: Invoke, tmp_path: Path, database_url: str
) -> None:
    output = invoke("import", *map(str, SEEDS))
    assert "5 files: 5 new" in output
    with Store.open(database_url) as store:  # indexed before the command exited
        assert store.search_backlog() == 0
        found = {item.id for item in store.search(parse_query("防长"))}
        with store.engine.connect() as conn:
            assert _search.candidates(conn, parse_query("防长")) == found != set()
    assert "0 new" in invoke("import", str(FIXTURES / "seeds"))  # twice adds nothing

    out = tmp_path / "site"
    assert "5 written, 0 unchanged" in invoke("export", "--format", "jekyll", "--out", str(out))
    assert "0 written, 5 unchanged" in invoke("export", "--format", "jekyll", "--out", str(out))

    exported = {doc.article.link: doc for doc in map(archive.read_file, (out / "_posts").iterdir())}
    bodies = _expected_bodies()
    for seed_path in SEEDS:
        seed = archive.read_file(seed_path)
        original, again = seed.article, exported[seed.article.link].article
        # Always equal: the identity and text of the article.
        assert again.title == original.title
        assert again.link == original.link
        # Equal where the seed records them (the bare layout has no front matter).
        if seed.layout is not None:
            assert again.fetched == original.fetched
            assert again.source_name == original.source_name
            assert again.tags == original.tags and again.categories == original.categories
            assert again.comments == original.comments
        # The published time differs only where the seed carried a known bug:
        # Zaobao's Singapore time read as UTC (-8 h) and RFA's NaN (taken from the URL).
        if "zaobao.com" in original.link:
            assert original.published is not None and again.published is not None
            assert original.published - again.published == (
                datetime(2021, 1, 1, 8, tzinfo=UTC) - datetime(2021, 1, 1, tzinfo=UTC)
            )
        elif "rfa.org" in original.link:
            assert original.published is None
            assert again.published == datetime(2024, 10, 14, 15, 1, 12, tzinfo=UTC)
        else:
            assert again.published == original.published
        # The body is the cleaned one, exactly what the adapter golden files expect.
        assert again.body == bodies[original.link]
        assert "获取更多RSS" not in again.body and "dfp-ad" not in again.body


def test_import_counts_add_up_and_each_skipped_file_is_one_line(
    invoke: Invoke, tmp_path: Path, config: Path
) -> None:
    with (tmp_path / "sources.toml").open("a", encoding="utf-8") as sources:
        sources.write(FLAKY_SOURCE)
    folder = tmp_path / "archive"
    folder.mkdir()
    for seed in SEEDS:
        (folder / seed.name).write_bytes(seed.read_bytes())
    (folder / "copy-of-first.txt").write_bytes(SEEDS[0].read_bytes())  # a duplicate
    (folder / "broken [draft].txt").write_text("no front matter here\n", encoding="utf-8")
    first = archive.read_file(SEEDS[0]).article
    for title in ("boom goes the adapter", "a calm day"):
        flaky = replace(
            first, source_name="Flaky", title=title, link=f"https://flaky.example.org/{title[0]}"
        )
        archive.write_archive([flaky], folder / title[0])

    missing = tmp_path / "missing.txt"

    output = invoke("import", str(folder), str(missing))

    assert output.splitlines()[-1] == (
        "10 files: 6 new, 0 updated, 0 already stored, 1 duplicates, 3 skipped"
    )
    lines = output.splitlines()
    skipped = [line for line in lines if line.startswith("skipped ")]
    assert len(skipped) == 3
    assert len([line for line in lines if "broken [draft].txt" in line]) == 1  # once
    (broken,) = [line for line in skipped if "broken [draft].txt" in line]
    unreadable = f"skipped {missing}: cannot read: No such file or directory"
    (crashed,) = set(skipped) - {broken, unreadable}
    assert "boom-goes-the-adapter" in crashed  # the file is named
    assert "adapter 'test-crashes-on-boom' crashed" in crashed
    assert "ZeroDivisionError: division by zero" in crashed
    # Again: what was stored is found; the copy is still a duplicate of its twin.
    again = invoke("import", str(folder)).splitlines()[-1]
    assert again == "9 files: 0 new, 0 updated, 6 already stored, 1 duplicates, 2 skipped"


def test_export_feeds_to_stdout_and_files(invoke: Invoke, tmp_path: Path) -> None:
    invoke("import", str(FIXTURES / "seeds"))
    rss = invoke("export", "--format", "rss")
    parsed = feedparser.parse(rss.encode())
    assert len(parsed.entries) == 5
    assert parsed.entries[0].published_parsed >= parsed.entries[-1].published_parsed  # newest first
    assert {entry.link for entry in parsed.entries} >= {
        "https://www.voachinese.com/a/china-steps-military-tie-with-russia-20230703/7164552.html"
    }
    atom_file = tmp_path / "atom.xml"
    invoke("export", "--format", "atom", "--source", "zaobao", "--out", str(atom_file))
    atom = etree.parse(str(atom_file))
    entries = atom.findall("{http://www.w3.org/2005/Atom}entry")
    assert len(entries) == 2
    feed_json = json.loads(invoke("export", "--format", "json", "--limit", "2"))
    assert len(feed_json["items"]) == 2 and "next_url" in feed_json
    invoke("export", "--format", "rss", "--source", "nope", code=2)


@pytest.mark.parametrize("fmt", ["rss", "atom", "json"])
def test_an_exported_page_is_the_served_page_byte_for_byte(
    invoke: Invoke, database_url: str, fmt: str
) -> None:
    from starlette.testclient import TestClient

    from aggregator.export.site import FEED_PATHS
    from aggregator.serve import create_app

    invoke("import", str(FIXTURES / "seeds"))
    exported = invoke("export", "--format", fmt, "--source", "zaobao", "--limit", "1")
    names = {"zaobao": "联合早报", "rfi": "法广", "rfa": "自由亚洲电台", "voa": "美国之音"}
    with Store.open(database_url) as store:
        app = create_app(store, base_url="https://news.example.org", sources=names)
        with TestClient(app) as client:
            served = client.get(FEED_PATHS[fmt], params={"source": "zaobao", "limit": "1"})
    assert served.status_code == 200
    assert exported == served.text
    assert "limit=1&amp;before=" in exported or "limit=1&before=" in exported  # a next page


TOKEN = "a-feed-token-of-20-chars"


@pytest.mark.parametrize("fmt", ["rss", "atom", "json"])
def test_an_export_with_the_token_is_the_page_served_to_a_token_query(
    invoke: Invoke, database_url: str, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """A file for a feed reader links back as the service does for a reader that came
    with ``?token=``: every link to the service with the token, the feed's id without."""
    from starlette.testclient import TestClient

    from aggregator.export.site import FEED_PATHS
    from aggregator.serve import create_app

    invoke("import", str(FIXTURES / "seeds"))
    monkeypatch.setenv("AGGREGATOR_FEED_TOKEN", TOKEN)
    exported = invoke(
        "export", "--format", fmt, "--source", "zaobao", "--limit", "1", "--with-token"
    )
    names = {"zaobao": "联合早报", "rfi": "法广", "rfa": "自由亚洲电台", "voa": "美国之音"}
    with Store.open(database_url) as store:
        app = create_app(
            store, base_url="https://news.example.org", sources=names, feed_token=TOKEN
        )
        with TestClient(app) as client:
            served = client.get(
                FEED_PATHS[fmt], params={"source": "zaobao", "limit": "1", "token": TOKEN}
            )
    assert served.status_code == 200
    assert exported == served.text
    assert f"token={TOKEN}" in exported and "before=" in exported  # the next page's too


def test_an_export_says_when_its_links_lack_the_token(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke("import", str(FIXTURES / "seeds"))
    no_token = invoke("export", "--format", "rss", "--with-token", code=2)
    assert "--with-token: no feed_token is set" in no_token
    monkeypatch.setenv("AGGREGATOR_FEED_TOKEN", TOKEN)
    told = invoke("export", "--format", "rss")
    assert "feed_token is set: this file's links to the service will be refused" in told
    assert TOKEN not in told  # not written unless asked for


def test_sources_table_shows_counts(invoke: Invoke) -> None:
    invoke("import", str(FIXTURES / "seeds"))
    table = invoke("sources")
    rows = [line[1:-1].split("│") for line in table.splitlines() if line.startswith("│")]
    lines = {cells[0].strip(): [cell.strip() for cell in cells] for cells in rows}
    assert set(lines) == {"zaobao", "rfi", "rfa", "voa"}
    assert lines["zaobao"][1] == "2"  # source, articles, last success, next poll, problem
    assert lines["voa"][2] == "never"


def _age(database_url: str, days: float) -> None:
    """Make every stored article look first stored ``days`` ago."""
    with Store.open(database_url) as store, store.engine.begin() as conn:
        when = datetime.now(UTC) - timedelta(days=days)
        conn.execute(update(articles).values(stored_at=when))


def test_an_archive_survives_the_shipped_settings(
    invoke: Invoke, config: Path, database_url: str, tmp_path: Path
) -> None:
    shipped = (ROOT / "config" / "aggregator.toml").read_text(encoding="utf-8")
    lines = [
        line
        for line in shipped.splitlines()
        if not line.startswith(("database_url", "sources_file"))
    ]
    config.write_text("\n".join([*lines, *config.read_text(encoding="utf-8").splitlines(), ""]))
    # No source's own retention, and (so the daemon never reaches the internet) disabled.
    sources = SOURCES.replace("retention_days = 36500\n", "")
    (tmp_path / "sources.toml").write_text(
        sources.replace("[[source]]", "[[source]]\nenabled = false")
    )
    invoke("import", *map(str, SEEDS))
    _age(database_url, 3650)

    assert "retention is off" in invoke("prune")
    config.write_text(config.read_text(encoding="utf-8") + "prune_interval = 1\n")
    with daemons(tmp_path) as start:
        daemon = start(config, database_url=database_url)
        daemon.wait_started()
        time.sleep(3)  # past the first prune (at min(60 s, prune_interval) after start)
        assert daemon.stop(timeout=30) == 0, daemon.log()
    with Store.open(database_url) as store:
        assert len(store.latest(limit=50)) == len(SEEDS)


def test_prune_prints_a_summary_and_a_reimport_names_what_it_did_not_restore(
    invoke: Invoke, config: Path, database_url: str
) -> None:
    config.write_text(config.read_text(encoding="utf-8") + "retention_days = 90\n")
    invoke("import", str(FIXTURES / "seeds"))
    assert "would prune 0 articles" in invoke("prune", "--dry-run")  # stored today
    _age(database_url, 100)

    dry = invoke("prune", "--dry-run", "--verbose")
    assert "zaobao: would prune 2, kept 0" in dry
    assert "voa: would prune 0, kept 1" in dry  # voa keeps 100 years
    assert "中俄防长视频通话" in dry  # --verbose lists the articles
    assert "would prune 4 articles" in dry
    with Store.open(database_url) as store:
        assert len(store.latest(limit=50)) == 5
    pruned = invoke("prune")
    assert "zaobao: pruned 2, kept 0" in pruned and "pruned 4 articles" in pruned
    assert "中俄防长视频通话" not in pruned  # the list only with --verbose
    with Store.open(database_url) as store:
        assert len(store.latest(limit=50)) == 1

    again = " ".join(invoke("import", str(FIXTURES / "seeds")).split())  # unwrapped
    assert "0 new" in again
    assert "4 not restored (pruned earlier; --restore brings them back)" in again
    restored = invoke("import", "--restore", str(FIXTURES / "seeds"))
    assert "4 new" in restored and "not restored" not in restored
    with Store.open(database_url) as store:
        assert len(store.latest(limit=50)) == 5


def test_opml_round_trip(invoke: Invoke, tmp_path: Path, config: Path) -> None:
    exported = tmp_path / "sources.opml"
    invoke("opml", "export", "--out", str(exported))
    outlines = etree.parse(str(exported)).findall(".//outline")
    assert [outline.get("xmlUrl") for outline in outlines][:1] == [
        "https://feedx.net/rss/zaobao.xml"
    ]
    other = tmp_path / "other.opml"
    other.write_text(
        '<?xml version="1.0"?><opml version="2.0"><head/><body>'
        '<outline text="Example" type="rss" xmlUrl="https://example.org/feed.xml"/>'
        '<outline text="Zaobao" type="rss" xmlUrl="https://feedx.net/rss/zaobao.xml"/>'
        "</body></opml>",
        encoding="utf-8",
    )
    toml = invoke("opml", "import", str(other))
    assert 'url = "https://example.org/feed.xml"' in toml
    assert "zaobao.xml" not in toml.split("new sources")[0]


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["run"],
        ["serve"],
        ["poll"],
        ["sources"],
        ["export"],
        ["import"],
        ["renormalize"],
        ["prune"],
        ["config"],
        ["db", "upgrade"],
        ["db", "current"],
        ["opml", "export"],
        ["opml", "import"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output
    assert len(result.output.splitlines()) > 3


def test_a_bad_log_level_is_a_usage_error_not_a_traceback(config: Path) -> None:
    result = CliRunner().invoke(app, ["--config", str(config), "--log-level", "LOUD", "sources"])
    assert result.exit_code == 2
    assert "'LOUD' is not one of" in result.output
    assert "Traceback" not in result.output and result.exception is not None
    assert isinstance(result.exception, SystemExit)


def test_bad_config_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("http_port = 'eighty'\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["--config", str(config), "sources"])
    assert result.exit_code == 2
    assert f"{config}:http_port:" in result.output.replace("\n", "")


def test_db_commands(invoke: Invoke) -> None:
    assert "up to date" in invoke("db", "upgrade")
    assert invoke("db", "current").strip()


def test_renormalize_reruns_adapters_over_stored_raw_entries(
    invoke: Invoke, database_url: str
) -> None:
    from aggregator.adapters import get_adapter
    from aggregator.parse import parse_feed
    from aggregator.types import Source

    source = Source("voa", "美国之音", "https://feedx.net/rss/mgzy1.xml", adapter="voa")
    feed = parse_feed((FIXTURES / "adapters" / "seeds-voa.xml").read_bytes(), url=source.url)
    fetched = datetime(2023, 7, 3, 11, tzinfo=UTC)
    entry = feed.entries[0]
    good = get_adapter("voa")(entry, source, fetched)
    stale = replace(
        good, body=good.body + "<p>获取更多RSS：https://feedx.net</p>"
    )  # an old adapter's output
    with Store.open(database_url) as store:
        store.save_poll(source, [(entry, stale)], store.get_state(source))
    output = invoke("renormalize", "--source", "voa")
    assert "voa: 1 updated" in output
    with Store.open(database_url) as store:
        (stored,) = store.latest(limit=5)
    assert stored.article.body == good.body
    assert "voa: 0 updated, 1 unchanged" in invoke("renormalize")


def test_renormalize_skips_an_entry_its_adapter_crashes_on_and_goes_on(
    invoke: Invoke, tmp_path: Path, database_url: str
) -> None:
    from aggregator.parse import parse_feed

    with (tmp_path / "sources.toml").open("a", encoding="utf-8") as sources:
        sources.write(FLAKY_SOURCE)
    flaky = Source("flaky", "Flaky", "https://flaky.example.org/feed.xml", adapter="generic")
    feed = parse_feed((FIXTURES / "adapters" / "seeds-voa.xml").read_bytes(), url=flaky.url)
    fetched = datetime(2023, 7, 3, 11, tzinfo=UTC)
    calm = feed.entries[0]
    boom = replace(calm, title="boom", link="https://flaky.example.org/boom", guid="boom")
    with Store.open(database_url) as store:
        pairs = [(entry, get_adapter("generic")(entry, flaky, fetched)) for entry in (calm, boom)]
        store.save_poll(flaky, pairs, store.get_state(flaky))

    output = invoke("renormalize")

    assert "flaky: 0 updated, 1 unchanged" in output
    assert "1 entries skipped" in output
