"""The database schema, and conversion between rows and the frozen pipeline types.

The tables are SQLAlchemy Core ``Table`` objects, which is all the store queries
through.  They were SQLModel ``table=True`` models until those were found to cost
the daemon a third of the store's import time and some 6 MB at rest for nothing
it used: a model class builds a pydantic model and an ORM mapper, and imports
``sqlalchemy.orm``, while rows never left this module as models anyway (they
skip validation, are mutable and have no id until flushed: fastapi/sqlmodel #52,
#453).  The DDL, nullability and defaults are the same as the models gave.
These functions are the one place where a row becomes an :class:`Article` and back.

Index notes: ``ix_articles_recent (sort_time, id)`` serves ``ORDER BY sort_time
DESC, id DESC LIMIT n`` as a backward index scan on both databases, so it needs no
``DESC`` columns (which alembic cannot compare reliably).  ``provenance`` repeats the
article's ``sort_time`` so the per-source "latest N" is an index range scan too,
whichever of its sources the article came through; it repeats ``updated`` as well
(``ix_provenance_source_updated``), so a per-source "last changed" is one index
seek.  Identity columns hold SHA-256 keys from :mod:`aggregator.dedupe`: a URL or
GUID longer than PostgreSQL's B-tree row limit (~2.7 kB) then still indexes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import DateTime, TypeDecorator

from aggregator.dedupe import link_key
from aggregator.types import Article, DateSource, RawEntry, SourceState, UrlState

__all__ = [
    "UTCDateTime",
    "article_values",
    "articles",
    "leases",
    "json_list",
    "meta",
    "metadata",
    "pages",
    "provenance",
    "raw_entries",
    "raw_json",
    "search_pending",
    "source_state",
    "state_values",
    "to_article",
    "to_state",
    "tombstones",
]

_fromisoformat = datetime.fromisoformat
KEY = String(64)  # a SHA-256 hex digest
ID = String(255)  # a configured source id


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out, on both databases.

    SQLite has no time zone type and hands back naive values; PostgreSQL returns
    ``timestamptz`` in the session's zone.  Normalising here keeps the rest of the
    store free of zone handling, and refusing naive input catches the bug early.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _utc(value)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, the stored text through :func:`_sqlite_text`: the generic path
        runs :meth:`process_bind_param` and then SQLAlchemy's ``%``-formatting of
        seven fields for every time of every row, a large part of storing a poll."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            return None if value is None else _sqlite_text(value)

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[Any], datetime | None] | None:
        """On SQLite, parse the stored text in one step: the generic path runs
        SQLAlchemy's regex parser and then :meth:`process_result_value`, which showed
        up as a large part of reading a page of articles."""
        generic = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite":
            return generic

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            try:
                # The stored text is naive UTC: parsed with its offset appended, the
                # value comes back aware at once (``timezone.utc`` itself), where a
                # ``replace(tzinfo=UTC)`` afterwards cost six times the parse.
                return _fromisoformat(value + "+00:00")
            except (TypeError, ValueError):
                pass  # not the stored form: an offset of its own, or not text
            try:
                moment = _fromisoformat(value)
            except (TypeError, ValueError):
                return generic(value) if generic is not None else value
            if moment.tzinfo is None:
                return moment.replace(tzinfo=UTC)
            return moment.astimezone(UTC)

        return process


# A poll's rows repeat a few times (the poll's clock, each entry's date in the article
# and its route), so most are formatted once.  Equal instants give equal text, whatever
# their zone; a naive time is refused (and errors are not cached).
@functools.lru_cache(maxsize=1024)
def _sqlite_text(moment: datetime) -> str:
    """What SQLAlchemy stores for ``moment`` on SQLite: naive UTC text,
    ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    return _utc(moment).isoformat(" ", "microseconds")[: -len("+00:00")]


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()!r} sent to the database")
    return moment.astimezone(UTC)


#: The columns are in the order the migrations left them (a column added by one
#: comes last), so a database created at the newest revision is the same as a
#: migrated one, down to ``SELECT *``.
metadata = MetaData()


def _column(name: str, type_: Any, *args: Any, null: bool = False, **kwargs: Any) -> Column[Any]:
    """A column, ``NOT NULL`` unless ``null``: most are required, and leaving the
    default to SQLAlchemy (nullable unless a primary key) would make them optional."""
    return Column(name, type_, *args, nullable=null, **kwargs)


def _id() -> Column[Any]:
    return Column("id", Integer, primary_key=True)


def _article_id(constraint: str, **kwargs: Any) -> Column[Any]:
    """The article a row belongs to; the row goes with it (``ON DELETE CASCADE``)."""
    fk = ForeignKey("articles.id", ondelete="CASCADE", name=constraint)
    return _column("article_id", Integer, fk, **kwargs)


articles = Table(
    "articles",
    metadata,
    _id(),
    _column("link", Text),
    _column("link_key", KEY),
    _column("title", Text),
    _column("body", Text),
    _column("published", UTCDateTime, null=True),
    _column("sort_time", UTCDateTime),  # published, else first fetched
    _column("fetched", UTCDateTime),  # first fetched; kept across updates
    _column("updated", UTCDateTime),  # last stored change, for Last-Modified
    _column("fingerprint", KEY),
    _column("hash_changes", Integer, default=0),
    _column("date_source", String(16)),
    _column("comments", Boolean, null=True),
    _column("tags", Text, default="[]"),  # JSON list
    _column("categories", Text, default="[]"),  # JSON list
    _column("source_id", ID),  # the primary source: the only one that may edit
    _column("source_name", Text),
    _column("guid", Text, null=True),
    # First stored in this database; kept across updates.  Retention counts from it,
    # never from ``published``: an imported archive is years old the day it arrives.
    _column("stored_at", UTCDateTime),
    _column("body_source", String(8), default="feed", server_default="feed"),
    UniqueConstraint("link_key", name="uq_articles_link_key"),
    Index("ix_articles_recent", "sort_time", "id"),
    Index("ix_articles_source_recent", "source_id", "sort_time", "id"),
    Index("ix_articles_updated", "updated"),
    Index("ix_articles_stored_at", "stored_at"),
)

#: One source an article came through.  ``guid_key`` hashes (source_id, guid), so
#: its uniqueness is the "one stored article per feed entry" rule.
provenance = Table(
    "provenance",
    metadata,
    _id(),
    _article_id("fk_provenance_article"),
    _column("source_id", ID),
    _column("source_name", Text),
    _column("link", Text),  # as this source gave it
    _column("link_key", KEY),
    _column("guid", Text, null=True),
    _column("guid_key", KEY, null=True),
    _column("first_seen", UTCDateTime),
    _column("sort_time", UTCDateTime),  # copy of articles.sort_time
    _column("updated", UTCDateTime),  # copy of articles.updated
    UniqueConstraint("article_id", "source_id", name="uq_provenance_article_source"),
    UniqueConstraint("guid_key", name="uq_provenance_guid_key"),
    Index("ix_provenance_source_recent", "source_id", "sort_time", "article_id"),
    Index("ix_provenance_link_key", "link_key"),
    Index("ix_provenance_source_updated", "source_id", "updated"),
)

#: The raw entry behind each route, for ``aggregator renormalize``.
raw_entries = Table(
    "raw_entries",
    metadata,
    _id(),
    _article_id("fk_raw_entries_article"),
    _column("source_id", ID),
    _column("raw", Text),  # RawEntry.to_dict() as JSON
    _column("fetched_at", UTCDateTime),
    UniqueConstraint("article_id", "source_id", name="uq_raw_entries_article_source"),
    Index("ix_raw_entries_source", "source_id", "id"),
)

#: :class:`SourceState`, one row per source ever polled.
source_state = Table(
    "source_state",
    metadata,
    _column("source_id", ID, primary_key=True),
    _column("url", Text),
    _column("etag", Text, null=True),
    _column("last_modified", Text, null=True),
    _column("last_attempt", UTCDateTime, null=True),
    _column("last_success", UTCDateTime, null=True),
    _column("consecutive_failures", Integer, default=0),
    _column("last_error_kind", Text, null=True),
    _column("last_error", Text, null=True),
    _column("next_poll", UTCDateTime, null=True),
    _column("disabled_reason", Text, null=True),
    _column("configured_url", Text, null=True),
    _column("failing_since", UTCDateTime, null=True),
    _column("url_states", Text, null=True),  # JSON list of UrlState
    Index("ix_source_state_next_poll", "next_poll"),
)

#: Facts about the database itself, fixed when it was made (see store/_meta.py).
meta = Table(
    "meta",
    metadata,
    _column("key", String(64), primary_key=True),
    _column("value", Text),
)

#: Which instance is polling a source, until when.
#:
#: Apart from ``source_state`` because a lease is taken by source id before the
#: source was ever polled (no state, not even a URL, exists yet), and because
#: saving state must never clobber a lease or the reverse.  A row without owner is
#: a free lease; rows are created on first claim so there is always a row to lock.
leases = Table(
    "leases",
    metadata,
    _column("source_id", ID, primary_key=True),
    _column("owner", Text, null=True),
    _column("expires", UTCDateTime, null=True),
)

#: An identity key of a pruned article, so a feed re-sending it cannot revive it.
tombstones = Table(
    "tombstones",
    metadata,
    _column("key", KEY, primary_key=True),
    _column("source_id", ID),
    _column("pruned_at", UTCDateTime),
)

#: An article stored but not yet in the search index (see ``store._search``).
search_pending = Table(
    "search_pending",
    metadata,
    _article_id("fk_search_pending_article", primary_key=True, autoincrement=False),
)

#: An article page fetched for a summary-only entry (full text).
#:
#: Kept so ``aggregator renormalize`` re-extracts without refetching, so a re-poll
#: reuses it, and for its validators (a refetch is a conditional GET).  ``failure``
#: set: the page failed for good (404, refused address, nothing to extract) and is
#: not fetched again.  ``entry_updated`` is the entry's own updated date when the
#: page was fetched: a newer one means the article changed, and the page is
#: fetched again.
pages = Table(
    "pages",
    metadata,
    _id(),
    _column("source_id", ID),
    _column("link_key", KEY),
    _column("url", Text),
    _column("html", Text, null=True),
    _column("main", Text, null=True),
    _column("etag", Text, null=True),
    _column("last_modified", Text, null=True),
    _column("entry_updated", Text, null=True),
    _column("failure", Text, null=True),
    _column("fetched_at", UTCDateTime),
    UniqueConstraint("source_id", "link_key", name="uq_pages_source_link"),
)


def article_values(article: Article, *, updated: datetime) -> dict[str, Any]:
    """Column values for ``article``; the caller guarantees ``fetched`` is set."""
    if article.fetched is None:
        raise ValueError(f"article {article.link!r} has no first-fetched time")
    return {
        "link": article.link,
        "link_key": link_key(article.link),
        "title": article.title,
        "body": article.body,
        "published": article.published,
        "sort_time": article.sort_time,
        "fetched": article.fetched,
        "updated": updated,
        "fingerprint": article.fingerprint,
        "date_source": article.date_source.value,
        "comments": article.comments,
        "tags": json_list(article.tags),
        "categories": json_list(article.categories),
        "source_id": article.source_id,
        "source_name": article.source_name,
        "guid": article.guid,
        "body_source": article.body_source,
    }


# One encoder for every row: ``json.dumps`` with an option builds a new one per call.
_to_json = json.JSONEncoder(ensure_ascii=False).encode


def json_list(items: tuple[str, ...]) -> str:
    return _to_json(items) if items else "[]"  # most articles have no tags


def raw_json(raw: RawEntry) -> str:
    """The stored form of a raw entry (read back by ``RawEntry.from_dict``)."""
    return _to_json(raw.to_dict())


def to_article(row: Mapping[Any, Any]) -> Article:
    return Article(
        source_id=row["source_id"],
        source_name=row["source_name"],
        title=row["title"],
        link=row["link"],
        body=row["body"],
        published=row["published"],
        fetched=row["fetched"],
        tags=_json_tuple(row["tags"]),
        categories=_json_tuple(row["categories"]),
        comments=row["comments"],
        guid=row["guid"],
        date_source=DateSource(row["date_source"]),
        body_source=row["body_source"],
    )


def _json_tuple(text: str) -> tuple[str, ...]:
    return () if text == "[]" else _decoded(text)  # most real articles have none


@functools.lru_cache(maxsize=1024)
def _decoded(text: str) -> tuple[str, ...]:
    """A stored tag or category list, decoded once: a source repeats a few lists
    (``["国际"]``) on every article, and a page of 100 decoded 200 of them (a tenth of
    reading the page, on the 1M-article benchmark database)."""
    return tuple(json.loads(text))


_STATE_FIELDS = tuple(name for name in SourceState.__dataclass_fields__ if name != "url_states")
_URL_FIELDS = tuple(UrlState.__dataclass_fields__)
_URL_TIMES = ("last_attempt", "last_success")


def state_values(state: SourceState) -> dict[str, Any]:
    values = {name: getattr(state, name) for name in _STATE_FIELDS}
    values["url_states"] = _urls_json(state.url_states) if state.url_states else None
    return values


def to_state(row: Mapping[Any, Any]) -> SourceState:
    urls = row["url_states"]
    return SourceState(
        **{name: row[name] for name in _STATE_FIELDS},
        url_states=_urls_from_json(urls) if urls else (),
    )


def _urls_json(records: tuple[UrlState, ...]) -> str:
    rows = []
    for record in records:
        row: dict[str, Any] = {name: getattr(record, name) for name in _URL_FIELDS}
        for name in _URL_TIMES:
            row[name] = row[name].isoformat() if row[name] is not None else None
        rows.append(row)
    return _to_json(rows)


def _urls_from_json(text: str) -> tuple[UrlState, ...]:
    records = []
    for row in json.loads(text):
        values = {name: row.get(name) for name in _URL_FIELDS}
        for name in _URL_TIMES:
            values[name] = _fromisoformat(values[name]) if values[name] else None
        records.append(UrlState(**values))
    return tuple(records)
