"""The search index: which articles hold which tokens, kept by the database in C.

The parse workers compute each article's tokens (:func:`aggregator.search.tokens`:
CJK pairs and run ends, other words); the store hands them to the database as
one string or array per article, and the database inverts them:

- SQLite: an FTS5 table, contentless (the tokens are not stored twice), without
  positions or sizes (``detail=none``, ``columnsize=0``: candidates are verified
  against the text anyway).  Its ``ascii`` tokenizer splits at ASCII punctuation
  and spaces only, which a token never holds (words are letters and digits), so it
  splits the worker's newline-joined string into exactly the worker's tokens, a CJK
  pair included, and costs less than ``unicode61``'s per-character categories.  A
  one-character CJK term is a prefix query (``"防"*``): the pairs it starts and the
  character alone where a run ends with it.  A contentless table forgets nothing by
  itself: an article leaves the index through FTS5's ``delete`` command with the
  tokens it was indexed with, which its stored title and body give again (SQLite
  before 3.43 has no ``contentless_delete``).
- PostgreSQL: a side table of ``(article_id, tokens text[])`` with a GIN index;
  a deleted article's row goes with it (``ON DELETE CASCADE``).  GIN cannot look
  a prefix up, so each array also holds the first character of every CJK pair: a
  one-character term is then one exact element, as on SQLite a prefix.

A query asks the index for the ids holding every token of some term of each
clause; :func:`newest_matching` orders them and :meth:`Store.search` verifies each
against its text, so the index only has to propose a superset.

The index is written behind the writes, not in them.  Its tokens cost about as much
CPU as parsing and cleaning an entry, and a first poll of many feeds, an import or
a renormalize would pay it on the store's one thread while every poll waits.  So
a stored or rewritten article is only named in ``search_pending`` (in the write's
own transaction, so a crash loses nothing), and the store takes the queue in
batches when there is time (the daemon between polls; the one-shot commands before
they exit), making the next batch's tokens while it writes this one's
(``_indexing.BacklogIndexer``).  A search adds every waiting article to the index's
candidates and verifies it like them: the answer is exact however far behind the
index is, only slower while thousands wait.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Text,
    bindparam,
    column,
    func,
    or_,
    select,
    table,
    text,
    tuple_,
    union_all,
)
from sqlalchemy.sql.expression import TableClause

from aggregator.search import Query, Term
from aggregator.search.text import indexed_tokens, is_cjk_char
from aggregator.store._base import BulkInsert
from aggregator.store.tables import UTCDateTime, articles, provenance, search_pending
from aggregator.types import Article, Cursor

__all__ = [
    "TABLE",
    "add_tokens",
    "backlog",
    "candidates",
    "create",
    "StartTokens",
    "Tokenize",
    "Tokens",
    "index",
    "newest_matching",
    "rebuild",
    "reindex",
    "take_waiting",
    "unindex",
    "waiting_texts",
]

#: The index's table on both databases (on SQLite FTS5 adds ``TABLE_*`` shadow tables).
TABLE = "search_index"
_BATCH = 500
# Looking one id up and sorting it costs about as much as walking this many rows of
# the newest-first index (measured on SQLite, 1M articles).
_LOOKUP_COST = 25
#: The most rows one page of a search asks for (pages double while the check drops
#: candidates).
_PAGE_MAX = 5000


@functools.cache
def _pg_index() -> TableClause:
    """The index's table as PostgreSQL holds it: its dialect is imported only for a
    PostgreSQL search (on SQLite it was a tenth of the store's import time)."""
    from sqlalchemy.dialects.postgresql import ARRAY

    return table(TABLE, column("article_id"), column("tokens", ARRAY(Text)))


# Plain SQL through the driver's executemany: SQLAlchemy's per-row parameter
# handling costs more than the database's work on a poll's few rows.
_SQLITE_ADD = f"INSERT INTO {TABLE} (rowid, tokens) VALUES (?, ?)"
_SQLITE_DELETE = f"INSERT INTO {TABLE} ({TABLE}, rowid, tokens) VALUES ('delete', ?, ?)"
_PG_SET = (
    f"INSERT INTO {TABLE} (article_id, tokens) VALUES (%s, %s) "
    "ON CONFLICT (article_id) DO UPDATE SET tokens = excluded.tokens"
)


def _sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"


def add_tokens(conn: Connection, docs: Iterable[tuple[int, str]]) -> None:
    """Index ``(article id, newline-joined tokens)`` pairs (new ids, or ids whose old
    tokens were just removed): the write behind :func:`index`, also for bulk loaders
    that tokenize each distinct text once."""
    if _sqlite(conn):
        rows: list[tuple[int, Any]] = [(id_, found) for id_, found in docs]
        statement = _SQLITE_ADD
    else:
        rows = [(id_, _with_characters(found.split("\n") if found else [])) for id_, found in docs]
        statement = _PG_SET
    if rows:
        conn.exec_driver_sql(statement, rows)


def _with_characters(found: list[str]) -> list[str]:
    """PostgreSQL's array: the tokens and the first character of each CJK pair."""
    starts = {token[0] for token in found if len(token) == 2 and is_cjk_char(token[0])}
    return [*found, *starts.difference(found)]


def _forget(conn: Connection, gone: Iterable[tuple[int, Article]]) -> None:
    """Take articles out of the SQLite index, given the text they were indexed with
    (the caller has left out those still waiting: they are not in it)."""
    if rows := [(id_, indexed_tokens(article.title, article.body)) for id_, article in gone]:
        conn.exec_driver_sql(_SQLITE_DELETE, rows)


def _waiting(conn: Connection, ids: Iterable[int]) -> set[int]:
    """Which of ``ids`` are still in the queue."""
    found: set[int] = set()
    ordered = sorted(ids)
    pending_id = search_pending.c.article_id
    for start in range(0, len(ordered), _BATCH):
        chunk = ordered[start : start + _BATCH]
        found.update(conn.scalars(select(pending_id).where(pending_id.in_(chunk))))
    return found


# Plain SQL as for the articles (see BulkInsert): through SQLAlchemy's per-row
# parameter handling, queueing took 3% of the store's CPU in a poll (replaying the
# 1,000-feed corpus's parsed polls into a new database: 204-206 against 208-217 us an
# entry).
_ENQUEUE = BulkInsert(search_pending, ["article_id"], "ON CONFLICT DO NOTHING")


def _enqueue(conn: Connection, ids: Iterable[int]) -> None:
    _ENQUEUE(conn, [{"article_id": id_} for id_ in ids])


def index(conn: Connection, added: Mapping[int, Article]) -> None:
    """Queue articles just inserted for the index."""
    _enqueue(conn, added)


def unindex(conn: Connection, gone: Mapping[int, Article]) -> None:
    """Forget articles about to be deleted (their ids may be reused).  PostgreSQL's
    index rows and both databases' queue rows go with the articles (cascade)."""
    if _sqlite(conn):
        waiting = _waiting(conn, gone)
        _forget(conn, ((id_, article) for id_, article in gone.items() if id_ not in waiting))


def reindex(conn: Connection, changed: Iterable[tuple[int, Article, Article]]) -> None:
    """Follow ``(id, old, new)`` rewrites whose text changed: the old tokens leave the
    SQLite index now (they are known now), the new ones come with the queue.
    PostgreSQL's row is replaced when the queue reaches it."""
    rewritten = {
        id_: old for id_, old, new in changed if (old.title, old.body) != (new.title, new.body)
    }
    if _sqlite(conn):
        waiting = _waiting(conn, rewritten)
        _forget(conn, ((id_, old) for id_, old in rewritten.items() if id_ not in waiting))
    _enqueue(conn, rewritten)


def backlog(conn: Connection) -> int:
    """How many articles wait for the index."""
    return conn.scalar(select(func.count()).select_from(search_pending)) or 0


#: Title and body in, the index's tokens out (:func:`tokens_of` or the same work
#: spread over processes); one call per batch.
Tokenize = Callable[[Sequence[tuple[str, str]]], list[str]]
#: The tokens of a batch whose making has begun, waited for when called.
Tokens = Callable[[], list[str]]
#: Begins making the tokens of a batch (on a pool, while the caller goes on).
StartTokens = Callable[[Sequence[tuple[str, str]]], Tokens]


def waiting_texts(
    conn: Connection, limit: int, after: int | None = None
) -> list[tuple[int, str, str, str]]:
    """``(id, fingerprint, title, body)`` of up to ``limit`` waiting articles, oldest
    first (with ``after``, those queued with a higher id): what :func:`take_waiting`
    needs, read without taking a write lock, so their tokens can be made while the
    store goes on writing."""
    pending_id = search_pending.c.article_id
    waiting = select(pending_id) if after is None else select(pending_id).where(pending_id > after)
    ids = waiting.order_by(pending_id).limit(limit).scalar_subquery()
    a = articles.c
    query = select(a.id, a.fingerprint, a.title, a.body).where(a.id.in_(ids)).order_by(a.id)
    return [
        (id_, fingerprint, title, body) for id_, fingerprint, title, body in conn.execute(query)
    ]


def take_waiting(conn: Connection, made: Sequence[tuple[int, str, str]]) -> int:
    """Index ``(id, fingerprint, tokens)`` made from :func:`waiting_texts` and take those
    articles off the queue, in the caller's (writing) transaction; returns how many.

    Between the read and this write an article may have been rewritten (its
    fingerprint changed: it stays queued and its new text is read next time),
    pruned (its queue row went with it) or, on PostgreSQL, taken by another daemon
    (its queue row is gone, or locked by that daemon and skipped), so only what is
    still queued and unchanged is indexed.
    """
    if not made:
        return 0
    pending_id = search_pending.c.article_id
    ids = [id_ for id_, _, _ in made]
    queued = select(pending_id).where(pending_id.in_(ids))
    if not _sqlite(conn):
        queued = queued.with_for_update(skip_locked=True)
    still = set(conn.scalars(queued))
    a = articles.c
    current: dict[int, str] = {}
    if still:  # .all(): dict() of a result would take it for a mapping (it has keys())
        current = dict(conn.execute(select(a.id, a.fingerprint).where(a.id.in_(still))).all())
    taken = [(id_, found) for id_, fingerprint, found in made if current.get(id_) == fingerprint]
    if taken:
        add_tokens(conn, taken)
        conn.execute(search_pending.delete().where(pending_id.in_([id_ for id_, _ in taken])))
    return len(taken)


#: The index as the migrations leave it (revision 0006), for a database created at
#: the newest revision directly (``Store.migrate``); tests/test_migrations.py holds
#: both ways to the same schema.
_SQLITE_CREATE = (
    f"CREATE VIRTUAL TABLE {TABLE} USING fts5(tokens, content='', detail=none, "
    "columnsize=0, tokenize='ascii')",
)
_PG_CREATE = (
    f"CREATE TABLE {TABLE} (article_id INTEGER NOT NULL, tokens TEXT[] NOT NULL, "
    "PRIMARY KEY (article_id), "
    "FOREIGN KEY(article_id) REFERENCES articles (id) ON DELETE CASCADE)",
    f"CREATE INDEX ix_{TABLE}_tokens ON {TABLE} USING gin (tokens) WITH (fastupdate = on)",
)


def create(conn: Connection) -> None:
    """Create the (empty) index of a new database."""
    for statement in _SQLITE_CREATE if _sqlite(conn) else _PG_CREATE:
        conn.exec_driver_sql(statement)


def rebuild(conn: Connection) -> int:
    """Index every stored article from scratch (the migration that adds the index);
    read in keyset pages so memory stays flat.  Returns the number indexed."""
    if _sqlite(conn):
        conn.exec_driver_sql(f"INSERT INTO {TABLE} ({TABLE}) VALUES ('delete-all')")
    else:
        conn.exec_driver_sql(f"DELETE FROM {TABLE}")
    conn.execute(search_pending.delete())
    a = articles.c
    last, count = 0, 0
    while True:
        page = conn.execute(
            select(a.id, a.title, a.body).where(a.id > last).order_by(a.id).limit(_BATCH)
        ).all()
        add_tokens(conn, ((id_, indexed_tokens(title, body)) for id_, title, body in page))
        count += len(page)
        if len(page) < _BATCH:
            return count
        last = page[-1][0]


# -- querying -------------------------------------------------------------------------


def _fts_token(token: str) -> str:
    quoted = '"' + token.replace('"', '""') + '"'
    return quoted + "*" if is_cjk_char(token) else quoted


def _fts_term(term: Term) -> str:
    return "(" + " AND ".join(map(_fts_token, sorted(term.tokens))) + ")"


def _clauses(query: Query) -> list[list[Term]] | None:
    """The clauses the index can answer; ``None`` when some clause has no token."""
    clauses = [[term for term in clause if term.tokens] for clause in query.clauses]
    return clauses if clauses and all(clauses) else None


def _fts_match(clauses: list[list[Term]]) -> str:
    return " AND ".join("(" + " OR ".join(map(_fts_term, c)) + ")" for c in clauses)


def _pg_rule(clauses: list[list[Term]]) -> list[Any]:
    contains = _pg_index().c.tokens.contains
    return [or_(*(contains(sorted(term.tokens)) for term in clause)) for clause in clauses]


def _proposed(conn: Connection, query: Query) -> Any:
    """The index's ids for ``query`` as a subquery, or ``None`` when some clause has
    no token (only waiting articles can then be candidates, and none will match)."""
    clauses = _clauses(query)
    if clauses is None:
        return None
    if _sqlite(conn):
        match = text(f"{TABLE} MATCH :match").bindparams(match=_fts_match(clauses))
        return select(column("rowid")).select_from(table(TABLE)).where(match)
    index = _pg_index()
    return select(index.c.article_id).where(*_pg_rule(clauses))


def candidates(conn: Connection, query: Query) -> set[int]:
    """Every article the index holds all tokens of some term of each clause for (what
    :func:`newest_matching` proposes, besides the waiting articles)."""
    proposed = _proposed(conn, query)
    return set() if proposed is None else set(conn.scalars(proposed))


def newest_matching(
    conn: Connection,
    query: Query,
    *,
    sources: Sequence[str] | None,
    before: Cursor | None,
    limit: int,
) -> Iterator[list[int]]:
    """The ids the index proposes for ``query`` and those waiting for the index,
    newest first by ``(sort_time, id)`` as :meth:`Store.latest` orders them,
    restricted to ``sources`` and to what sorts before ``before``, a page of about
    ``limit`` at a time (more when the caller's check drops some).

    The database joins the index's ids with the newest-first index and stops at the
    page: a common word's hundred thousand ids never reach Python (listing them was
    most of a 1M-article search: 60 ms against 12 ms for the whole join in C).
    """
    proposed = _proposed(conn, query)
    waiting = select(search_pending.c.article_id)
    ids = waiting if proposed is None else union_all(proposed, waiting)
    if sources is not None and len(set(sources)) == 1:
        sort_time, id_ = provenance.c.sort_time, provenance.c.article_id
        where = [provenance.c.source_id == sources[0]]
    else:
        sort_time, id_ = articles.c.sort_time, articles.c.id
        routes = select(provenance.c.article_id).where(provenance.c.source_id.in_(sources or []))
        where = [] if sources is None else [id_.in_(routes)]
    # Two plans, by estimated cost: look each id up and sort (a rare word), or walk
    # the newest-first index keeping the ids met (a common word, met every few rows).
    # SQLite cannot tell them apart (it has no count of a match), so it is told: `id
    # + 0` keeps it from looking ids up.  PostgreSQL's planner has statistics.
    count = conn.scalar(select(func.count()).select_from(ids.subquery())) or 0
    total = conn.scalar(select(func.max(articles.c.id))) or 1
    walk = (limit + 8) * total < _LOOKUP_COST * count * max(count, 1)
    where.append((id_ + 0 if walk and _sqlite(conn) else id_).in_(ids))
    step, cursor = limit + 8, before  # a few spare for candidates the check drops
    while True:
        page = select(sort_time, id_).where(*where)
        if cursor is not None:
            page = page.where(tuple_(sort_time, id_) < _cursor(cursor))
        rows = conn.execute(page.order_by(sort_time.desc(), id_.desc()).limit(step)).all()
        if rows:
            yield [row_id for _, row_id in rows]
        if len(rows) < step:
            return
        cursor = Cursor(rows[-1][0], rows[-1][1])
        step = min(step * 2, _PAGE_MAX)


def _cursor(cursor: Cursor) -> Any:
    return tuple_(bindparam("cursor_time", cursor.sort_time, type_=UTCDateTime()), cursor.id)
