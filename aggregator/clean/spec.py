"""What a source's junk looks like, as data (:class:`CleanSpec`).

Imports nothing of the cleaner: adapters build specs, the steps read them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from lxml import etree

__all__ = ["CleanSpec", "Reorder"]

#: Mutates the parsed body (an lxml element, the wrapper around the body's nodes) in
#: place; runs first, before anything is dropped.
Reorder = Callable[[etree._Element], None]


@dataclass(frozen=True)
class CleanSpec:
    """What to strip from one source's bodies, as data.

    ``drop``: CSS selectors (cssselect's meaning, compiled once per spec; ``:has()``,
    ``:-soup-contains()`` and ``:-soup-contains-own()`` work) whose matches are removed
    with their content, selector by selector in order.
    ``cut_markers``: text that starts a trailer (the feedx ``获取更多RSS`` footer):
    the smallest element holding only the trailer goes, with what follows it in its
    parent and the ``<br>``/``<hr>`` just before it; never an element that also
    holds article text (a wrapper around the whole body, say).
    ``lazy_attrs``: attributes holding the real image URL of a lazy-loaded image.
    ``host_aliases``: mirror host -> canonical host, applied to links in the body.
    ``reorder``: code hook for fixes that cannot be data (runs first).
    """

    drop: tuple[str, ...] = ()
    cut_markers: tuple[str, ...] = ()
    lazy_attrs: tuple[str, ...] = ("data-src", "data-original", "data-lazy-src")
    host_aliases: Mapping[str, str] = field(default_factory=dict)
    reorder: Reorder | None = None

    def extended(
        self,
        *,
        drop: Iterable[str] = (),
        cut_markers: Iterable[str] = (),
        host_aliases: Mapping[str, str] | None = None,
        reorder: Reorder | None = None,
    ) -> CleanSpec:
        """A copy with more rules; lets sources share a base spec without copy-paste."""
        return CleanSpec(
            drop=self.drop + tuple(drop),
            cut_markers=self.cut_markers + tuple(cut_markers),
            lazy_attrs=self.lazy_attrs,
            host_aliases={**self.host_aliases, **(host_aliases or {})},
            reorder=reorder or self.reorder,
        )
