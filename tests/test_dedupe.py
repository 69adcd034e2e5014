"""Dedupe decisions, checked against a tiny in-memory store that executes intents."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.dedupe import (
    CONTENT_UPDATE_LIMIT,
    AddProvenance,
    Insert,
    Mode,
    Plan,
    Record,
    Skip,
    SkipReason,
    Unchanged,
    Update,
    decide,
    identity_keys,
)
from aggregator.types import Article, DateSource

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def article(
    link: str = "https://example.com/a",
    *,
    source: str = "a",
    guid: str | None = None,
    title: str = "Title",
    body: str = "Body",
    published: datetime | None = T0,
    fetched: datetime | None = T0,
) -> Article:
    return Article(
        source_id=source,
        source_name=source.upper(),
        title=title,
        link=link,
        body=body,
        published=published,
        fetched=fetched,
        guid=guid,
    )


class Memory:
    """Executes plans the way the store does, minus the database."""

    def __init__(self) -> None:
        self.records: dict[int, Record] = {}
        self.tombstones: set[str] = set()

    def save(self, batch: Sequence[Article], mode: Mode = Mode.POLL) -> Plan:
        plan = decide(batch, self.records.values(), self.tombstones, now=NOW, mode=mode)
        for intent in plan.intents:
            match intent:
                case Insert(article=new, routes=routes):
                    id_ = max(self.records, default=0) + 1
                    provenance = tuple(route.provenance for route in routes)
                    self.records[id_] = Record(id_, new, provenance)
                case Update(id=id_, article=new, hash_changes=changes):
                    old = self.records[id_]
                    self.records[id_] = Record(id_, new, old.provenance, changes)
                case AddProvenance(id=id_, route=route):
                    old = self.records[id_]
                    self.records[id_] = replace(old, provenance=(*old.provenance, route.provenance))
        return plan

    def prune(self, id_: int) -> None:
        self.tombstones.update(self.records.pop(id_).keys)

    def snapshot(self) -> set[tuple[Article, frozenset[object], int]]:
        """The stored set, independent of ids and route order."""
        return {
            (record.article, frozenset(record.provenance), record.hash_changes)
            for record in self.records.values()
        }


# Small pools so that collisions (same link, same guid, repeated entries) are common.
articles = st.builds(
    article,
    st.sampled_from([f"https://example.com/{n}" for n in range(4)]),
    source=st.sampled_from(["a", "b", "c"]),
    guid=st.sampled_from([None, "g1", "g2", "g3"]),
    title=st.sampled_from(["one", "two"]),
    body=st.sampled_from(["x", "y"]),
    published=st.sampled_from([None, T0, T0 + timedelta(hours=1)]),
    fetched=st.sampled_from([None, T0, T0 + timedelta(minutes=5)]),
)
batches = st.lists(articles, max_size=12)


@settings(max_examples=300)
@given(before=batches, batch=batches, data=st.data())
def test_order_of_a_batch_does_not_matter(
    before: list[Article], batch: list[Article], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(batch))
    first, second = Memory(), Memory()
    first.save(before)
    second.save(before)
    assert first.save(batch).counts == second.save(shuffled).counts
    assert first.snapshot() == second.snapshot()


@settings(max_examples=300)
@given(before=batches, batch=batches, mode=st.sampled_from(Mode))
def test_saving_a_batch_twice_changes_nothing_the_second_time(
    before: list[Article], batch: list[Article], mode: Mode
) -> None:
    memory = Memory()
    memory.save(before)
    memory.save(batch, mode)
    stored = memory.snapshot()
    again = memory.save(batch, mode)
    assert memory.snapshot() == stored
    assert not [i for i in again.intents if isinstance(i, Insert | Update | AddProvenance)]


@given(before=batches, batch=batches)
def test_every_entry_is_accounted_for_exactly_once(
    before: list[Article], batch: list[Article]
) -> None:
    memory = Memory()
    memory.save(before)
    plan = memory.save(batch)
    entries = []
    for intent in plan.intents:
        match intent:
            case Insert(routes=routes):
                entries += [route.entry for route in routes]
            case Update(entry=entry) | Unchanged(entry=entry) | Skip(entry=entry):
                entries.append(entry)
            case AddProvenance(route=route):
                entries.append(route.entry)
    assert sorted(entries) == list(range(len(batch)))
    counts = plan.counts
    assert counts.new + counts.updated + counts.unchanged + counts.merged + counts.skipped == len(
        batch
    )


@given(batch=st.lists(articles.map(lambda a: replace(a, guid=None)), max_size=12))
def test_different_links_are_never_merged(batch: list[Article]) -> None:
    memory = Memory()
    memory.save(batch)
    assert sorted(r.article.link for r in memory.records.values()) == sorted(
        {a.link for a in batch}
    )


def test_the_same_link_through_two_sources_is_one_article_with_both_routes() -> None:
    memory = Memory()
    memory.save([article(source="a", guid="1")])
    plan = memory.save([article(source="b", guid="x", body="formatted differently")])
    assert plan.counts.merged == 1
    (record,) = memory.records.values()
    assert [route.source_id for route in record.provenance] == ["a", "b"]
    assert record.article.body == "Body"  # only the primary source edits


def test_one_batch_carrying_two_sources_inserts_once_with_the_earliest_as_primary() -> None:
    late = article(source="a", fetched=T0 + timedelta(hours=1))
    early = article(source="b", fetched=T0)
    plan = Memory().save([late, early])
    assert (plan.counts.new, plan.counts.merged) == (1, 1)
    (insert,) = plan.intents
    assert isinstance(insert, Insert)
    assert insert.article == early
    assert [route.provenance.source_id for route in insert.routes] == ["b", "a"]


def test_a_guid_seen_again_under_a_new_link_keeps_the_first_link() -> None:
    memory = Memory()
    memory.save([article("https://example.com/old", guid="1")])
    moved = memory.save([article("https://example.com/new", guid="1")])
    edited = memory.save([article("https://example.com/new", guid="1", title="edited")])
    assert (moved.counts.unchanged, edited.counts.updated) == (1, 1)
    (record,) = memory.records.values()
    assert (record.article.link, record.article.title) == ("https://example.com/old", "edited")


def test_a_real_change_updates_and_keeps_the_first_fetched_time() -> None:
    memory = Memory()
    memory.save([article(guid="1")])
    plan = memory.save([article(guid="1", body="corrected", fetched=T0 + timedelta(hours=3))])
    assert plan.counts.updated == 1
    (record,) = memory.records.values()
    assert record.article.body == "corrected"
    assert (record.article.fetched, record.hash_changes) == (T0, 1)


def test_fields_outside_the_fingerprint_do_not_count_as_a_change() -> None:
    memory = Memory()
    memory.save([article(guid="1")])
    plan = memory.save([article(guid="1", published=T0 + timedelta(hours=8))])
    assert plan.counts.unchanged == 1
    assert next(iter(memory.records.values())).article.published == T0


def test_content_updates_stop_at_the_limit() -> None:
    memory = Memory()
    memory.save([article(guid="1")])
    bodies = [f"clock {n}" for n in range(30)]
    updates = [memory.save([article(guid="1", body=body)]).counts.updated for body in bodies]
    assert sum(updates) == CONTENT_UPDATE_LIMIT
    (record,) = memory.records.values()
    assert record.hash_changes == CONTENT_UPDATE_LIMIT
    assert record.article.body == f"clock {CONTENT_UPDATE_LIMIT - 1}"


def test_renormalize_fixes_any_field_without_spending_the_budget() -> None:
    memory = Memory()
    memory.save([article(guid="1")])
    earlier = article(guid="1", published=T0 - timedelta(hours=8))
    fixed = replace(earlier, date_source=DateSource.URL)
    plan = memory.save([fixed], Mode.RENORMALIZE)
    assert plan.counts.updated == 1
    (record,) = memory.records.values()
    assert record.article == fixed
    assert record.hash_changes == 0


def test_import_never_overwrites() -> None:
    memory = Memory()
    memory.save([article(guid="1", body="live")])
    plan = memory.save([article(guid="1", body="archived")], Mode.IMPORT)
    assert plan.counts.unchanged == 1
    assert next(iter(memory.records.values())).article.body == "live"


def test_a_tombstoned_article_never_comes_back_by_link_or_by_guid() -> None:
    memory = Memory()
    memory.save([article("https://example.com/a", guid="1")])
    memory.prune(1)
    by_link = article("https://example.com/a", source="b")
    by_guid = article("https://example.com/moved", guid="1")
    plan = memory.save([by_link, by_guid])
    assert [i.reason for i in plan.intents if isinstance(i, Skip)] == [SkipReason.TOMBSTONED] * 2
    assert memory.records == {}


def test_duplicates_in_one_feed_collapse_to_the_same_winner_in_any_order() -> None:
    one = article(guid="1", title="first version")
    two = article(guid="1", title="second version", published=T0 + timedelta(minutes=1))
    plans = [Memory().save(batch) for batch in ([one, two], [two, one])]
    assert [plan.counts.new for plan in plans] == [1, 1]
    assert [plan.counts.skipped for plan in plans] == [1, 1]
    winners = [i.article for plan in plans for i in plan.intents if isinstance(i, Insert)]
    assert winners == [one, one]


def test_a_link_taken_by_another_article_is_a_conflict_not_a_merge() -> None:
    memory = Memory()
    memory.save([article("https://example.com/a", guid="1"), article("https://example.com/b")])
    plan = memory.save([article("https://example.com/b", guid="1", body="moved")])
    assert [i for i in plan.intents if isinstance(i, Skip)] == [Skip(0, SkipReason.CONFLICT)]
    assert sorted(r.article.link for r in memory.records.values()) == [
        "https://example.com/a",
        "https://example.com/b",
    ]


def test_an_article_without_first_fetched_time_gets_the_batch_time() -> None:
    plan = Memory().save([article(fetched=None, published=None)])
    (insert,) = plan.intents
    assert isinstance(insert, Insert)
    assert insert.article.fetched == NOW
    assert insert.routes[0].provenance.first_seen == NOW


def test_linkless_articles_are_skipped() -> None:
    plan = Memory().save([article("", guid="1"), article("", guid="2")])
    assert plan.counts.skipped == 2


@pytest.mark.parametrize(
    ("guid", "expected"),
    [(None, 1), ("entry-1", 2)],
)
def test_identity_keys(guid: str | None, expected: int) -> None:
    keys = identity_keys(article(guid=guid))
    assert len(keys) == len(set(keys)) == expected
    assert identity_keys(article(guid=guid, source="other"))[-1] == keys[-1]  # links are global
