"""The search index's queue, seen from outside: how far behind it is, and a step
forward (the writes that fill the queue are in :mod:`._articles` and
:mod:`._retention`; what the queue means is in :mod:`._search`).  May import
:mod:`._base` and :mod:`._search`.
"""

from __future__ import annotations

from aggregator.store import _search
from aggregator.store._base import BATCH, StoreBase
from aggregator.store.engine import writing

__all__ = ["IndexingMixin"]


class IndexingMixin(StoreBase):
    def index_pending(self, limit: int = BATCH) -> int:
        """Index up to ``limit`` of the articles waiting for the search index, in one
        transaction; returns how many (0: the index is current)."""
        with self._errors("update the search index"):
            with self._engine.connect() as conn:
                if not _search.backlog(conn):  # no write lock taken for nothing
                    return 0
            with writing(self._engine) as conn:
                return _search.index_pending(conn, limit)

    def search_backlog(self) -> int:
        """How many stored articles the search index has not taken yet (a search
        still finds them, by reading each)."""
        with self._errors("read the search index's backlog"), self._engine.connect() as conn:
            return _search.backlog(conn)
