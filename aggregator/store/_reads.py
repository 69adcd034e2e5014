"""Reading articles back: the newest pages, change times, counts, raw entries.

Also the one way a stored article is assembled from its row and its provenance
(:func:`routes_of`, :func:`load`), which the writing and retention parts reuse.
May import :mod:`._base` and the schema; never writes.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    bindparam,
    case,
    cast,
    func,
    null,
    select,
    tuple_,
    union_all,
)

from aggregator.search import Query, document_text
from aggregator.store import _search
from aggregator.store._base import BATCH, StoreBase, at, chunks
from aggregator.store.tables import UTCDateTime, articles, provenance, raw_entries, to_article
from aggregator.types import Cursor, Provenance, RawEntry, ReadBound, StoredArticle

__all__ = ["ReadsMixin", "load", "routes_of"]

_RAW_PAGE = 500
# Rows a bounded read fetches at a time: a few bodies of up to ``body_chars`` each.
_BOUNDED_FETCH = 8


class ReadsMixin(StoreBase):
    def latest(
        self,
        *,
        sources: Sequence[str] | None = None,
        limit: int = 50,
        before: Cursor | None = None,
    ) -> list[StoredArticle]:
        """The newest ``limit`` articles (older than ``before``), newest first.

        With ``sources``, an article matches if it came through any of them.  Each
        source is one index range scan of at most ``limit`` rows; the table is never
        loaded.
        """
        if limit <= 0:
            return []
        p = provenance.c
        with self._errors("read latest articles", sources=sources), self._engine.connect() as conn:
            picked = set(sources or ())
            if sources is None or len(picked) == 1:
                # One index range scan, reading the article rows it reaches directly.
                query = _latest_query(per_source=sources is not None, paged=before is not None)
                values: dict[str, Any] = {"limit": limit}
                if sources is not None:
                    values["source"] = next(iter(picked))
                if before is not None:
                    values.update(before_time=before.sort_time, before_id=before.id)
                rows = conn.execute(query, values).mappings().all()
                # The page's routes by the same index walk rather than by a list of its
                # ids: binding a hundred ids cost more than the walk.
                shape = {"per_source": sources is not None, "paged": before is not None}
                routes = conn.execute(_latest_routes_query(**shape), values)
                primaries = {row["id"]: row["source_id"] for row in rows}
                return _stored(rows, _group_routes(routes, primaries))
            found = {
                row_id: moment
                for source in picked
                for moment, row_id in _newest(
                    conn, p.sort_time, p.article_id, before, limit, p.source_id == source
                )
            }
            newest = sorted(((moment, row_id) for row_id, moment in found.items()), reverse=True)
            return load(conn, [row_id for _, row_id in newest[:limit]])

    def feed_page(
        self,
        *,
        sources: Sequence[str] | None = None,
        limit: int = 50,
        before: Cursor | None = None,
        bound: ReadBound,
    ) -> tuple[list[StoredArticle], bool]:
        """At most ``limit`` of the newest articles, as :meth:`latest`, read within
        ``bound``; and whether older articles exist (a next page).

        The database cuts what a page cannot use: titles to ``bound.title_chars``, a
        body over ``bound.body_chars`` to its head (``StoredArticle.body_length`` then
        says how long it is).  Rows are fetched a few at a time and reading stops once
        the page's titles and bodies pass ``bound.page_chars``: 500 rows of 1 MB are
        never all in memory.  The same SQL on SQLite and PostgreSQL.
        """
        values = {
            "title_chars": bound.title_chars,
            "body_chars": bound.body_chars,
            "head_chars": bound.head_chars,
        }
        with self._errors("read a feed page", sources=sources), self._engine.connect() as conn:
            picked = set(sources or ())
            if sources is None or len(picked) == 1:
                shape = {"per_source": sources is not None, "paged": before is not None}
                params: dict[str, Any] = {"limit": limit + 1, **values}
                if sources is not None:
                    params["source"] = next(iter(picked))
                if before is not None:
                    params.update(before_time=before.sort_time, before_id=before.id)
                streamed = conn.execution_options(yield_per=_BOUNDED_FETCH).execute(
                    _latest_query(**shape, bounded=True), params
                )
                rows, more = _within(streamed.mappings(), bound.page_chars, limit)
                streamed.close()  # the rows past the bound are never fetched
                routes = conn.execute(_latest_routes_query(**shape), params)
                primaries = {row["id"]: row["source_id"] for row in rows}
                return _stored(rows, _group_routes(routes, primaries), bounded=True), more
            found = {
                row_id: moment
                for source in picked
                for moment, row_id in _newest(
                    conn,
                    provenance.c.sort_time,
                    provenance.c.article_id,
                    before,
                    limit + 1,
                    provenance.c.source_id == source,
                )
            }
            newest = sorted(((moment, row_id) for row_id, moment in found.items()), reverse=True)
            ids = [row_id for _, row_id in newest[: limit + 1]]
            ordered = itertools.chain.from_iterable(
                conn.execution_options(yield_per=_BOUNDED_FETCH)
                .execute(_BOUNDED_BY_IDS, {"ids": chunk, **values})
                .mappings()
                for chunk in chunks(ids, BATCH)
            )
            rows, more = _within(ordered, bound.page_chars, limit)
            grouped = routes_of(conn, {row["id"]: row["source_id"] for row in rows})
            return _stored(rows, grouped, bounded=True), more

    def search(
        self,
        query: Query,
        *,
        sources: Sequence[str] | None = None,
        limit: int = 50,
        before: Cursor | None = None,
    ) -> list[StoredArticle]:
        """The newest ``limit`` articles matching ``query`` (older than ``before``),
        newest first, as :meth:`latest` orders and filters them.

        The index proposes candidates, and every article still waiting for the
        index is one too; each is checked against its folded text, so the answer is
        exactly the articles that match.
        """
        if limit <= 0:
            return []
        found: list[StoredArticle] = []
        with self._errors("search", query=str(query)), self._engine.connect() as conn:
            ordered = _search.newest_matching(
                conn, query, sources=sources, before=before, limit=limit
            )
            for ids in ordered:
                for stored in load(conn, ids):
                    article = stored.article
                    if query.matches(document_text(article.title, article.body)):
                        found.append(stored)
                        if len(found) == limit:
                            return found
        return found

    def article(self, article_id: int) -> StoredArticle | None:
        """One article by its id (the page's ``/articles/ID``), ``None`` if not stored."""
        with self._errors("read an article", id=article_id), self._engine.connect() as conn:
            found = load(conn, [article_id])
        return found[0] if found else None

    def last_updated(self, sources: Sequence[str] | None = None) -> datetime | None:
        """When anything shown in a feed of ``sources`` (all when ``None``) last changed.

        One index seek per source: every provenance row carries its article's
        ``updated`` (``ix_provenance_source_updated``)."""
        if sources is None:
            query = select(func.max(articles.c.updated))
        else:
            picked = sorted(set(sources))
            if not picked:
                return None
            p = provenance.c
            newest = [
                select(func.max(p.updated).label("updated")).where(p.source_id == source)
                for source in picked
            ]
            if len(newest) == 1:
                query = newest[0]
            else:
                each = union_all(*newest).subquery()
                query = select(func.max(each.c.updated))
        with self._errors("read last update", sources=sources), self._engine.connect() as conn:
            value: datetime | None = conn.scalar(query)
        return value

    def article_counts(self) -> dict[str, int]:
        """Articles per source id, counting every source an article came through."""
        query = select(provenance.c.source_id, func.count()).group_by(provenance.c.source_id)
        with self._errors("count articles"), self._engine.connect() as conn:
            return dict(conn.execute(query).all())

    def iter_raw(
        self, source_ids: Sequence[str] | None = None
    ) -> Iterator[tuple[str, RawEntry, datetime]]:
        """Every stored raw entry as ``(source_id, entry, fetched_at)``.

        Read in keyset pages, each its own short transaction, so a long renormalize
        never pins a snapshot while it writes.
        """
        raw = raw_entries.c
        last = 0
        while True:
            query = select(raw.id, raw.source_id, raw.raw, raw.fetched_at).where(raw.id > last)
            if source_ids is not None:
                query = query.where(raw.source_id.in_(source_ids))
            with self._errors("read raw entries"), self._engine.connect() as conn:
                page = conn.execute(query.order_by(raw.id).limit(_RAW_PAGE)).all()
            for row_id, source_id, data, fetched_at in page:
                yield source_id, RawEntry.from_dict(json.loads(data)), fetched_at
                last = row_id
            if len(page) < _RAW_PAGE:
                return


def routes_of(conn: Connection, primaries: Mapping[int, str]) -> dict[int, tuple[Provenance, ...]]:
    """Each article's provenance, primary source first, then in order of arrival.

    ``primaries`` maps each article id to its primary source id."""
    rows = itertools.chain.from_iterable(
        conn.execute(_ROUTES_OF, {"ids": chunk}) for chunk in chunks(list(primaries), BATCH)
    )
    return _group_routes(rows, primaries)


def load(conn: Connection, ids: Sequence[int]) -> list[StoredArticle]:
    """The articles ``ids`` with their provenance, in the order given."""
    rows: dict[int, Any] = {}
    for chunk in chunks(ids, BATCH):
        query = select(*_READ_COLUMNS).where(articles.c.id.in_(chunk))
        rows.update((row["id"], row) for row in conn.execute(query).mappings())
    routes = routes_of(conn, {row_id: row["source_id"] for row_id, row in rows.items()})
    return _stored([rows[row_id] for row_id in ids if row_id in rows], routes)


def _newest(
    conn: Connection,
    sort_time: ColumnElement[datetime],
    id_: ColumnElement[int],
    before: Cursor | None,
    limit: int,
    *where: ColumnElement[bool],
) -> list[tuple[datetime, int]]:
    """``(sort_time, id)`` of the newest ``limit`` rows, read backwards along an index."""
    query = select(sort_time, id_).where(*where)
    if before is not None:
        query = query.where(tuple_(sort_time, id_) < tuple_(at(before.sort_time), before.id))
    query = query.order_by(sort_time.desc(), id_.desc()).limit(limit)
    return [(moment, row_id) for moment, row_id in conn.execute(query)]


def _within(rows: Iterable[Any], page_chars: int, limit: int) -> tuple[list[Any], bool]:
    """The leading ``rows`` (of ``limit + 1`` asked for) whose titles and bodies fit
    ``page_chars`` (one at least), and whether rows are left after them."""
    kept: list[Any] = []
    total = 0
    for row in rows:
        total += len(row["title"]) + len(row["body"])
        if len(kept) == limit or (kept and total > page_chars):
            return kept, True
        kept.append(row)
    return kept, False


#: What :func:`_stored` makes an article of: the columns kept for writes (link and
#: guid keys, fingerprint, change count, sort and store times) are neither fetched
#: nor converted: 0.3 ms of the 4 ms of a 100-article page read on a new connection.
_READ_COLUMNS = tuple(
    column
    for column in articles.c
    if column.name not in ("link_key", "fingerprint", "hash_changes", "sort_time", "stored_at")
)


def _bounded_columns() -> list[Any]:
    """The article columns with title and body cut in the database (see ``feed_page``)."""
    a = articles.c
    length = func.length(a.body)
    over = length > cast(bindparam("body_chars"), Integer)
    one = cast(1, Integer)
    head = func.substr(a.body, one, cast(bindparam("head_chars"), Integer))
    return [
        *(column for column in _READ_COLUMNS if column.name not in ("title", "body")),
        func.substr(a.title, one, cast(bindparam("title_chars"), Integer)).label("title"),
        case((over, head), else_=a.body).label("body"),
        case((over, length), else_=null()).label("body_length"),
    ]


_BOUNDED_BY_IDS = (
    select(*_bounded_columns())
    .where(articles.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(articles.c.sort_time.desc(), articles.c.id.desc())
)


@functools.cache
def _latest_query(
    *, per_source: bool, paged: bool, ids_only: bool = False, bounded: bool = False
) -> Any:
    """The newest articles (of one source, older than a cursor), built once per shape:
    building a statement costs a good part of serving a page.  ``bounded``: with the
    columns of ``feed_page``."""
    a = articles.c
    sort_time, id_ = a.sort_time, a.id
    if ids_only:
        query = select(id_)
    elif bounded:
        query = select(*_bounded_columns())
    else:
        query = select(*_READ_COLUMNS)
    if per_source:
        # An alias: the routes query uses this one as a subquery of ``provenance``.
        page = provenance.alias("page")
        sort_time, id_ = page.c.sort_time, page.c.article_id
        query = select(id_) if ids_only else query.join(page, id_ == a.id)
        query = query.where(page.c.source_id == bindparam("source"))
    if paged:
        cursor = tuple_(bindparam("before_time", type_=UTCDateTime()), bindparam("before_id"))
        query = query.where(tuple_(sort_time, id_) < cursor)
    return query.order_by(sort_time.desc(), id_.desc()).limit(bindparam("limit"))


@functools.cache
def _latest_routes_query(*, per_source: bool, paged: bool) -> Any:
    """The routes of the articles :func:`_latest_query` returns, with the same values."""
    page = _latest_query(per_source=per_source, paged=paged, ids_only=True)
    return _ROUTES.where(provenance.c.article_id.in_(page.scalar_subquery()))


_ROUTES = select(
    provenance.c.article_id,
    provenance.c.source_id,
    provenance.c.source_name,
    provenance.c.link,
    provenance.c.guid,
    provenance.c.first_seen,
)
_ROUTES_OF = _ROUTES.where(provenance.c.article_id.in_(bindparam("ids", expanding=True)))


def _group_routes(
    rows: Iterable[Any], primaries: Mapping[int, str]
) -> dict[int, tuple[Provenance, ...]]:
    """Route rows (``_ROUTES`` columns) per article of ``primaries``, in display order."""
    found: dict[int, list[tuple[Any, ...]]] = {id_: [] for id_ in primaries}
    for article_id, source_id, source_name, link, guid, first_seen in rows:
        if article_id in found:  # a row may join the page just as it is read
            order = (source_id != primaries[article_id], first_seen, source_id)
            route = Provenance(source_id, source_name, link, guid, first_seen)
            found[article_id].append((order, route))
    return {id_: tuple(route for _, route in sorted(routes)) for id_, routes in found.items()}


def _stored(
    rows: Sequence[Any], routes: Mapping[int, tuple[Provenance, ...]], *, bounded: bool = False
) -> list[StoredArticle]:
    """``bounded``: the rows have ``body_length`` (:func:`_bounded_columns`); asked by
    the caller, since a missing key is an exception raised inside the row's lookup."""
    return [
        StoredArticle(
            id=row["id"],
            article=to_article(row),
            provenance=routes[row["id"]],
            updated=row["updated"],
            body_length=row["body_length"] if bounded else None,
        )
        for row in rows
    ]
