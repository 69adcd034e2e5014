"""Pre-populated article databases (10k, 100k, 1M rows), built fast and cached.

Polling a million articles in through the pipeline would take an hour, so the rows
are written directly with SQLAlchemy Core ``executemany`` on the real tables of
:mod:`aggregator.store.tables`, after :meth:`Store.open` has migrated a fresh file
to the real schema (so every index and constraint is the one the daemon has, and
column types go through the same bind processors).  Titles, bodies and raw entries
come from a pool of corpus items run through the real parser and adapters, so a
row looks like one the pipeline stored; every row has its own canonical link,
link key and fingerprint, one provenance row (3% of the articles have a second
route through another source) and one raw entry.  1,000 "bulk" sources
(``b000``..``b999``); sort times run back from 2024-05-01, one article every 30 s.
The search index is filled as the store fills it (the same tokens and index
writes), each pool item tokenized once.

Databases are cached under ``bench/.cache/`` keyed by the schema (alembic head plus
a hash of the DDL), this generator's version and the corpus version, so a rerun
reuses them.  The growth benchmark polls ``g*`` sources into them and :func:`reset`
deletes those rows again afterwards (and before use, in case a run was interrupted).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.corpus import CORPUS_VERSION, feed_spec, render_feed

__all__ = ["DBGEN_VERSION", "ensure_db", "reset", "schema_key"]

DBGEN_VERSION = (
    "5"  # 3: the search index is filled; 4: as FTS5; 5: CJK pairs without single characters
)
BULK_SOURCES = 1000
_NEWEST = datetime(2024, 5, 1, tzinfo=UTC)
_CHUNK = 5000


def schema_key(cache: Path) -> str:
    """Alembic head + a hash of the migrated DDL + generator version."""
    from aggregator.store import Store

    probe = cache / "schema-probe.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{probe}{suffix}").unlink(missing_ok=True)
    # Migrated one revision at a time, not created at the newest one as a new
    # database now is: the same schema (tests/test_migrations.py), but SQLite keeps
    # each table's DDL as written, and the key of the databases already built is the
    # migrations' text.
    with Store.open(f"sqlite:///{probe}", migrate=False) as store:
        store.migrate_in_process()
        head = store.current_revision() or "none"
    with sqlite3.connect(probe) as conn:
        # Lines sorted, without their separating commas: SQLite's batch migrations
        # re-create a table with its constraints in set order, so both the order of
        # the lines and which one lacks the trailing comma vary between runs.
        ddl = "\n".join(
            sorted(
                line.strip().rstrip(",")
                for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")
                for line in sql.splitlines()
            )
        )
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{probe}{suffix}").unlink(missing_ok=True)
    digest = hashlib.sha256(ddl.encode()).hexdigest()[:10]
    return f"{head}-{digest}-g{DBGEN_VERSION}-c{CORPUS_VERSION}"


def _pool(size: int = 400) -> list[tuple[str, str, str, str]]:
    """``(kind, title, clean body, raw entry json)`` from the real parser and adapters."""
    from aggregator.adapters import get_adapter
    from aggregator.parse import parse_feed
    from aggregator.types import Source

    pool: list[tuple[str, str, str, str]] = []
    now = datetime(2024, 6, 1, tzinfo=UTC)
    index = 0
    while len(pool) < size:
        spec = feed_spec(f"p{index:04d}")
        index += 1
        url = f"http://bench.invalid{spec.path}"
        feed = parse_feed(render_feed(spec), url=url)
        source = Source(id=spec.id, name=spec.name, url=url, adapter=spec.kind)
        adapter = get_adapter(spec.kind)
        for entry in feed.entries:
            article = adapter(entry, source, now)
            raw = json.dumps(entry.to_dict(), ensure_ascii=False)
            pool.append((spec.kind, article.title, article.body, raw))
    return pool[:size]


def _link(kind: str, serial: int, when: datetime) -> str:
    if kind == "zaobao":
        return f"https://www.zaobao.com/realtime/china/story{when:%Y%m%d}-{serial}"
    if kind == "rfi":
        return f"https://www.rfi.fr/cn/%E4%B8%AD%E5%9B%BD/{when:%Y%m%d}-bulk-{serial}"
    if kind == "voa":
        return f"https://www.voachinese.com/a/bulk-story-{when:%Y%m%d}/{serial}.html"
    return f"https://www.rfa.org/mandarin/yataibaodao/zhengzhi/k{serial}-{when:%m%d%Y%H%M%S}.html"


_NAMES = {"zaobao": "联合早报", "rfi": "法广", "voa": "美国之音", "rfa": "自由亚洲电台"}


def _build(path: Path, count: int, log: Callable[[str], None]) -> None:
    from aggregator.dedupe import link_key
    from aggregator.search.text import indexed_tokens
    from aggregator.store import Store, _search
    from aggregator.store.tables import articles, provenance, raw_entries

    started = time.monotonic()
    pool = _pool()
    pool_tokens = [indexed_tokens(title, body) for _, title, body, _ in pool]
    store = Store.open(f"sqlite:///{path}")
    engine = store.engine
    rng = random.Random(f"dbgen-{DBGEN_VERSION}")
    with engine.connect() as conn:
        # Outside any transaction (the store's begin hook opens one on first execute).
        conn.connection.driver_connection.execute("PRAGMA cache_size=-1000000")  # type: ignore[union-attr]
        done = 0
        while done < count:
            rows_a, rows_p, rows_r = [], [], []
            postings: list[tuple[int, str]] = []
            for serial in range(done, min(count, done + _CHUNK)):
                kind, title, body, raw = pool[serial % len(pool)]
                source_no = rng.randrange(BULK_SOURCES)
                source_id = f"b{source_no:03d}"
                source_name = f"{_NAMES[kind]} b{source_no}"
                when = _NEWEST - timedelta(seconds=30 * serial + rng.randint(0, 29))
                fetched = when + timedelta(minutes=10)
                link = _link(kind, 50_000_000 + serial, when)
                key = link_key(link)
                digest = hashlib.sha256()
                for part in (title, link, body):
                    digest.update(part.encode("utf-8", "surrogatepass"))
                    digest.update(b"\x00")
                article_id = serial + 1
                postings.append((article_id, pool_tokens[serial % len(pool)]))
                tags = json.dumps([source_name], ensure_ascii=False)
                rows_a.append(
                    {
                        "id": article_id,
                        "link": link,
                        "link_key": key,
                        "title": title,
                        "body": body,
                        "published": when,
                        "sort_time": when,
                        "fetched": fetched,
                        "updated": fetched,
                        "stored_at": fetched,
                        "fingerprint": digest.hexdigest(),
                        "hash_changes": 0,
                        "date_source": "feed",
                        "comments": None,
                        "tags": tags,
                        "categories": tags,
                        "source_id": source_id,
                        "source_name": source_name,
                        "guid": None,
                    }
                )
                routes = [source_no]
                if rng.random() < 0.03:
                    routes.append((source_no + 1 + rng.randrange(BULK_SOURCES - 1)) % BULK_SOURCES)
                for number in routes:
                    rows_p.append(
                        {
                            "article_id": article_id,
                            "source_id": f"b{number:03d}",
                            "source_name": f"{_NAMES[kind]} b{number}",
                            "link": link,
                            "link_key": key,
                            "guid": None,
                            "guid_key": None,
                            "first_seen": fetched,
                            "updated": fetched,
                            "sort_time": when,
                        }
                    )
                    rows_r.append(
                        {
                            "article_id": article_id,
                            "source_id": f"b{number:03d}",
                            "raw": raw,
                            "fetched_at": fetched,
                        }
                    )
            with conn.begin():
                conn.execute(articles.insert(), rows_a)
                conn.execute(provenance.insert(), rows_p)
                conn.execute(raw_entries.insert(), rows_r)
                _search.add_tokens(conn, postings)
            done += len(rows_a)
            if done % 100_000 == 0:
                log(f"  {done:,} / {count:,} articles ({time.monotonic() - started:.0f} s)")
        driver = conn.connection.driver_connection
        driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
    store.close()
    log(f"  built {count:,} articles in {time.monotonic() - started:.0f} s")


def ensure_db(cache: Path, key: str, count: int, log: Callable[[str], None]) -> Path:
    """The cached database of ``count`` bulk articles for schema ``key``; built if missing."""
    path = cache / f"db-{key}-{count}.sqlite"
    if path.exists():
        reset(path)
        return path
    log(f"building the {count:,}-article database (cached for later runs) ...")
    tmp = path.with_name(path.name + ".tmp")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    _build(tmp, count, log)
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    os.replace(tmp, path)
    return path


def make_due(db: Path) -> None:
    """Setup between polls: every source due again (the daemon would wait interval)."""
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE source_state SET next_poll = NULL")
        conn.execute("UPDATE leases SET owner = NULL, expires = NULL")
    conn.close()


def reset(path: Path) -> None:
    """Delete everything the benchmark polled into a cached database (``g*``/``f*`` sources)."""
    from aggregator.search.text import indexed_tokens
    from aggregator.store._search import TABLE

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        # A contentless index forgets an article given the tokens it was indexed with.
        # Those still waiting for the index are not in it (their queue rows go with them).
        gone = (
            "SELECT id, title, body FROM articles WHERE source_id >= 'c' AND source_id < 'z' "
            "AND id NOT IN (SELECT article_id FROM search_pending)"
        )
        conn.executemany(
            f"INSERT INTO {TABLE} ({TABLE}, rowid, tokens) VALUES ('delete', ?, ?)",
            [(id_, indexed_tokens(title, body)) for id_, title, body in conn.execute(gone)],
        )
        for table in ("articles", "source_state", "leases", "tombstones"):
            conn.execute(f"DELETE FROM {table} WHERE source_id >= 'c' AND source_id < 'z'")
        # Routes the polled feeds added to bulk articles (none today; kept honest anyway).
        conn.execute("DELETE FROM provenance WHERE source_id >= 'c' AND source_id < 'z'")
        conn.execute("DELETE FROM raw_entries WHERE source_id >= 'c' AND source_id < 'z'")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
