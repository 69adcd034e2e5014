"""The store, on SQLite and (with AGGREGATOR_TEST_DATABASE_URL) on PostgreSQL."""

from __future__ import annotations

import multiprocessing
import os
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from dbhelpers import ENV, postgres_database
from sqlalchemy import DateTime, create_engine, func, select, text
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from aggregator.errors import StorageError
from aggregator.store import Store
from aggregator.store._base import BATCH
from aggregator.store.tables import UTCDateTime, articles, provenance
from aggregator.types import (
    Article,
    Cursor,
    DateSource,
    PollCounts,
    RawEntry,
    Source,
    SourceState,
)

T0 = datetime(2024, 5, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=1)
HOUR = timedelta(hours=1)
A = Source("a", "Source A", "https://a.example/feed")
B = Source("b", "Source B", "https://b.example/feed")


def save_state(store: Store, state: SourceState) -> None:
    store.finish_polls([(state, None)])


def claim(
    store: Store, ids: list[str], *, now: datetime, owner: str, lease: timedelta, limit: int
) -> list[str]:
    """The ids ``claim_due_states`` leased to ``owner``, in claim order."""
    sources = [Source(id_, id_, f"https://{id_}.example/feed") for id_ in ids]
    claimed = store.claim_due_states(sources, now=now, owner=owner, lease=lease, limit=limit)
    return [state.source_id for state in claimed]


def article(
    n: int,
    source: Source = A,
    *,
    body: str = "Body",
    published: datetime | None = None,
    fetched: datetime | None = T0,
    guid: str | None = None,
    link: str | None = None,
) -> Article:
    return Article(
        source_id=source.id,
        source_name=source.name,
        title=f"Story {n}",
        link=link or f"https://news.example/{n}",
        body=body,
        published=published if published is not None else T0 + timedelta(minutes=n),
        fetched=fetched,
        guid=guid if guid is not None else f"{source.id}-{n}",
    )


def entries(*items: Article) -> list[tuple[RawEntry, Article]]:
    return [(RawEntry(guid=item.guid, link=item.link, title=item.title), item) for item in items]


def poll(store: Store, source: Source, *items: Article, now: datetime = NOW) -> PollCounts:
    return store.save_poll(source, entries(*items), SourceState(source.id, source.url), now=now)


def test_a_poll_stores_articles_raw_entries_and_state_together(store: Store) -> None:
    state = SourceState(A.id, A.url, etag='"v1"', last_success=NOW, next_poll=NOW)
    counts = store.save_poll(A, entries(article(1), article(2)), state, now=NOW)
    assert (counts.new, counts.unchanged) == (2, 0)
    assert store.get_state(A) == state
    assert [stored.article.title for stored in store.latest()] == ["Story 2", "Story 1"]
    assert sorted(raw.guid or "" for _, raw, _ in store.iter_raw()) == ["a-1", "a-2"]
    again = store.save_poll(A, entries(article(1), article(2)), state, now=NOW)
    assert (again.new, again.unchanged) == (0, 2)


@pytest.mark.parametrize("in_memory", [False, True])
def test_idle_connections_are_released_and_the_store_goes_on(
    tmp_path: Path, in_memory: bool
) -> None:
    """At rest the daemon closes the SQLite connections no thread uses (their caches
    were 4 MB); the next call opens one again.  An in-memory database is its
    connection, so it keeps it, and its articles."""
    url = "sqlite://" if in_memory else f"sqlite:///{tmp_path / 'db.sqlite'}"
    with Store.open(url) as store:
        store.save_poll(A, entries(article(1)), SourceState(A.id, A.url), now=NOW)
        pool = store.engine.pool
        store.release_idle()
        assert (store.engine.pool is pool) == in_memory  # a new pool, none of the old's
        assert [stored.article.title for stored in store.latest()] == ["Story 1"]


def test_a_poll_longer_than_a_statement_stores_and_finds_every_entry(store: Store) -> None:
    """Rows go BATCH to an INSERT, and every key of the poll to a lookup as one list."""
    items = [article(n) for n in range(2 * BATCH + 3)]
    assert poll(store, A, *items).new == len(items)
    assert poll(store, A, *items, now=NOW + HOUR).unchanged == len(items)
    assert store.article_counts() == {"a": len(items)}
    assert len(list(store.iter_raw())) == len(items)
    stored = {entry.article.link: entry.article for entry in store.latest(limit=len(items))}
    assert stored == {item.link: item for item in items}


def test_articles_read_back_equal_to_what_was_stored(store: Store) -> None:
    original = replace(
        article(1, published=T0 + timedelta(microseconds=1500)),
        tags=("politics", "Asia"),
        categories=("World",),
        comments=True,
        date_source=DateSource.URL,
        body="<p>引号 “quoted” 🙂</p>",
    )
    poll(store, A, original)
    (stored,) = store.latest()
    assert stored.article == original
    assert stored.updated == NOW
    assert stored.provenance[0].source_id == "a"
    assert stored.cursor.sort_time == original.published


def test_the_same_link_through_two_sources_is_stored_once_with_both(store: Store) -> None:
    poll(store, A, article(1, A))
    counts = poll(store, B, article(1, B, body="B's copy"), now=NOW + timedelta(hours=1))
    assert counts == replace(counts, new=0, merged=1)
    (stored,) = store.latest()
    assert [route.source_id for route in stored.provenance] == ["a", "b"]
    assert stored.article.body == "Body"
    assert store.article_counts() == {"a": 1, "b": 1}
    assert [s.id for s in store.latest(sources=["b"])] == [stored.id]
    assert store.last_updated(["b"]) == NOW + timedelta(hours=1)


def test_a_real_change_updates_in_place_and_keeps_first_fetched(store: Store) -> None:
    poll(store, A, article(1))
    later = NOW + timedelta(hours=2)
    edited = article(1, body="Corrected", fetched=T0 + timedelta(hours=5))
    counts = poll(store, A, edited, now=later)
    assert counts.updated == 1
    (stored,) = store.latest()
    assert (stored.article.body, stored.article.fetched, stored.updated) == ("Corrected", T0, later)
    assert store.last_updated() == later


def test_latest_pages_by_cursor_without_skipping_or_repeating(store: Store) -> None:
    same_time = [article(n, published=T0) for n in range(7)]
    poll(store, A, *same_time)
    poll(store, B, article(3, B), article(100, B, published=T0 + timedelta(days=1)))
    for sources, expected in ((None, 8), (["a"], 7), (["a", "b"], 8)):
        seen: list[Cursor] = []
        before = None
        while page := store.latest(sources=sources, limit=3, before=before):
            seen += [stored.cursor for stored in page]
            before = page[-1].cursor
        assert len(seen) == len(set(seen)) == expected
        assert seen == sorted(seen, reverse=True)


def test_import_twice_adds_nothing_and_dates_missing_fetch_times(store: Store) -> None:
    bare = [article(n, fetched=None) for n in range(3)]
    first = store.import_articles(bare, now=NOW)
    second = store.import_articles(bare, now=NOW + timedelta(days=1))
    assert (first.new, second.new, second.unchanged) == (3, 0, 3)
    assert {stored.article.fetched for stored in store.latest()} == {NOW}


def stored_at(store: Store) -> dict[str, datetime]:
    with store.engine.connect() as conn:
        return dict(conn.execute(select(articles.c.title, articles.c.stored_at)).all())


def test_stored_at_is_the_first_store_and_survives_updates_and_renormalize(store: Store) -> None:
    poll(store, A, article(1, published=T0 - timedelta(days=900)), now=NOW)
    later = NOW + timedelta(days=3)
    changed = article(1, body="Edited", published=T0 - timedelta(days=900))
    assert poll(store, A, changed, now=later).updated == 1
    poll(store, B, article(1, B), now=later)  # the same link through another source
    ((_, raw, _),) = store.iter_raw([A.id])
    store.replace_articles(A, [(raw, changed)], now=later + HOUR)
    store.import_articles([article(2, fetched=T0 - timedelta(days=2000))], now=later)
    assert stored_at(store) == {"Story 1": NOW, "Story 2": later}


def test_prune_counts_from_the_first_store_never_from_the_published_date(store: Store) -> None:
    ancient = T0 - timedelta(days=3650)  # an archive: published and fetched years ago
    store.import_articles([article(1, published=ancient, fetched=ancient)], now=NOW)
    poll(store, A, article(2, published=NOW), now=NOW - timedelta(days=40))
    poll(store, B, article(3, B, published=NOW), now=NOW - timedelta(days=40))
    keep = {"b": timedelta(days=60)}
    month = timedelta(days=30)

    would = store.prune(now=NOW, default_retention=month, per_source=keep, dry_run=True)

    assert [stored.article.title for stored in would.articles] == ["Story 2"]
    assert [tuple(summary) for summary in would.sources] == [
        ("a", 1, 1, ancient, ancient),
        ("b", 0, 1, NOW, NOW),
    ]
    assert len(store.latest()) == 3
    gone = store.prune(now=NOW, default_retention=month, per_source=keep)
    assert gone == would
    assert sorted(s.article.title for s in store.latest()) == ["Story 1", "Story 3"]
    assert sorted(raw.guid or "" for _, raw, _ in store.iter_raw()) == ["b-3"]
    again = poll(store, A, article(2, published=NOW))
    assert (again.skipped, again.tombstoned) == (1, 1)
    assert poll(store, B, article(2, B, guid="other")).tombstoned == 1
    assert store.prune(now=NOW, default_retention=None, per_source={}).sources == ()


def test_an_import_reports_pruned_articles_and_restores_them_on_request(store: Store) -> None:
    old = [article(n, fetched=T0) for n in range(3)]
    store.import_articles(old, now=T0)
    assert store.prune(now=NOW, default_retention=HOUR, per_source={}).pruned == 3

    held = store.import_articles(old, now=NOW)
    assert (held.new, held.tombstoned) == (0, 3)
    back = store.import_articles(old[:2], now=NOW, restore=True)
    assert (back.new, back.tombstoned) == (2, 0)
    assert stored_at(store) == {"Story 0": NOW, "Story 1": NOW}  # kept for a full period again
    assert store.import_articles(old, now=NOW).tombstoned == 1


def test_renormalize_rewrites_from_raw_entries(store: Store) -> None:
    poll(store, A, article(1), article(2))
    ((source_id, raw, fetched), *_) = store.iter_raw([A.id])
    assert (source_id, fetched) == ("a", T0)
    fixed = replace(article(1, published=T0 - timedelta(hours=8)), date_source=DateSource.URL)
    counts = store.replace_articles(A, [(raw, fixed)])
    assert counts.updated == 1
    assert fixed in [stored.article for stored in store.latest()]
    assert list(store.iter_raw(["nobody"])) == []


def test_state_defaults_and_round_trips(store: Store) -> None:
    assert store.get_state(A) == SourceState("a", A.url, configured_url=A.url)
    failed = SourceState(
        "a", A.url, consecutive_failures=3, last_error_kind="timeout", last_error="x"
    )
    save_state(store, failed)
    save_state(store, replace(failed, consecutive_failures=4))
    assert store.states() == [replace(failed, consecutive_failures=4)]


def test_a_source_whose_configured_url_changed_starts_afresh(store: Store) -> None:
    """Editing a source's URL must not leave it polling the old feed (the stored URL
    may be a redirect target) or disabled by the old feed's 410."""
    old = Source(id="s", name="S", url="https://old.example/feed")
    gone = replace(
        SourceState.fresh(old),
        url="https://old.example/moved",  # after a permanent redirect
        etag='"v1"',
        consecutive_failures=2,
        next_poll=NOW + timedelta(days=1),
        disabled_reason="HTTP 410",
    )
    unchanged = replace(SourceState.fresh(A), etag='"a"', next_poll=NOW)
    legacy = replace(SourceState.fresh(B), configured_url=None, etag='"b"')  # before 0003
    for state in (gone, unchanged, legacy):
        save_state(store, state)
    edited = replace(old, url="https://new.example/feed")

    replaced = store.sync_sources([edited, A, B])

    assert replaced == [(gone, edited)]
    assert store.get_state(edited) == SourceState.fresh(edited)
    assert store.get_state(A) == unchanged
    assert store.get_state(B) == replace(legacy, configured_url=B.url)  # adopted, kept
    assert claim(store, ["s"], now=NOW, owner="o", lease=timedelta(1), limit=1) == ["s"]
    assert store.sync_sources([edited, A, B]) == []


def test_claims_only_due_free_enabled_sources(store: Store) -> None:
    save_state(store, SourceState("later", "u", next_poll=NOW + timedelta(minutes=1)))
    save_state(store, SourceState("gone", "u", next_poll=T0, disabled_reason="HTTP 410"))
    save_state(store, SourceState("due", "u", next_poll=NOW))
    ids = ["later", "gone", "due", "never"]

    def claim_as(owner: str) -> list[str]:
        return claim(store, ids, now=NOW, owner=owner, lease=timedelta(minutes=5), limit=10)

    assert claim_as("one") == ["never", "due"]
    assert claim_as("two") == []
    store.release("due", "two")  # not the holder: no effect
    assert claim_as("two") == []
    store.release("due", "one")
    assert claim_as("two") == ["due"]


def test_an_expired_lease_can_be_claimed_again(store: Store) -> None:
    lease = timedelta(minutes=5)
    assert claim(store, ["s"], now=NOW, owner="crashed", lease=lease, limit=1) == ["s"]
    soon = NOW + lease - timedelta(seconds=1)
    assert claim(store, ["s"], now=soon, owner="other", lease=lease, limit=1) == []
    assert claim(store, ["s"], now=NOW + lease, owner="other", lease=lease, limit=1) == ["s"]


def test_renewing_extends_only_the_owners_leases_and_names_the_lost_ones(store: Store) -> None:
    lease = timedelta(minutes=5)
    assert claim(store, ["a", "b"], now=NOW, owner="me", lease=lease, limit=2) == ["a", "b"]
    # "b" ran out and another instance claimed it; "c" was never ours.
    assert claim(store, ["b"], now=NOW + lease, owner="other", lease=lease, limit=1) == ["b"]

    taken = store.renew(["a", "b", "c"], "me", until=NOW + 3 * lease)

    assert taken == {"b"}
    # "a" is held past its first lease; "b" stays the other owner's until its own ends.
    later = NOW + 2 * lease
    assert claim(store, ["a", "b"], now=later, owner="third", lease=lease, limit=2) == ["b"]
    assert claim(store, ["a"], now=NOW + 3 * lease, owner="third", lease=lease, limit=1) == ["a"]
    assert store.renew([], "me", until=NOW) == set()


def test_claim_limit_takes_the_most_overdue_first(store: Store) -> None:
    for n, source_id in enumerate(["c", "a", "b"]):
        save_state(store, SourceState(source_id, "u", next_poll=T0 + timedelta(minutes=n)))
    claimed = claim(store, ["a", "b", "c"], now=NOW, owner="o", lease=timedelta(1), limit=2)
    assert claimed == ["c", "a"]


def test_storage_failures_say_what_failed() -> None:
    with pytest.raises(StorageError, match="could not migrate") as caught:
        Store.open("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert "127.0.0.1:1" in str(caught.value)
    assert caught.value.__cause__ is not None


def test_sqlite_pragmas_are_applied(tmp_path: Path) -> None:
    names = ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
    with (
        Store.open(str(tmp_path / "nested" / "db.sqlite")) as opened,
        opened.engine.connect() as conn,
    ):
        pragmas = [conn.exec_driver_sql(f"PRAGMA {name}").scalar() for name in names]
    assert pragmas == ["wal", 1, 1, 30000]


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC),
        datetime(2024, 5, 1, tzinfo=UTC),  # no microseconds: still six digits
        datetime(2024, 5, 2, 1, 0, tzinfo=timezone(timedelta(hours=8))),  # converted to UTC
        datetime(1, 1, 1, 0, 0, 1, tzinfo=UTC),  # a four-digit year
    ],
)
def test_sqlite_stores_times_as_sqlalchemy_writes_them(moment: datetime) -> None:
    """The stored text of a time is SQLAlchemy's own (indexes and earlier rows compare
    with it), though it is written without SQLAlchemy's formatting."""
    dialect = sqlite_dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and theirs is not None
    assert ours(moment) == theirs(moment.astimezone(UTC))
    assert ours(None) is None
    with pytest.raises(ValueError, match="naive datetime"):
        ours(moment.replace(tzinfo=None))


# -- PostgreSQL concurrency ----------------------------------------------------------


def _save_after(url: str, barrier: object, items: list[Article]) -> tuple[int, int]:
    with Store.open(url, migrate=False) as opened:
        barrier.wait()  # type: ignore[attr-defined]
        counts = opened.save_poll(A, entries(*items), SourceState("a", A.url), now=NOW)
    return counts.new, counts.unchanged


@pytest.mark.slow
@pytest.mark.postgres
def test_two_processes_storing_the_same_articles_at_once_store_them_once() -> None:
    with postgres_database() as url, Store.open(url) as opened:
        context = multiprocessing.get_context("spawn")
        for round_ in range(3):
            items = [article(round_ * 100 + n) for n in range(25)]
            barrier = context.Manager().Barrier(2)
            with context.Pool(2) as pool:
                results = pool.starmap(_save_after, [(url, barrier, items)] * 2)
            assert sum(new for new, _ in results) == len(items)
            assert sum(new + same for new, same in results) == 2 * len(items)
        with opened.engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(articles)) == 75
            assert conn.scalar(select(func.count()).select_from(provenance)) == 75


@pytest.mark.postgres
def test_concurrent_claimers_never_share_a_source() -> None:
    with postgres_database() as url, Store.open(url) as opened:
        ids = [f"s{n:02}" for n in range(40)]
        barrier = threading.Barrier(6)
        claims: dict[str, list[str]] = {}

        def claim_as(owner: str) -> None:
            barrier.wait()
            claims[owner] = claim(
                opened, ids, now=NOW, owner=owner, lease=timedelta(minutes=5), limit=10
            )

        threads = [threading.Thread(target=claim_as, args=(f"o{n}",)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        everything = [source_id for claimed in claims.values() for source_id in claimed]
        assert len(everything) == len(set(everything))
        assert sorted(everything) == ids  # 6 x 10 slots for 40 sources: all get claimed


@pytest.mark.postgres
def test_a_dropped_connection_is_replaced_transparently() -> None:
    name = f"aggregator-test-{uuid.uuid4().hex[:8]}"
    with postgres_database(application_name=name) as url, Store.open(url) as opened:
        opened.ping()
        killer = create_engine(os.environ[ENV])
        with killer.begin() as admin:
            admin.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = :name"
                ),
                {"name": name},
            )
        killer.dispose()
        opened.ping()
        assert opened.latest() == []
