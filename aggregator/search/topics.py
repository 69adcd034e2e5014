"""Topics: saved searches with feeds of their own (``[[topic]]`` in the sources file)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aggregator.search.query import Query

__all__ = ["Topic"]


@dataclass(frozen=True)
class Topic:
    """A saved search: its articles are those of ``sources`` (all when ``None``)
    matching ``query``."""

    id: str
    title: str
    query: Query
    sources: tuple[str, ...] | None = None

    def narrowed(self, picked: Sequence[str]) -> list[str] | None:
        """The sources a feed of this topic reads when some are ``picked`` too
        (``?source=``, ``--source``): the topic's own, narrowed to those picked, so
        a pick never brings in articles the topic leaves out (none in common: an
        empty list, nothing); ``None`` (all) when neither names any."""
        if not picked:
            return list(self.sources) if self.sources else None
        if not self.sources:
            return sorted(set(picked))
        return sorted(set(picked).intersection(self.sources))
