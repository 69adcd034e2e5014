"""Identity and update decisions for a batch of articles.  Contains no I/O.

The store looks up everything a batch could touch *once* (records sharing a key,
tombstoned keys), hands it to :func:`decide`, and executes the returned intents.
Keeping the decision pure is what lets the rules below be property-tested without
a database (the anti-pattern is miniflux querying ``IsNewEntry`` mid-loop).

Identity rules:

* Two entries are the same article when they share a *key*: the same
  ``(source_id, guid)`` (a feed re-sending its entry) or the same canonical link
  (adapters canonicalise ``Article.link``; the same story through two feeds).
  Keys are SHA-256 hex digests so they index well on both databases whatever the
  length of a URL or GUID.
* The same article reaching us through another source keeps one stored copy and
  gains a :class:`~aggregator.types.Provenance` route (counted as ``merged``).
  Different links never merge, however similar the text: a false merge hides a
  story, a missed one only shows it twice.
* Only the *primary* source (the first to store the article) may rewrite its
  content.  Two feeds carrying one story usually format it differently; letting
  each overwrite the other would flip the article on every poll.
* A content update needs a different :attr:`~aggregator.types.Article.fingerprint`
  and keeps the first-fetched time.  Updates are capped at
  :data:`CONTENT_UPDATE_LIMIT` per article, like reader's ``HASH_CHANGED_LIMIT``
  (reader #225): a feed embedding a clock in its body would otherwise rewrite the
  article on every poll, forever.
* An article keeps the link it was first stored under; a feed moving its entry to
  a new URL updates the content, and the new URL becomes a key only through the
  route that brought it.  Keys then never disappear, which is what makes storing
  the same batch twice a no-op.
* A tombstoned key (the article was pruned) never comes back.

Every incoming entry ends up in exactly one intent, so the counts of a plan add
up to the size of the batch.

Imports from the package: ``types`` only (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import NamedTuple

from aggregator.types import Article, PollCounts, Provenance

__all__ = [
    "CONTENT_UPDATE_LIMIT",
    "AddProvenance",
    "Insert",
    "Intent",
    "Mode",
    "Plan",
    "Record",
    "Route",
    "Skip",
    "SkipReason",
    "Unchanged",
    "Update",
    "decide",
    "guid_key",
    "identity_keys",
    "link_key",
    "route_keys",
]

CONTENT_UPDATE_LIMIT = 24

_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


def _digest(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


# A poll asks for the keys of each of its entries several times (lookup, decision,
# insert, routes), and a re-sent entry's keys again at every poll: remember recent ones.
@functools.lru_cache(maxsize=4096)
def link_key(link: str) -> str | None:
    """The identity key of a canonical link; ``None`` for an empty link.

    An empty link identifies nothing: treating it as a key would merge every
    linkless article into one.
    """
    return _digest("link", link) if link else None


@functools.lru_cache(maxsize=4096)
def guid_key(source_id: str, guid: str | None) -> str | None:
    """The identity key of a feed entry id, which is only unique within its source."""
    return _digest("guid", source_id, guid) if guid else None


def route_keys(route: Provenance) -> tuple[str, ...]:
    """The keys a stored route answers to: its source's guid and the link it gave."""
    keys = (guid_key(route.source_id, route.guid), link_key(route.link))
    return tuple(key for key in keys if key is not None)


def identity_keys(article: Article) -> tuple[str, ...]:
    """Every key under which ``article`` may already be known (guid key first)."""
    keys = (guid_key(article.source_id, article.guid), link_key(article.link))
    return tuple(key for key in keys if key is not None)


class Mode(Enum):
    """Why a batch is being stored; each allows different rewrites."""

    POLL = "poll"  # a live poll: fingerprint-driven, capped content updates
    IMPORT = "import"  # a seed archive: older than anything live, so never overwrites
    RENORMALIZE = "renormalize"  # re-adapted raw entries: any field may be fixed, no cap


@dataclass(frozen=True)
class Record:
    """A stored article as dedupe needs it."""

    id: int
    article: Article
    provenance: tuple[Provenance, ...]
    hash_changes: int = 0

    @property
    def keys(self) -> tuple[str, ...]:
        """The article's link, and each route's guid and link.

        A route keeps the link its source gave even after the article's own link
        changed, so that source's entry still finds this article next time.
        """
        keys = [link_key(self.article.link)]
        keys += (key for route in self.provenance for key in route_keys(route))
        return tuple(key for key in keys if key is not None)


class Route(NamedTuple):
    """One source's way to an article; ``entry`` indexes the incoming batch, so the
    store can keep that entry's raw form next to the route."""

    entry: int
    provenance: Provenance


class SkipReason(StrEnum):
    DUPLICATE = "duplicate in batch"
    TOMBSTONED = "tombstoned"
    CONFLICT = "key owned by another article"
    NO_LINK = "no link"


@dataclass(frozen=True)
class Insert:
    """A new article; ``routes[0]`` is its primary source."""

    article: Article
    routes: tuple[Route, ...]


@dataclass(frozen=True)
class Update:
    id: int
    article: Article
    hash_changes: int
    entry: int


@dataclass(frozen=True)
class Unchanged:
    id: int
    entry: int


@dataclass(frozen=True)
class AddProvenance:
    id: int
    route: Route


@dataclass(frozen=True)
class Skip:
    entry: int
    reason: SkipReason


# Frozen dataclasses rather than NamedTuples: two intents of different kinds with equal
# fields must never compare equal.
Intent = Insert | Update | Unchanged | AddProvenance | Skip


@dataclass(frozen=True)
class Plan:
    """The intents for one batch, in a deterministic order (independent of input order)."""

    intents: tuple[Intent, ...]

    @property
    def counts(self) -> PollCounts:
        new = updated = unchanged = merged = skipped = tombstoned = 0
        for intent in self.intents:
            match intent:
                case Insert(routes=routes):
                    new += 1
                    merged += len(routes) - 1
                case Update():
                    updated += 1
                case Unchanged():
                    unchanged += 1
                case AddProvenance():
                    merged += 1
                case Skip(reason=reason):
                    skipped += 1
                    tombstoned += reason is SkipReason.TOMBSTONED
        return PollCounts(new, updated, unchanged, merged, skipped, tombstoned)


def _preference(article: Article) -> tuple[object, ...]:
    """A total order used wherever several candidates compete: earliest seen wins,
    then the rest breaks ties so that the input order never matters.

    Every field counts (title, link and body through the fingerprint), each as a
    value that is cheap to build: the key is made for every entry of every poll.
    """
    return (
        article.fetched or _EPOCH,
        article.source_id,
        article.published or _EPOCH,
        article.fingerprint,
        article.source_name,
        article.guid or "",
        article.tags,
        article.categories,
        -1 if article.comments is None else int(article.comments),
        article.date_source.value,
    )


class _Components:
    """Union-find over identity keys: everything sharing a key is one article."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, key: str) -> str:
        root = self._parent.setdefault(key, key)
        while root != self._parent[root]:
            root = self._parent[root]
        while key != root:  # path compression
            self._parent[key], key = root, self._parent[key]
        return root

    def union(self, keys: Sequence[str]) -> None:
        roots = sorted({self.find(key) for key in keys})
        for root in roots[1:]:
            self._parent[root] = roots[0]  # the smallest key is the root: deterministic


def decide(
    incoming: Sequence[Article],
    existing: Iterable[Record],
    tombstones: Collection[str],
    *,
    now: datetime,
    mode: Mode = Mode.POLL,
) -> Plan:
    """Decide what storing ``incoming`` means, given every record sharing a key with it.

    ``existing`` must include every stored record owning any of
    ``identity_keys(article)`` for the batch; ``tombstones`` the pruned keys among
    them.  ``now`` stands in for the first-fetched time of articles that carry none
    (bare archives), so ``sort_time`` and the store's cursor always agree.
    """
    records = list(existing)
    components = _Components()
    for record in records:
        components.union(record.keys)
    skips: list[Skip] = []
    linked: list[int] = []
    for index, article in enumerate(incoming):
        if not article.link:
            # Nothing to show a reader and no cross-feed identity: adapters reject these,
            # and the store relies on every article having a link key.
            skips.append(Skip(index, SkipReason.NO_LINK))
            continue
        components.union(identity_keys(article))
        linked.append(index)
    # Grouped only once every union is done: a later entry can join two components.
    members: dict[str, list[int]] = defaultdict(list)
    for index in linked:
        members[components.find(link_key(incoming[index].link) or "")].append(index)
    by_root: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        keys = record.keys
        if keys:
            by_root[components.find(keys[0])].append(record)
    owners = {key: record.id for record in records for key in record.keys}
    dead = set(tombstones)

    intents: list[Intent] = []
    # Components in order of their smallest key, so inserts (and their ids) come out in
    # an order that does not depend on the input order.
    for root in sorted(members):
        indexes = members[root]
        if any(key in dead for index in indexes for key in identity_keys(incoming[index])):
            intents.extend(Skip(index, SkipReason.TOMBSTONED) for index in sorted(indexes))
            continue
        chosen, duplicates = _choose(incoming, indexes)
        intents.extend(Skip(index, SkipReason.DUPLICATE) for index in duplicates)
        matched = {record.id: record for record in by_root.get(root, ())}
        if not matched:
            intents.append(_insert(incoming, chosen, now))
            continue
        for entry in chosen:
            intents.append(_merge(entry, incoming[entry], matched, owners, mode))
    intents.extend(skips)
    return Plan(tuple(intents))


def _choose(incoming: Sequence[Article], indexes: Sequence[int]) -> tuple[list[int], list[int]]:
    """The preferred entry of each source, best first, and the duplicates left over."""
    best: dict[str, int] = {}
    for index in indexes:
        source = incoming[index].source_id
        if source not in best or _preference(incoming[index]) < _preference(incoming[best[source]]):
            best[source] = index
    chosen = sorted(best.values(), key=lambda index: _preference(incoming[index]))
    return chosen, sorted(set(indexes) - set(chosen))


def _provenance(article: Article, first_seen: datetime) -> Provenance:
    return Provenance(
        source_id=article.source_id,
        source_name=article.source_name,
        link=article.link,
        guid=article.guid,
        first_seen=article.fetched or first_seen,
    )


def _insert(incoming: Sequence[Article], chosen: Sequence[int], now: datetime) -> Insert:
    routes = tuple(Route(entry, _provenance(incoming[entry], now)) for entry in chosen)
    primary = incoming[chosen[0]]
    if primary.fetched is None:
        primary = replace(primary, fetched=now)
    return Insert(primary, routes)


def _merge(
    entry: int,
    article: Article,
    matched: dict[int, Record],
    owners: dict[str, int],
    mode: Mode,
) -> Intent:
    """The intent for one source's entry of an article that is already stored.

    The entry belongs to the record owning its guid or link.  A component holding
    several records (entries bridging stored articles: a feed moved an entry onto
    another article's link) is ambiguous, and those records stay apart untouched.
    """
    guid_owner, link_owner = (
        owners.get(key) if key else None
        for key in (guid_key(article.source_id, article.guid), link_key(article.link))
    )
    owner = guid_owner or link_owner
    if owner is None and len(matched) == 1:
        owner = next(iter(matched))
    if owner is None or link_owner not in (None, owner):
        return Skip(entry, SkipReason.CONFLICT)
    target = matched[owner]
    stored = target.article
    assert stored.fetched is not None  # the store fills it in at insert time
    if article.source_id not in {route.source_id for route in target.provenance}:
        return AddProvenance(target.id, Route(entry, _provenance(article, stored.fetched)))
    if article.source_id == stored.source_id:
        # An article keeps the link it was first stored under: identity keys then only
        # ever grow, so storing a batch a second time finds every entry again.
        candidate = replace(article, link=stored.link, fetched=stored.fetched)
        update = _update(candidate, target, mode)
        if update is not None:
            return Update(target.id, update[0], update[1], entry)
    return Unchanged(target.id, entry)


def _update(candidate: Article, target: Record, mode: Mode) -> tuple[Article, int] | None:
    """The rewritten article and its new update count, or ``None`` to keep the record."""
    if mode is Mode.RENORMALIZE:
        # Renormalizing exists to fix fields the fingerprint ignores (dates, tags), and
        # it is our own doing, so it neither needs nor spends the update budget.
        return (candidate, target.hash_changes) if candidate != target.article else None
    if mode is Mode.IMPORT or candidate.fingerprint == target.article.fingerprint:
        return None
    if target.hash_changes >= CONTENT_UPDATE_LIMIT:
        return None
    return candidate, target.hash_changes + 1
