"""Topics: saved searches with feeds of their own (``[[topic]]`` in the sources file)."""

from __future__ import annotations

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
