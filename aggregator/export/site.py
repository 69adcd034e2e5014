"""Where the feeds live and what they call themselves: every URL, title and id
authority a feed document carries, for the HTTP service and the file export alike.

Pure, like the rest of :mod:`aggregator.export`: a file exported by the CLI links to
the same pages, with the same ids, as the service serving that selection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode, urlsplit

from ..types import UTC, Cursor
from .feeds import FeedMeta, encode_cursor

__all__ = ["FEED_PATHS", "FeedSite", "default_id_authority"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Where each format is served; the CLI's file export links to the same pages.
FEED_PATHS: Mapping[str, str] = {"rss": "/feed.xml", "atom": "/atom.xml", "json": "/feed.json"}


def default_id_authority(base_url: str) -> str:
    """The ``host,year`` of the ``tag:`` item ids when none is configured."""
    return f"{urlsplit(base_url).hostname},2025"


@dataclass(frozen=True, kw_only=True)
class FeedSite:
    """The feeds' public address and names.  ``sources`` maps id -> display name."""

    base_url: str
    title: str
    sources: Mapping[str, str]
    default_limit: int
    id_authority: str
    description: str = ""
    language: str | None = None

    def url(
        self, path: str, params: Sequence[tuple[str, str]] = (), token: str | None = None
    ) -> str:
        """The address of ``path`` with ``params``; with ``token`` (the feed token) last,
        for a link a feed reader follows without sending anything else."""
        query = urlencode([*params, ("token", token)] if token else params)
        return f"{self.base_url}{path}" + (f"?{query}" if query else "")

    def selection(
        self, sources: Sequence[str], limit: int, *, before: str | None = None
    ) -> list[tuple[str, str]]:
        """The canonical query of a selection: one spelling per page, for links and ETags."""
        params = [("source", source) for source in sorted(sources)]
        if limit != self.default_limit:
            params.append(("limit", str(limit)))
        if before:
            params.append(("before", before))
        return params

    def feed_title(self, sources: Sequence[str]) -> str:
        if not sources:
            return self.title
        return f"{self.title}: " + ", ".join(self.sources.get(s, s) for s in sorted(sources))

    def meta(
        self,
        path: str,
        sources: Sequence[str],
        limit: int,
        *,
        updated: datetime | None,
        before: str | None = None,
        next_page: Cursor | None = None,
        token: str | None = None,
    ) -> FeedMeta:
        """The metadata of one page (older than ``before``) served at ``path``;
        ``next_page`` is the position after its last item when older ones exist;
        ``updated`` is ``None`` for an empty selection, which then dates from the epoch
        (a fixed value, so its validators stay the same).  With ``token`` (the feed
        token, for a file a feed reader will read on its own) every link carries it,
        as the service's links do for a request that brought it in its query; the
        feed's id does not."""
        next_token = encode_cursor(next_page) if next_page is not None else None
        first = self.selection(sources, limit)
        return FeedMeta(
            title=self.feed_title(sources),
            self_url=self.url(path, self.selection(sources, limit, before=before), token),
            first_url=self.url(path, first, token),
            next_url=(
                self.url(path, self.selection(sources, limit, before=next_token), token)
                if next_token
                else None
            ),
            html_url=self.url("/", first, token),
            id_url=self.url(path, first) if token else None,
            updated=updated or _EPOCH,
            id_authority=self.id_authority,
            description=self.description,
            language=self.language,
        )
