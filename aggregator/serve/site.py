"""What every endpoint shares: the reader protocol, the site and the validated query.

The service only *reads*, through :class:`ArticleReader` (which the store satisfies),
and never fetches.  :class:`SourceCatalog` and :class:`TopicCatalog` are the pieces the
daemon replaces while the app runs (on a reload of the sources file); everything else
here is fixed when the app is built.

Imports from the package: ``export``, ``metrics``, ``search``, ``errors``, ``types``;
never ``store`` (it reads through the ``ArticleReader`` protocol) nor the poll.
"""

from __future__ import annotations

import re
from collections.abc import ItemsView, Iterable, Iterator, Mapping, Sequence, ValuesView
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from typing import Protocol

from starlette.requests import Request

from .. import metrics as metrics_module
from ..errors import QueryError
from ..export.feeds import (
    EXCERPT_HEAD_CHARS,
    FORMATS,
    MAX_TITLE_CHARS,
    FeedFormat,
    decode_cursor,
)
from ..export.site import FEED_PATHS, FeedSite
from ..search import Query, Topic, parse_query
from ..search.script import SCRIPTS, Script, convert, convert_html
from ..types import UTC, Cursor, ReadBound, SourceState, StoredArticle

_LIMIT_RE = re.compile(r"[0-9]{1,6}")
_FEED_PATHS: Mapping[str, FeedFormat] = {path: FORMATS[name] for name, path in FEED_PATHS.items()}


class ArticleReader(Protocol):
    """What the service needs from the store; every method may raise StorageError."""

    def latest(
        self,
        *,
        sources: Sequence[str] | None = None,
        limit: int = 50,
        before: Cursor | None = None,
    ) -> list[StoredArticle]:
        """Newest first by ``(sort_time, id)``, strictly older than ``before``."""
        ...

    def feed_page(
        self,
        *,
        sources: Sequence[str] | None = None,
        limit: int = 50,
        before: Cursor | None = None,
        bound: ReadBound,
    ) -> tuple[list[StoredArticle], bool]:
        """As :meth:`latest`, read within ``bound``, and whether a next page exists."""
        ...

    def last_updated(self, sources: Sequence[str] | None = None) -> datetime | None:
        """The newest ``updated`` among the selected articles; ``None`` if there are none."""
        ...

    def search(
        self,
        query: Query,
        *,
        sources: Sequence[str] | None = None,
        limit: int = 50,
        before: Cursor | None = None,
    ) -> list[StoredArticle]:
        """The articles matching ``query``, ordered and paged as :meth:`latest`."""
        ...

    def article(self, article_id: int) -> StoredArticle | None:
        """One article by id, ``None`` when there is none."""
        ...

    def ping(self) -> None: ...

    def states(self) -> list[SourceState]: ...

    def article_counts(self) -> dict[str, int]: ...

    def search_backlog(self) -> int:
        """Stored articles the search index has not taken yet."""
        ...


class BadRequest(Exception):
    """A client mistake; the message is shown to the client, so keep it short and safe."""


class SourceCatalog(Mapping[str, str]):
    """The configured sources as the service knows them (id -> display name), replaced
    whole on a reload.

    Requests read it from the server's threads while the daemon's loop replaces it,
    so a reload swaps one tuple (atomic) rather than mutating a dict being iterated.
    """

    def __init__(self, names: Mapping[str, str], enabled: Iterable[str] | None = None) -> None:
        self._view: tuple[Mapping[str, str], frozenset[str]] = ({}, frozenset())
        self.replace(names, enabled)

    def replace(self, names: Mapping[str, str], enabled: Iterable[str] | None = None) -> None:
        """``names``: source id -> display name; ``enabled``: the ids polled (default all)."""
        self._view = (dict(names), frozenset(names if enabled is None else enabled))

    @property
    def names(self) -> Mapping[str, str]:
        return self._view[0]

    @property
    def enabled(self) -> frozenset[str]:
        return self._view[1]

    def __getitem__(self, source_id: str) -> str:
        return self._view[0][source_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._view[0])

    def __len__(self) -> int:
        return len(self._view[0])

    def items(self) -> ItemsView[str, str]:
        """One version's items: the mixin's would look each key up again, in a version
        a reload may have replaced meanwhile (a removed source: KeyError)."""
        return self._view[0].items()


class TopicCatalog(Mapping[str, Topic]):
    """The topics served (id -> topic), replaced whole on a reload.

    As with :class:`SourceCatalog`, a reload swaps one reference (atomic) while the
    server's threads read it, and never changes a dict a request is iterating.
    """

    def __init__(self, topics: Iterable[Topic] = ()) -> None:
        self._topics: Mapping[str, Topic] = {}
        self.replace(topics)

    def replace(self, topics: Iterable[Topic]) -> None:
        self._topics = {topic.id: topic for topic in topics}

    def __getitem__(self, topic_id: str) -> Topic:
        return self._topics[topic_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._topics)

    def __len__(self) -> int:
        return len(self._topics)

    def values(self) -> ValuesView[Topic]:
        """One version's topics (see :meth:`SourceCatalog.items`)."""
        return self._topics.values()


@dataclass(frozen=True, kw_only=True)
class _Site(FeedSite):
    """The feeds' addresses and names, and what only the service needs besides."""

    catalog: SourceCatalog
    max_limit: int
    cache_max_age: int
    max_page_bytes: int
    metrics: metrics_module.Metrics = field(repr=False)
    topics: TopicCatalog = field(default_factory=TopicCatalog)
    timezone: tzinfo = UTC  # the pages' times
    private: bool = False  # answers need the feed token: no shared cache may keep them

    @property
    def cache_control(self) -> str:
        """``private`` when a token is needed: ``public`` lets a shared cache store an
        answer to a request with ``Authorization`` (RFC 9111 section 3.5) and hand it
        to anyone asking for the same URL without the token."""
        return f"{'private' if self.private else 'public'}, max-age={self.cache_max_age}"

    @property
    def max_item_chars(self) -> int:
        """The longest body served whole, so that any single item fits a page: escaping
        (``&`` -> ``&amp;``) and UTF-8 (CJK) make a character at most about 6 bytes."""
        return self.max_page_bytes // 8

    @property
    def read_bound(self) -> ReadBound:
        """What a feed page may read: every character is at least a byte once served,
        so rows past ``max_page_bytes`` characters could never be on the page; a body
        served as its excerpt needs only its head; a title only enough to be cut."""
        return ReadBound(
            page_chars=self.max_page_bytes,
            body_chars=self.max_item_chars,
            head_chars=EXCERPT_HEAD_CHARS,
            title_chars=MAX_TITLE_CHARS + 1,
        )


#: The ASGI scope key under which the token gate leaves the token for the links of an
#: answer to a request that authenticated with ``?token=`` (see :class:`_Links`).
LINK_TOKEN = "aggregator.link_token"


@dataclass(frozen=True)
class _Links:
    """The URLs of one answer that lead back to this service.

    When the request authenticated with ``?token=``, every such link carries the token
    too: a feed reader knows a feed by its URL alone and follows its self, first and
    next links (and a page's alternate links get pasted into one) with nothing else,
    so a link without the token would be refused.  Links to other sites never get it.
    A request that authenticated with ``Authorization: Bearer`` gets no token in its
    links: its client sends the header again with every request it makes, and a
    token in a URL is one more copy of the secret (proxy logs, browser history).
    Nor does a browser that authenticated with the cookie: it sends the cookie again.
    """

    site: _Site
    token: str | None = None

    @classmethod
    def of(cls, request: Request, site: _Site) -> _Links:
        token = request.scope.get(LINK_TOKEN)
        return cls(site, token if isinstance(token, str) else None)

    def url(self, path: str, params: Sequence[tuple[str, str]] = ()) -> str:
        """``site.url``, with the token when the request brought it in its query."""
        return self.site.url(path, params, self.token)


@dataclass(frozen=True)
class _Query:
    """A validated selection; ``params`` rebuilds it canonically for URLs and ETags."""

    sources: tuple[str, ...]
    limit: int
    before: Cursor | None
    before_token: str | None
    search: Query | None = None
    topic: Topic | None = None
    script: Script | None = None

    @property
    def selection(self) -> list[str] | None:
        """The sources to read from: a topic's narrowed to those asked for
        (:meth:`Topic.narrowed`), else those asked for, else all (``None``)."""
        if self.topic is not None:
            return self.topic.narrowed(self.sources)
        return list(self.sources) if self.sources else None

    def params(
        self, site: _Site, *, before: str | None = None, topic: bool = True
    ) -> list[tuple[str, str]]:
        """``topic=False`` leaves the topic out, for links whose path names it
        (``/topics/ID/feed.xml``)."""
        params = [("source", source) for source in self.sources]
        if self.topic is not None:
            if topic:
                params.append(("topic", self.topic.id))
        elif self.search is not None:
            params.append(("q", str(self.search)))
        if self.script is not None:
            params.append(("script", self.script))
        if self.limit != site.default_limit:
            params.append(("limit", str(self.limit)))
        if before:
            params.append(("before", before))
        return params


def _parse_query(request: Request, site: _Site) -> _Query:
    query = request.query_params
    for name in ("limit", "before", "q", "topic", "script"):
        if len(query.getlist(name)) > 1:
            raise BadRequest(f"{name} given more than once")
    sources = tuple(sorted(set(query.getlist("source"))))
    for source in sources:
        if source not in site.sources:
            raise BadRequest(f"unknown source {source[:64]!r}")
    raw_limit = query.get("limit")
    if raw_limit is None:
        limit = site.default_limit
    else:
        if not _LIMIT_RE.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= site.max_limit:
            raise BadRequest(f"limit must be a whole number from 1 to {site.max_limit}")
        limit = int(raw_limit)
    token = query.get("before")
    before = None
    if token is not None:
        try:
            before = decode_cursor(token)
        except ValueError:
            raise BadRequest("malformed before= cursor") from None
    search, topic = _search_of(request, site)
    return _Query(sources, limit, before, token, search, topic, _script_of(request))


def _script_of(request: Request) -> Script | None:
    wanted = request.query_params.get("script")
    if wanted is None:
        return None
    for script in SCRIPTS:
        if wanted == script:
            return script
    raise BadRequest("script must be hans or hant")


def _in_script(stored: StoredArticle, script: Script | None) -> StoredArticle:
    """``stored`` with title and body in ``script`` (as stored when ``None``)."""
    if script is None:
        return stored
    article = stored.article
    converted = replace(
        article, title=convert(article.title, script), body=convert_html(article.body, script)
    )
    return replace(stored, article=converted)


def _search_of(request: Request, site: _Site) -> tuple[Query | None, Topic | None]:
    """The search a request asks for: a topic (``/topics/ID/...`` or ``?topic=``)
    or a query (``?q=``); a blank ``q`` is no search (an empty search box).  Both at
    once is refused rather than one silently ignored: the feed's title and links
    would name a search other than the one asked for."""
    topic_id = request.path_params.get("topic") or request.query_params.get("topic")
    text = request.query_params.get("q", "")
    if topic_id is not None:
        if text.strip():
            raise BadRequest("q and topic cannot be combined")
        topic = site.topics.get(topic_id)
        if topic is None:
            raise BadRequest(f"unknown topic {topic_id[:64]!r}")
        return topic.query, topic
    if not text.strip():
        return None, None
    try:
        return parse_query(text), None
    except QueryError as exc:
        raise BadRequest(f"q: {exc.message}") from None


def _articles(
    reader: ArticleReader, query: _Query, bound: ReadBound
) -> tuple[list[StoredArticle], bool]:
    """One page of the selection (read within ``bound``), and whether older ones exist."""
    if query.search is None:
        return reader.feed_page(
            sources=query.selection, limit=query.limit, before=query.before, bound=bound
        )
    rows = reader.search(
        query.search, sources=query.selection, limit=query.limit + 1, before=query.before
    )
    return rows[: query.limit], len(rows) > query.limit


def _feed_title(site: _Site, query: _Query) -> str:
    title = site.feed_title(query.sources)
    if query.topic is not None:
        title += f": {query.topic.title}"
    if query.search is not None and query.topic is None:
        title += f" (search: {query.search})"
    return title
