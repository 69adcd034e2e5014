"""The search index: postings of tokens per block of article ids, on both databases.

One row per ``(token, block)`` whose ``bits`` say which of the block's 63 articles
(ids ``block * 63`` to ``block * 63 + 62``) contain the token; 63 so the bits fit a
signed 64-bit integer on both databases.  A token common to many articles then costs
one row per 63 of them instead of one each, which keeps the index under the size of
the articles it indexes, and a query reads a common token's postings as a few
thousand rows, not hundreds of thousands.

Writes are plain ``INSERT ... ON CONFLICT DO UPDATE SET bits = bits | new`` and
``UPDATE ... SET bits = bits & keep``: the same SQL on SQLite and PostgreSQL, atomic
per row, so concurrent writers setting different bits of one row never lose one.
Rows are written in key order, so two writers' row locks never deadlock.

The index only proposes candidates: :class:`aggregator.store.Store.search` verifies
each against the article's text, so a row that is briefly stale can cost a wasted
check but never a wrong result.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select, tuple_

from aggregator.search import Query, Term, document_text, tokens
from aggregator.store.tables import UTCDateTime, articles, provenance, search_postings
from aggregator.types import Article, Cursor

__all__ = [
    "BLOCK",
    "add_tokens",
    "candidates",
    "index",
    "newest_first",
    "rebuild",
    "reindex",
    "unindex",
]

BLOCK = 63
_ALL = (1 << BLOCK) - 1
_BATCH = 500
# Reading one candidate's position by id costs about as much as walking this many
# rows of the newest-first index (measured on SQLite); see newest_first.
_LOOKUP_COST = 4
_WALK_PAGE_MAX = 5000

Blocks = dict[int, int]  # block -> bits: a set of article ids


def _tokens(article: Article) -> list[str]:
    return article.search_tokens.split("\n") if article.search_tokens else []


def _postings(docs: Iterable[tuple[int, Iterable[str]]]) -> list[tuple[str, int, int]]:
    """``(token, block, bits)`` rows in key order: two writers' row locks never
    deadlock, and SQLite fills its pages instead of splitting them half empty.
    Merged per block first, as one poll's articles mostly share one."""
    blocks: dict[int, dict[str, int]] = {}
    for article_id, found in docs:
        block, bit = divmod(article_id, BLOCK)
        mask = 1 << bit
        merged = blocks.setdefault(block, {})
        get = merged.get
        for token in found:
            merged[token] = get(token, 0) | mask
    rows = [
        (token, block, bits) for block, merged in blocks.items() for token, bits in merged.items()
    ]
    rows.sort()
    return rows


# The writes run through the driver's executemany with plain tuples: a poll writes a
# few hundred rows per article, and SQLAlchemy's per-row parameter handling cost
# several times what the database spends on them.  Plain SQL, the same on both.
_UPSERT = (
    "INSERT INTO search_postings (token, block, bits) VALUES ({0}, {0}, {0}) "
    "ON CONFLICT (token, block) DO UPDATE SET bits = search_postings.bits | excluded.bits"
)
_CLEAR = "UPDATE search_postings SET bits = bits & {0} WHERE token = {0} AND block = {0}"
_DROP_EMPTY = "DELETE FROM search_postings WHERE token = {0} AND block = {0} AND bits = 0"
_READ = select(search_postings.c.block, search_postings.c.bits).where(
    search_postings.c.token == bindparam("t")
)


def _run(conn: Connection, statement: str, rows: list[tuple[Any, ...]]) -> None:
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(statement.format(marker), rows)


def add_tokens(conn: Connection, docs: Iterable[tuple[int, Iterable[str]]]) -> None:
    """Set the postings of ``(article id, tokens)`` pairs: the write behind
    :func:`index`, also for bulk loaders that tokenize each distinct text once."""
    if rows := _postings(docs):
        _run(conn, _UPSERT, rows)


def _remove(conn: Connection, docs: Iterable[tuple[int, Iterable[str]]]) -> None:
    if rows := _postings(docs):
        _run(conn, _CLEAR, [(_ALL ^ bits, token, block) for token, block, bits in rows])
        _run(conn, _DROP_EMPTY, [(token, block) for token, block, _ in rows])


def index(conn: Connection, added: Mapping[int, Article]) -> None:
    """Index articles just inserted."""
    add_tokens(conn, ((id_, _tokens(article)) for id_, article in added.items()))


def unindex(conn: Connection, gone: Mapping[int, Article]) -> None:
    """Clear the bits of articles about to be deleted (their ids may be reused)."""
    _remove(conn, ((id_, _tokens(article)) for id_, article in gone.items()))


def reindex(conn: Connection, changed: Iterable[tuple[int, Article, Article]]) -> None:
    """Follow ``(id, old, new)`` rewrites: set the new tokens, clear the dropped ones."""
    added: list[tuple[int, set[str]]] = []
    dropped: list[tuple[int, set[str]]] = []
    for id_, old, new in changed:
        if (old.title, old.body) == (new.title, new.body):
            continue
        before, after = set(_tokens(old)), set(_tokens(new))
        added.append((id_, after - before))
        dropped.append((id_, before - after))
    add_tokens(conn, added)
    _remove(conn, dropped)


def rebuild(conn: Connection) -> int:
    """Index every stored article from scratch (the migration that adds the index);
    read in keyset pages so memory stays flat.  Returns the number indexed."""
    conn.execute(delete(search_postings))
    a = articles.c
    last, count = 0, 0
    while True:
        page = conn.execute(
            select(a.id, a.title, a.body).where(a.id > last).order_by(a.id).limit(_BATCH)
        ).all()
        add_tokens(conn, ((id_, tokens(document_text(title, body))) for id_, title, body in page))
        count += len(page)
        if len(page) < _BATCH:
            return count
        last = page[-1][0]


# -- querying -------------------------------------------------------------------------


def _intersect(left: Blocks, right: Blocks) -> Blocks:
    if len(right) < len(left):
        left, right = right, left
    both = ((block, bits & right.get(block, 0)) for block, bits in left.items())
    return {block: bits for block, bits in both if bits}


def _union(left: Blocks, right: Blocks) -> Blocks:
    merged = dict(left)
    for block, bits in right.items():
        merged[block] = merged.get(block, 0) | bits
    return merged


def candidates(conn: Connection, query: Query) -> Blocks:
    """Every article that has all tokens of some term of each clause."""
    read: dict[str, Blocks] = {}

    def postings(token: str) -> Blocks:
        if token not in read:
            read[token] = dict(conn.execute(_READ, {"t": token}).all())
        return read[token]

    def term(item: Term) -> Blocks:
        found: Blocks | None = None
        for token in sorted(item.tokens):
            found = postings(token) if found is None else _intersect(found, postings(token))
            if not found:
                return {}
        return found or {}

    result: Blocks | None = None
    for clause in query.clauses:
        either: Blocks = {}
        for item in clause:
            either = _union(either, term(item))
        result = either if result is None else _intersect(result, either)
        if not result:
            return {}
    return result or {}


def _ids(found: Blocks) -> list[int]:
    return [
        block * BLOCK + bit
        for block, bits in found.items()
        for bit in range(bits.bit_length())
        if bits >> bit & 1
    ]


def newest_first(
    conn: Connection,
    found: Blocks,
    *,
    sources: Sequence[str] | None,
    before: Cursor | None,
    limit: int,
) -> Iterator[list[int]]:
    """The candidate ids, newest first by ``(sort_time, id)``, in batches of about
    ``limit``, restricted to ``sources`` and to what sorts before ``before``.

    Two ways, by estimated cost: look every candidate's position up by id and sort
    (cheap when there are few: a rare word), or walk the newest-first index and keep
    the candidates met (cheap when they are dense: a common word is met every few rows).
    """
    count = sum(bits.bit_count() for bits in found.values())
    if not count:
        return
    total = conn.scalar(select(func.max(articles.c.id))) or 1
    rows_per_hit = total / count
    single = sources is None or len(set(sources)) == 1
    if single and limit * rows_per_hit < _LOOKUP_COST * count:
        yield from _walk(conn, found, sources, before, limit, rows_per_hit)
    else:
        yield from _looked_up(conn, _ids(found), sources, before, limit)


def _looked_up(
    conn: Connection,
    ids: list[int],
    sources: Sequence[str] | None,
    before: Cursor | None,
    limit: int,
) -> Iterator[list[int]]:
    a = articles.c
    positions: list[tuple[datetime, int]] = []
    for start in range(0, len(ids), _BATCH):
        query = select(a.sort_time, a.id).where(a.id.in_(ids[start : start + _BATCH]))
        if sources is not None:
            routes = select(provenance.c.article_id).where(provenance.c.source_id.in_(sources))
            query = query.where(a.id.in_(routes))
        if before is not None:
            query = query.where(tuple_(a.sort_time, a.id) < _cursor(before))
        positions += [(moment, id_) for moment, id_ in conn.execute(query)]
    positions.sort(reverse=True)
    step = limit + 8  # a few spare for candidates the verify step drops
    for start in range(0, len(positions), step):
        yield [id_ for _, id_ in positions[start : start + step]]


def _walk(
    conn: Connection,
    found: Blocks,
    sources: Sequence[str] | None,
    before: Cursor | None,
    limit: int,
    rows_per_hit: float,
) -> Iterator[list[int]]:
    if sources is None:
        sort_time, id_ = articles.c.sort_time, articles.c.id
        where = []
    else:
        sort_time, id_ = provenance.c.sort_time, provenance.c.article_id
        where = [provenance.c.source_id == sources[0]]
    page = int(min(_WALK_PAGE_MAX, max(256, (limit + 8) * rows_per_hit)))
    cursor = before
    while True:
        query = select(sort_time, id_).where(*where)
        if cursor is not None:
            query = query.where(tuple_(sort_time, id_) < _cursor(cursor))
        rows = conn.execute(query.order_by(sort_time.desc(), id_.desc()).limit(page)).all()
        hits = [
            row_id for _, row_id in rows if found.get(row_id // BLOCK, 0) >> (row_id % BLOCK) & 1
        ]
        if hits:
            yield hits
        if len(rows) < page:
            return
        cursor = Cursor(rows[-1][0], rows[-1][1])
        page = min(_WALK_PAGE_MAX, page * 2)


def _cursor(cursor: Cursor) -> Any:
    return tuple_(bindparam("cursor_time", cursor.sort_time, type_=UTCDateTime()), cursor.id)
