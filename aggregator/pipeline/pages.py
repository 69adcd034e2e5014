"""Full text: the article pages of a poll, fetched in the background after it is stored.

The poll's own work ends when its summaries are stored; the pages come later, each
upgrading its article when it arrives, so a slow article site never holds up the feed.
The :class:`PageFetcher` owns what outlives one poll: the per-host page semaphores,
the pages in flight (a page still being fetched is not started twice by the next poll)
and their tasks (what ``aggregator poll`` waits for before it exits).  It borrows the
poller's fetcher, store and CPU offload, so pages share the feeds' connection limits,
database and parse pool.

Imports from the package: ``fetch``, ``fulltext``, ``normalize``, ``store``, ``errors``,
``types``; never the poller beside it (:mod:`aggregator.pipeline`), which owns it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from aggregator import fulltext
from aggregator.errors import (
    AdapterError,
    BlockedURLError,
    GoneError,
    HTTPStatusError,
    RateLimitedError,
    ResponseTooLargeError,
    SourceError,
    StorageError,
)
from aggregator.fetch import Fetcher
from aggregator.normalize import Normalized
from aggregator.store import Store
from aggregator.types import Article, Page, RawEntry, Source

__all__ = ["PageFetcher", "PageJob"]

logger = logging.getLogger(__name__)

#: Runs CPU-bound, picklable work off the event loop (the poller's, in its pool if any).
Offload = Callable[[Callable[[], str | None]], Awaitable[str | None]]


@dataclass(frozen=True)
class PageJob:
    """An article page to fetch: the entry, its article's link and first-fetched
    time, and the page stored before (its validators make the fetch conditional)."""

    raw: RawEntry
    link: str
    fetched: datetime
    page: Page | None


def _permanent(error: SourceError) -> bool:
    """Is a failed page fetch not worth retrying (the page is not coming back)?"""
    if isinstance(error, GoneError | BlockedURLError | ResponseTooLargeError):
        return True
    if isinstance(error, RateLimitedError):
        return False
    return isinstance(error, HTTPStatusError) and 400 <= error.status < 500 and error.status != 408


class PageFetcher:
    """Fetches the article pages of full-text sources and stores their upgrades.

    ``per_poll``: pages one poll may start (the rest wait for the next poll);
    ``per_host``: page fetches in flight at once per article host.
    """

    def __init__(
        self, store: Store, fetcher: Fetcher, cpu: Offload, *, per_poll: int, per_host: int
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.per_poll = per_poll
        self._cpu = cpu
        self._hosts: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(per_host)
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: set[tuple[str, str]] = set()  # (source id, link) in flight

    def with_pages(
        self, source: Source, normalized: Normalized, now: datetime
    ) -> tuple[Normalized, list[PageJob]]:
        """The poll's articles with stored pages applied, and the pages to fetch.

        Runs in a thread (text measuring, one read, re-adapting stored pages).  An
        entry whose page is stored gets its page body now, so a re-poll never puts
        the summary back; an entry whose page failed for good keeps its summary.
        """
        pairs = list(normalized.pairs)
        wanted = [
            i for i, (raw, _) in enumerate(pairs) if fulltext.wants_page(raw, source.fulltext)
        ]
        if not wanted:
            return normalized, []
        stored = self.store.pages_for(source.id, [pairs[i][1].link for i in wanted])
        jobs = []
        for i in wanted:
            raw, article = pairs[i]
            fetched = article.fetched or now
            page = stored.get(article.link)
            if page is not None and page.failure is not None:
                continue
            if page is not None and page.main is not None:
                try:
                    pairs[i] = (
                        raw,
                        fulltext.page_article(raw, page.main, source=source, fetched_at=fetched),
                    )
                except AdapterError as exc:
                    logger.warning("stored page not usable: %s", exc)
                if page.entry_updated == raw.updated:
                    continue
            jobs.append(PageJob(raw, article.link, fetched, page))
        return dataclasses.replace(normalized, pairs=pairs), jobs

    def start(self, source: Source, jobs: list[PageJob]) -> None:
        """Fetch up to ``per_poll`` pages in the background; the rest wait for the
        next poll (they are still summaries then, so still wanted)."""
        started = 0
        for job in jobs:
            key = (source.id, job.link)
            if key in self._pending:
                continue
            if started == self.per_poll:
                logger.info("%d article pages left for the next poll", len(jobs) - started)
                break
            started += 1
            self._pending.add(key)
            task = asyncio.create_task(self._upgrade(source, job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the page fetches started so far (one-shot
        polls: the process is about to end)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def _upgrade(self, source: Source, job: PageJob) -> None:
        """Fetch one article page and store the article with its main content."""
        try:
            page = await self._fetch(source, job)
            if page is None:
                return
            upgraded: list[tuple[RawEntry, Article]] = []
            if page.main is not None:
                try:
                    upgraded.append(
                        (
                            job.raw,
                            fulltext.page_article(
                                job.raw, page.main, source=source, fetched_at=job.fetched
                            ),
                        )
                    )
                except AdapterError as exc:
                    page = dataclasses.replace(page, failure=f"page not usable: {exc}"[:500])
            await asyncio.to_thread(self.store.save_page, source, job.link, page, upgraded)
        except StorageError as exc:
            logger.error("page %s not stored: %s", job.link, exc)
        except Exception:  # a bug met on a hostile page must not end the daemon's loop
            logger.exception("page %s: fetch crashed", job.link)
        finally:
            self._pending.discard((source.id, job.link))

    async def _fetch(self, source: Source, job: PageJob) -> Page | None:
        """The page as it is to be stored; ``None`` after a failure worth retrying."""
        old = job.page if job.page is not None and job.page.html is not None else None
        try:
            async with self._hosts[(urlsplit(job.link).hostname or "").lower()]:
                result = await self.fetcher.fetch_page(
                    job.link,
                    source=source,
                    etag=old.etag if old else None,
                    last_modified=old.last_modified if old else None,
                )
        except SourceError as exc:
            if not _permanent(exc):
                logger.info("page fetch failed, retried next poll: %s", exc)
                return None
            logger.warning("page fetch failed for good: %s", exc)
            return Page(job.link, failure=str(exc)[:500], entry_updated=job.raw.updated)
        if result.not_modified and old is not None:
            html = old.html or ""
        else:
            html = fulltext.decode_page(result.content or b"", result.headers)
        main = await self._cpu(
            functools.partial(fulltext.extract_main, html, url=result.url, adapter=source.adapter)
        )
        return Page(
            job.link,
            html=html,
            main=main,
            etag=result.etag,
            last_modified=result.last_modified,
            entry_updated=job.raw.updated,
            failure=None if main is not None else "no main content found on the page",
        )
