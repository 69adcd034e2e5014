"""Core data types that every pipeline stage shares.

Stdlib only, immutable, and always timezone-aware UTC: local times are converted
once, in :mod:`aggregator.dates`, and never leak past the adapter.  Timestamps are
kept to millisecond precision because that is what the archive format (epoch ms,
``...387Z``) and the feeds we export can carry; truncating at construction time
means an article read back from any of them compares equal to the original.

Imports from the package: nothing of the package (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property

__all__ = [
    "UTC",
    "Article",
    "Cursor",
    "DateSource",
    "FetchResult",
    "Page",
    "PollCounts",
    "Provenance",
    "RawEntry",
    "RawFeed",
    "ReadBound",
    "Source",
    "SourceState",
    "StoredArticle",
    "UrlState",
    "utc_ms",
]


def utc_ms(moment: datetime) -> datetime:
    """Return ``moment`` in UTC, truncated to whole milliseconds.

    Naive datetimes are refused rather than guessed: a naive time inside the
    pipeline is always a bug (the Zaobao +8 h skew is exactly such a guess).
    """
    if moment.tzinfo is UTC and not moment.microsecond % 1000:
        return moment  # already normal: every value read back from the database
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()!r}: a timezone is required")
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class DateSource(StrEnum):
    """Where an article's published time came from, so a fallback is never silent."""

    FEED = "feed"  # the entry's own date, trusted as sent
    FEED_LOCAL = "feed-local"  # the entry's date re-read in the source's declared timezone
    BODY = "body"  # a date line in the body (feedx VOA/RFI)
    URL = "url"  # a timestamp embedded in the article URL (RFA, Zaobao, RFI, VOA slugs)
    FETCHED = "fetched"  # nothing usable: the time we first saw the entry
    ARCHIVE = "archive"  # read from a seed-format archive file
    FRONT_MATTER = "front-matter"  # an archived post without a published line: its Jekyll date
    UNKNOWN = "unknown"  # no published time at all (archives only: ``<!--NaN-->``)


@dataclass(frozen=True)
class Article:
    """One normalized article: the unit every stage after the adapter works on.

    ``source_name`` is the display name of the source (the archive's ``author``).
    ``fetched`` is when we first saw the article; it is ``None`` only for articles
    read from a bare-layout archive file, which does not record it.
    ``guid`` is the source entry id as the feed sent it, kept so a stored article can
    be traced back to its raw entry.
    """

    source_id: str
    source_name: str
    title: str
    link: str
    body: str
    published: datetime | None
    fetched: datetime | None
    tags: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    comments: bool | None = None
    guid: str | None = None
    date_source: DateSource = DateSource.FEED
    #: Where ``body`` came from: ``"feed"`` (the entry) or ``"page"`` (the article page,
    #: fetched because the feed carried only a summary).  Not part of the fingerprint.
    body_source: str = "feed"

    def __post_init__(self) -> None:
        # frozen: normalise through object.__setattr__, once, at construction.
        for name in ("published", "fetched"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, utc_ms(value))
        for name in ("tags", "categories"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.published is None and self.date_source not in (
            DateSource.UNKNOWN,
            DateSource.ARCHIVE,
        ):
            object.__setattr__(self, "date_source", DateSource.UNKNOWN)

    @property
    def sort_time(self) -> datetime | None:
        """When the article counts as having appeared: published, else first fetched.

        The one rule of every newest-first order (feeds, pages, paging cursors,
        retention, archive file names); ``None`` only for a bare archive's article.
        """
        return self.published or self.fetched

    @cached_property
    def fingerprint(self) -> str:
        """A hash of what a reader sees: title, link and body.

        Dedupe compares fingerprints to decide whether a re-sent entry "really
        changed"; provenance, tags and fetch times deliberately do not count.
        """
        digest = hashlib.sha256()
        for part in (self.title, self.link, self.body):
            digest.update(part.encode("utf-8", "surrogatepass"))
            digest.update(b"\x00")
        return digest.hexdigest()


@dataclass(frozen=True)
class RawEntry:
    """One feed entry as parsed, before any adapter touched it.

    Dates stay the strings the feed sent, because repairing them needs the
    original text (an offset of ``+0000`` that really means Singapore time is
    invisible once parsed).  Stored verbatim so ``aggregator renormalize`` can
    re-run improved adapters without refetching.
    """

    guid: str | None = None
    link: str | None = None
    title: str | None = None
    content: str | None = None  # the fullest HTML body the feed had
    summary: str | None = None
    published: str | None = None
    updated: str | None = None
    author: str | None = None
    tags: tuple[str, ...] = ()
    enclosures: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict; :meth:`from_dict` inverts it exactly."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RawEntry:
        values: dict[str, object] = {}
        for name in cls.__dataclass_fields__:
            value = data.get(name)
            if name in ("tags", "enclosures"):
                values[name] = tuple(str(item) for item in value or ())  # type: ignore[attr-defined]
            else:
                values[name] = None if value is None else str(value)
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RawFeed:
    """A parsed feed document.  ``problems`` records survivable parse errors."""

    url: str
    title: str | None
    link: str | None
    entries: tuple[RawEntry, ...]
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    """A configured feed: what to poll, how often, and which adapter cleans it."""

    id: str
    name: str
    url: str
    adapter: str = "generic"
    interval: timedelta = timedelta(minutes=30)
    enabled: bool = True
    retention: timedelta | None = None  # None: the global default
    allow_private: bool = False  # may this source's feed URLs be on private/loopback addresses?
    mirrors: tuple[str, ...] = ()  # further URLs of the same feed, tried in order after ``url``
    fulltext: bool | str = False  # fetch article pages: True, False or "auto" (per entry)

    @property
    def urls(self) -> tuple[str, ...]:
        """Every configured URL, the primary first."""
        return (self.url, *self.mirrors)


@dataclass(frozen=True)
class FetchResult:
    """The outcome of one conditional GET.

    ``content`` is ``None`` for ``304 Not Modified``.  ``permanent_url`` is set only
    when every redirect on the way was permanent (301/308): then, and only then,
    the stored feed URL should change.
    """

    url: str
    status: int
    content: bytes | None
    #: Content codings (``gzip``, ``deflate``) still on ``content``, in the order the
    #: server applied them; empty unless the fetch was asked to leave them.
    encodings: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    permanent_url: str | None = None
    elapsed: float = 0.0

    @property
    def not_modified(self) -> bool:
        return self.content is None


@dataclass(frozen=True)
class UrlState:
    """What one of a source's URLs did last, for a source with mirrors.

    ``configured`` is the URL as configured (the record's identity); ``url`` is where
    it lives now (a permanent redirect moves it).  ``gone`` is set once it answered
    410: that URL is never tried again, the others still are.
    """

    configured: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    error_kind: str | None = None
    error: str | None = None
    gone: str | None = None

    @classmethod
    def fresh(cls, url: str) -> UrlState:
        return cls(url, url)


@dataclass(frozen=True)
class SourceState:
    """Durable per-source polling state; a restart resumes from it."""

    source_id: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    consecutive_failures: int = 0
    last_error_kind: str | None = None
    last_error: str | None = None
    next_poll: datetime | None = None
    disabled_reason: str | None = None
    #: The configured URL this state was made for (``url`` may be a redirect target);
    #: ``None``: not known (made before it was recorded), taken to be the current one.
    configured_url: str | None = None
    #: The first failed poll of the current run of failures; ``None`` while healthy.
    failing_since: datetime | None = None
    #: One record per configured URL when the source has mirrors (empty otherwise);
    #: ``url``, ``etag`` and ``last_modified`` above are then those of the URL used last.
    url_states: tuple[UrlState, ...] = ()

    @classmethod
    def fresh(cls, source: Source) -> SourceState:
        """The state of a source never polled (at its configured URL)."""
        return cls(source.id, source.url, configured_url=source.url)


@dataclass(frozen=True)
class Page:
    """An article page fetched for a summary-only entry, as stored.

    ``main`` is the extracted main content (a re-poll re-adapts it without extracting
    again); ``html`` the whole page, for ``aggregator renormalize`` to extract anew.
    ``failure`` set: the page failed for good and is not fetched again.
    ``entry_updated``: the entry's updated date when fetched; a different one means
    the article changed and the page is fetched again (conditionally).
    """

    url: str
    html: str | None = None
    main: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    entry_updated: str | None = None
    failure: str | None = None


@dataclass(frozen=True)
class Provenance:
    """One route by which a stored article reached us."""

    source_id: str
    source_name: str
    link: str
    guid: str | None
    first_seen: datetime


@dataclass(frozen=True, order=True)
class Cursor:
    """A stable position in the newest-first article order.

    Articles sort by ``sort_time`` (published, else first fetched) and then by
    store id, so paging with ``before=cursor`` neither skips nor repeats even when
    many articles share a second and new ones arrive meanwhile.
    """

    sort_time: datetime
    id: int


@dataclass(frozen=True)
class StoredArticle:
    """An article as the store returns it: identity, provenance and update time."""

    id: int
    article: Article
    provenance: tuple[Provenance, ...]
    updated: datetime
    # Set by a bounded read (ReadBound) when ``article.body`` holds only the head of
    # the stored body: the stored body's length in characters.
    body_length: int | None = None

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.article.sort_time or self.updated, self.id)


@dataclass(frozen=True)
class ReadBound:
    """How much of a page of articles a reader may load, in characters.

    A page of 500 rows of 1 MB bodies was read whole before the service cut it to
    what a 10 MB feed page holds; with a bound, the database hands over only what
    a page can use.
    """

    page_chars: int  # titles and bodies of one page, in total (one row at least)
    body_chars: int  # a longer body comes back as its first ``head_chars``
    head_chars: int
    title_chars: int  # a longer title comes back cut to this


@dataclass(frozen=True)
class PollCounts:
    """What one poll did to the store."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0  # reached us through another source already: provenance added
    skipped: int = 0  # entries the adapter rejected
    tombstoned: int = 0  # of ``skipped``: entries of articles pruned earlier

    def __add__(self, other: PollCounts) -> PollCounts:
        return PollCounts(
            self.new + other.new,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.merged + other.merged,
            self.skipped + other.skipped,
            self.tombstoned + other.tombstoned,
        )
