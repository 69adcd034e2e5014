"""The search index's queue, seen from outside: how far behind it is, and a step
forward (the writes that fill the queue are in :mod:`._articles` and
:mod:`._retention`; what the queue means is in :mod:`._search`).  May import
:mod:`._base` and :mod:`._search`.
"""

from __future__ import annotations

from collections.abc import Sequence

from aggregator.search.text import tokens_of
from aggregator.store import _search
from aggregator.store._base import StoreBase
from aggregator.store._search import StartTokens, Tokenize, Tokens
from aggregator.store.engine import writing

__all__ = ["INDEX_BATCH", "BacklogIndexer", "IndexingMixin"]

#: ``(id, fingerprint, title, body)`` of an article waiting for the index.
_Waiting = tuple[int, str, str, str]

#: Articles a step of the index takes by default.  Their texts and then their tokens
#: are all in memory at once (and as pickles on their way through a parse pool):
#: 500 at a time grew the importing process by 19 MB over a 15,000-article
#: catch-up, 200 by 11 MB, at the same CPU per article (the rest of the growth is
#: SQLite's and does not shrink with the batch).
INDEX_BATCH = 200


class IndexingMixin(StoreBase):
    def index_pending(self, limit: int = INDEX_BATCH, *, tokenize: Tokenize = tokens_of) -> int:
        """Index up to ``limit`` of the articles waiting for the search index; returns
        how many it read from the head of the queue (0: the index is current).

        The texts are read first and ``tokenize`` makes their tokens (a caller with a
        process pool spreads that over it) before one short write transaction takes
        them, so the tokens never hold the database's write lock.  An article
        rewritten meanwhile stays queued and is read again by the next call.  To take
        a whole backlog, :meth:`backlog_indexer` overlaps the batches.
        """
        texts = self._waiting(limit, after=None)
        if texts:
            self._take(texts, tokenize([(title, body) for _, _, title, body in texts]))
        return len(texts)

    def backlog_indexer(self, start: StartTokens, limit: int = INDEX_BATCH // 2) -> BacklogIndexer:
        """A :class:`BacklogIndexer` of this store, its tokens begun by ``start``."""
        return BacklogIndexer(self, start, limit)

    def _waiting(self, limit: int, after: int | None) -> list[_Waiting]:
        with self._errors("update the search index"), self._engine.connect() as conn:
            return _search.waiting_texts(conn, limit, after)

    def _take(self, texts: Sequence[_Waiting], made: Sequence[str]) -> None:
        with self._errors("update the search index"), writing(self._engine) as conn:
            _search.take_waiting(
                conn,
                [
                    (id_, fingerprint, found)
                    for (id_, fingerprint, _, _), found in zip(texts, made, strict=True)
                ],
            )

    def search_backlog(self) -> int:
        """How many stored articles the search index has not taken yet (a search
        still finds them, by reading each)."""
        with self._errors("read the search index's backlog"), self._engine.connect() as conn:
            return _search.backlog(conn)


class BacklogIndexer:
    """Takes the search index's backlog a batch per :meth:`step`, the next batch read
    and its tokens begun before this one's are waited for and written.

    One batch at a time (:meth:`IndexingMixin.index_pending`) left the parse pool idle
    while the database wrote a batch, and the database idle while the pool made the
    next one's tokens.  Overlapped, a backlog of 4,818 articles took 5.4-6.0 s instead
    of 7.5-9.2 s in the daemon (one worker and its thread); with a batch command's two
    workers, whose tokens then compete with the writes for the two CPUs, the gain was
    smaller (5.0-5.9 s instead of 5.8-6.8 s, batches of 200).

    The batch ahead is read past the id of the one being written; once nothing is
    left past it, the queue is read from its head again, so an article rewritten
    meanwhile (left queued by :func:`_search.take_waiting`) is taken on that pass.
    Two batches are in memory at once, so :meth:`IndexingMixin.backlog_indexer`
    takes half of :data:`INDEX_BATCH` at a time: batches of 200 grew the daemon's
    peak over a 1,000-feed first poll and its catch-up from 104 to 110 MB, and 100
    hold what one batch of 200 held while taking the backlog as fast or faster.
    """

    def __init__(self, store: IndexingMixin, start: StartTokens, limit: int) -> None:
        self._store = store
        self._start = start
        self._limit = limit
        self._ahead: tuple[list[_Waiting], Tokens] | None = None

    def step(self) -> int:
        """Index one batch; how many articles it read (0: none waits any longer)."""
        current = self._ahead or self._begin(after=None)
        self._ahead = None
        if current is None:
            return 0
        texts, tokens = current
        self._ahead = self._begin(after=texts[-1][0])
        self._store._take(texts, tokens())
        return len(texts)

    def _begin(self, after: int | None) -> tuple[list[_Waiting], Tokens] | None:
        texts = self._store._waiting(self._limit, after)
        if not texts:
            return None
        return texts, self._start([(title, body) for _, _, title, body in texts])
