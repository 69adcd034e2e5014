"""The search index's queue, seen from outside: how far behind it is, and a step
forward (the writes that fill the queue are in :mod:`._articles` and
:mod:`._retention`; what the queue means is in :mod:`._search`).  May import
:mod:`._base` and :mod:`._search`.
"""

from __future__ import annotations

from aggregator.search.text import tokens_of
from aggregator.store import _search
from aggregator.store._base import StoreBase
from aggregator.store._search import Tokenize
from aggregator.store.engine import writing

__all__ = ["INDEX_BATCH", "IndexingMixin"]

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
        rewritten meanwhile stays queued and is read again by the next call.
        """
        with self._errors("update the search index"):
            with self._engine.connect() as conn:
                texts = _search.waiting_texts(conn, limit)
            if not texts:
                return 0
            made = tokenize([(title, body) for _, _, title, body in texts])
            with writing(self._engine) as conn:
                _search.take_waiting(
                    conn,
                    [
                        (id_, fingerprint, found)
                        for (id_, fingerprint, _, _), found in zip(texts, made, strict=True)
                    ],
                )
            return len(texts)

    def search_backlog(self) -> int:
        """How many stored articles the search index has not taken yet (a search
        still finds them, by reading each)."""
        with self._errors("read the search index's backlog"), self._engine.connect() as conn:
            return _search.backlog(conn)
