"""The pure middle of a poll: fetched bytes in, normalized articles out.

Kept apart from :mod:`aggregator.pipeline` (which also knows the network and the
database) so that a parse-pool worker process imports only what it runs: the
parser, the adapters and the cleaner, not httpx, SQLAlchemy or uvicorn.

Imports from the package: ``adapters``, ``parse``, ``log``, ``errors``, ``types``: what a
parse worker runs, no database and no network (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import dataclasses
import logging
import signal
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from aggregator import log
from aggregator.adapters import get_adapter
from aggregator.errors import AdapterError, ParseError
from aggregator.inflate import decoded
from aggregator.parse import EntryLimits, parse_feed
from aggregator.parse.limits import DEFAULT_LIMITS, MAX_TITLE_BYTES, cut_bytes, cut_problem
from aggregator.search.text import fold
from aggregator.types import Article, RawEntry, Source

__all__ = [
    "Normalized",
    "adapt_entries",
    "init_worker",
    "normalize_entries",
    "parse_and_adapt",
    "warm_up",
]

logger = logging.getLogger(__name__)


def normalize_entries(
    entries: Iterable[tuple[RawEntry, datetime]],
    source: Source,
    *,
    max_title_bytes: int = MAX_TITLE_BYTES,
    on_cut: Callable[[str], None] | None = None,
) -> Iterator[tuple[RawEntry, Article | AdapterError]]:
    """Normalize each ``(entry, first fetched)`` with the source's adapter: the one path
    by which poll, import and renormalize turn a raw entry into an article.

    A bad entry never costs the others: it yields an :class:`AdapterError` in place
    of its article.  An ``AdapterError`` from the adapter is an expected rejection (no
    link, no title); anything else is a bug met on hostile input, wrapped in one with
    the entry's identity (its traceback logged at DEBUG) and skipped the same way.
    The caller reports the rejections, each as it sees fit.

    A title longer than ``max_title_bytes`` after the adapter's cleaning is cut
    there too: parsing bounds a feed's titles, but an adapter may build one and an
    archive import never parses a feed.  Each cut is passed to ``on_cut`` as a feed
    problem (logged as a warning without one); the article is kept.
    """
    adapter = get_adapter(source.adapter)
    report = on_cut or _log_cut
    for entry, fetched_at in entries:
        try:
            article = _title_within(
                adapter(entry, source, fetched_at), entry, max_title_bytes, report
            )
            yield entry, _fingerprinted(article)
        except AdapterError as exc:
            yield entry, exc
        except Exception as exc:
            logger.debug("adapter %r crashed on guid=%r", source.adapter, entry.guid, exc_info=True)
            crash = AdapterError(
                f"adapter {source.adapter!r} crashed",
                source=source.id,
                guid=entry.guid,
                link=entry.link,
            )
            crash.__cause__ = exc
            yield entry, crash


def _title_within(
    article: Article, entry: RawEntry, limit: int, report: Callable[[str], None]
) -> Article:
    if len(article.title) <= limit // 4 or len(article.title.encode("utf-8")) <= limit:
        return article
    title = cut_bytes(article.title, limit).rstrip()
    reason = (
        f"title over {limit} bytes after cleaning, "
        f"{len(article.title)} characters cut to {len(title)}"
    )
    report(cut_problem(entry, [reason]))
    return dataclasses.replace(article, title=title)


def _log_cut(problem: str) -> None:
    logger.warning("feed problem: %s", problem)


def adapt_entries(
    entries: Sequence[RawEntry],
    source: Source,
    fetched_at: datetime,
    *,
    max_title_bytes: int = MAX_TITLE_BYTES,
) -> tuple[list[tuple[RawEntry, Article]], int, list[str]]:
    """Normalize one poll's entries; return the pairs, the skip count (skips logged)
    and the titles cut after cleaning, as feed problems."""
    pairs: list[tuple[RawEntry, Article]] = []
    skipped = 0
    cuts: list[str] = []
    normalized = normalize_entries(
        ((entry, fetched_at) for entry in entries),
        source,
        max_title_bytes=max_title_bytes,
        on_cut=cuts.append,
    )
    for entry, result in normalized:
        if isinstance(result, AdapterError):
            skipped += 1
            logger.warning("skipping entry: %s", result)
        else:
            pairs.append((entry, result))
    return pairs, skipped, cuts


def _fingerprinted(article: Article) -> Article:
    """``article`` with its fingerprint computed now, in the parse worker.

    The cached value is pickled with the article, so the daemon's one store thread
    does not spend its time hashing bodies that many workers could.  (Search tokens
    are not computed here: the index is written behind the polls, see
    ``store._search``.)
    """
    article.fingerprint  # noqa: B018 - computed for its cache
    return article


@dataclass(frozen=True)
class Normalized:
    """What parse-and-adapt made of one fetched document (picklable: it may cross processes)."""

    pairs: list[tuple[RawEntry, Article]]
    skipped: int
    problems: tuple[str, ...]
    entries_sent: int


def parse_and_adapt(
    content: bytes,
    *,
    url: str,
    headers: Mapping[str, str],
    source: Source,
    fetched_at: datetime,
    max_entries: int,
    limits: EntryLimits = DEFAULT_LIMITS,
    encodings: Sequence[str] = (),
    max_bytes: int = 0,
) -> Normalized:
    """The CPU-bound middle of a poll, pure: bytes in, normalized articles out.

    A module-level function so that a process pool can run it: on a multi-core
    machine parsing and cleaning are most of a full poll's cost, and threads
    would serialise on the GIL.  ``limits`` (the settings' entry bounds) travel
    with the task, so a worker needs no settings of its own.  ``content`` may still
    be compressed (``encodings``, as HTTP listed them); it is inflated first, to at
    most ``max_bytes``.
    """
    with log.bound(source.id, url):  # a worker process has no poll's binding of its own
        content = decoded(content, encodings, max_bytes, source=source.id, url=url)
        feed = parse_feed(content, url=url, headers=headers, source=source.id, limits=limits)
        entries = feed.entries[:max_entries]
        pairs, skipped, cuts = adapt_entries(
            entries, source, fetched_at, max_title_bytes=limits.title_bytes
        )
    if feed.problems and entries and not pairs:
        # Broken markup that salvaged nothing usable is a broken feed, not an empty one.
        raise ParseError(
            f"malformed feed, no usable entry: {feed.problems[0]}", source=source.id, url=url
        )
    return Normalized(pairs, skipped, feed.problems + tuple(cuts), len(feed.entries))


def init_worker(log_level: str, log_format: log.LogFormat = "text") -> None:
    """Set up a parse-pool worker: our log format, and Ctrl-C left to the parent.

    SIGINT reaches the whole process group; the parent shuts the pool down in
    order, so a worker must not die of it mid-task.  (A parent that dies without
    shutting the pool down closes the worker's task pipe, and the worker exits:
    :mod:`aggregator.processes`.)
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log.setup(log_level, log_format)


def warm_up(_: int) -> None:
    """A task that makes a pool start all its workers before the first real poll.

    Starting a worker (a new interpreter importing the parser and the cleaner)
    takes a second or more on a busy machine; inside a poll that second would
    count against the source's lease and interval.  The search fold's tables are
    built here for the same reason.  One of these tasks per worker reaches every
    worker without waiting in it: the pool hands a task to its least-loaded worker
    (:mod:`aggregator.processes`; multiprocessing's shared queue needed each task to
    sleep 0.2 s so that no worker took two).
    """
    fold("")
