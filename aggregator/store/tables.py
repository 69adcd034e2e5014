"""The database schema, and conversion between rows and the frozen pipeline types.

The only module that imports sqlmodel.  Table models describe storage rows; they
are never handed to the rest of the pipeline, because ``table=True`` models skip
validation, are mutable and have no id until flushed (fastapi/sqlmodel #52, #453).
The store queries through SQLAlchemy Core on the tables defined here, and these
functions are the one place where a row becomes an :class:`Article` and back.

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
from sqlmodel import Field, SQLModel

from aggregator.dedupe import link_key
from aggregator.types import Article, DateSource, RawEntry, SourceState, UrlState

__all__ = [
    "ArticleRow",
    "LeaseRow",
    "MetaRow",
    "PageRow",
    "ProvenanceRow",
    "RawEntryRow",
    "SearchPendingRow",
    "SourceStateRow",
    "TombstoneRow",
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


class ArticleRow(SQLModel, table=True):
    __tablename__ = "articles"
    __table_args__ = (
        UniqueConstraint("link_key", name="uq_articles_link_key"),
        Index("ix_articles_recent", "sort_time", "id"),
        Index("ix_articles_source_recent", "source_id", "sort_time", "id"),
        Index("ix_articles_updated", "updated"),
        Index("ix_articles_stored_at", "stored_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    link: str = Field(sa_type=Text)
    link_key: str = Field(sa_type=KEY)
    title: str = Field(sa_type=Text)
    body: str = Field(sa_type=Text)
    published: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sort_time: datetime = Field(sa_type=UTCDateTime)  # published, else first fetched
    fetched: datetime = Field(sa_type=UTCDateTime)  # first fetched; kept across updates
    updated: datetime = Field(sa_type=UTCDateTime)  # last stored change, for Last-Modified
    # First stored in this database; kept across updates.  Retention counts from it,
    # never from ``published``: an imported archive is years old the day it arrives.
    stored_at: datetime = Field(sa_type=UTCDateTime)
    fingerprint: str = Field(sa_type=KEY)
    hash_changes: int = Field(default=0, sa_type=Integer)
    date_source: str = Field(sa_type=String(16))
    comments: bool | None = None
    tags: str = Field(default="[]", sa_type=Text)  # JSON list
    categories: str = Field(default="[]", sa_type=Text)  # JSON list
    source_id: str = Field(sa_type=ID)  # the primary source: the only one that may edit
    source_name: str = Field(sa_type=Text)
    guid: str | None = Field(default=None, sa_type=Text)
    body_source: str = Field(
        default="feed", sa_type=String(8), sa_column_kwargs={"server_default": "feed"}
    )


class ProvenanceRow(SQLModel, table=True):
    """One source an article came through.  ``guid_key`` hashes (source_id, guid), so
    its uniqueness is the "one stored article per feed entry" rule."""

    __tablename__ = "provenance"
    __table_args__ = (
        UniqueConstraint("article_id", "source_id", name="uq_provenance_article_source"),
        UniqueConstraint("guid_key", name="uq_provenance_guid_key"),
        Index("ix_provenance_source_recent", "source_id", "sort_time", "article_id"),
        Index("ix_provenance_link_key", "link_key"),
        Index("ix_provenance_source_updated", "source_id", "updated"),
    )

    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(
        sa_type=Integer,
        sa_column_args=[
            ForeignKey("articles.id", ondelete="CASCADE", name="fk_provenance_article")
        ],
    )
    source_id: str = Field(sa_type=ID)
    source_name: str = Field(sa_type=Text)
    link: str = Field(sa_type=Text)  # as this source gave it
    link_key: str = Field(sa_type=KEY)
    guid: str | None = Field(default=None, sa_type=Text)
    guid_key: str | None = Field(default=None, sa_type=KEY)
    first_seen: datetime = Field(sa_type=UTCDateTime)
    sort_time: datetime = Field(sa_type=UTCDateTime)  # copy of articles.sort_time
    updated: datetime = Field(sa_type=UTCDateTime)  # copy of articles.updated


class RawEntryRow(SQLModel, table=True):
    """The raw entry behind each route, for ``aggregator renormalize``."""

    __tablename__ = "raw_entries"
    __table_args__ = (
        UniqueConstraint("article_id", "source_id", name="uq_raw_entries_article_source"),
        Index("ix_raw_entries_source", "source_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(
        sa_type=Integer,
        sa_column_args=[
            ForeignKey("articles.id", ondelete="CASCADE", name="fk_raw_entries_article")
        ],
    )
    source_id: str = Field(sa_type=ID)
    raw: str = Field(sa_type=Text)  # RawEntry.to_dict() as JSON
    fetched_at: datetime = Field(sa_type=UTCDateTime)


class SourceStateRow(SQLModel, table=True):
    """:class:`SourceState`, one row per source ever polled."""

    __tablename__ = "source_state"
    __table_args__ = (Index("ix_source_state_next_poll", "next_poll"),)

    source_id: str = Field(sa_type=ID, primary_key=True)
    url: str = Field(sa_type=Text)
    etag: str | None = Field(default=None, sa_type=Text)
    last_modified: str | None = Field(default=None, sa_type=Text)
    last_attempt: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_success: datetime | None = Field(default=None, sa_type=UTCDateTime)
    consecutive_failures: int = Field(default=0, sa_type=Integer)
    last_error_kind: str | None = Field(default=None, sa_type=Text)
    last_error: str | None = Field(default=None, sa_type=Text)
    next_poll: datetime | None = Field(default=None, sa_type=UTCDateTime)
    disabled_reason: str | None = Field(default=None, sa_type=Text)
    configured_url: str | None = Field(default=None, sa_type=Text)
    failing_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    url_states: str | None = Field(default=None, sa_type=Text)  # JSON list of UrlState


class MetaRow(SQLModel, table=True):
    """Facts about the database itself, fixed when it was made (see store/_meta.py)."""

    __tablename__ = "meta"

    key: str = Field(sa_type=String(64), primary_key=True)
    value: str = Field(sa_type=Text)


class LeaseRow(SQLModel, table=True):
    """Which instance is polling a source, until when.

    Apart from ``source_state`` because a lease is taken by source id before the
    source was ever polled (no state, not even a URL, exists yet), and because
    saving state must never clobber a lease or the reverse.  A row without owner is
    a free lease; rows are created on first claim so there is always a row to lock.
    """

    __tablename__ = "leases"

    source_id: str = Field(sa_type=ID, primary_key=True)
    owner: str | None = Field(default=None, sa_type=Text)
    expires: datetime | None = Field(default=None, sa_type=UTCDateTime)


class TombstoneRow(SQLModel, table=True):
    """An identity key of a pruned article, so a feed re-sending it cannot revive it."""

    __tablename__ = "tombstones"

    key: str = Field(sa_type=KEY, primary_key=True)
    source_id: str = Field(sa_type=ID)
    pruned_at: datetime = Field(sa_type=UTCDateTime)


class SearchPendingRow(SQLModel, table=True):
    """An article stored but not yet in the search index (see ``store._search``)."""

    __tablename__ = "search_pending"

    article_id: int = Field(
        sa_type=Integer,
        primary_key=True,
        sa_column_args=[
            ForeignKey("articles.id", ondelete="CASCADE", name="fk_search_pending_article")
        ],
        sa_column_kwargs={"autoincrement": False},
    )


class PageRow(SQLModel, table=True):
    """An article page fetched for a summary-only entry (full text).

    Kept so ``aggregator renormalize`` re-extracts without refetching, so a re-poll
    reuses it, and for its validators (a refetch is a conditional GET).  ``failure``
    set: the page failed for good (404, refused address, nothing to extract) and is
    not fetched again.  ``entry_updated`` is the entry's own updated date when the
    page was fetched: a newer one means the article changed, and the page is
    fetched again.
    """

    __tablename__ = "pages"
    __table_args__ = (UniqueConstraint("source_id", "link_key", name="uq_pages_source_link"),)

    id: int | None = Field(default=None, primary_key=True)
    source_id: str = Field(sa_type=ID)
    link_key: str = Field(sa_type=KEY)
    url: str = Field(sa_type=Text)
    html: str | None = Field(default=None, sa_type=Text)
    main: str | None = Field(default=None, sa_type=Text)
    etag: str | None = Field(default=None, sa_type=Text)
    last_modified: str | None = Field(default=None, sa_type=Text)
    entry_updated: str | None = Field(default=None, sa_type=Text)
    failure: str | None = Field(default=None, sa_type=Text)
    fetched_at: datetime = Field(sa_type=UTCDateTime)


metadata: MetaData = SQLModel.metadata
articles: Table = metadata.tables["articles"]
provenance: Table = metadata.tables["provenance"]
raw_entries: Table = metadata.tables["raw_entries"]
source_state: Table = metadata.tables["source_state"]
leases: Table = metadata.tables["leases"]
tombstones: Table = metadata.tables["tombstones"]
meta: Table = metadata.tables["meta"]
pages: Table = metadata.tables["pages"]
search_pending: Table = metadata.tables["search_pending"]


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
    return () if text == "[]" else tuple(json.loads(text))  # most articles have none


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
