"""The parts a command builds from the settings: fetch limits, the store, the
database threads, the poller, the feeds' site and the HTTP app.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

# Imported where used, as everywhere in the CLI (see _context).
if TYPE_CHECKING:
    from concurrent.futures import Executor

    from starlette.applications import Starlette

    from aggregator.export.site import FeedSite
    from aggregator.fetch import Fetcher, FetchLimits
    from aggregator.pipeline import Poller
    from aggregator.serve import SourceCatalog, TopicCatalog
    from aggregator.settings import Settings
    from aggregator.store import Store
    from aggregator.types import Source


logger = logging.getLogger(__package__)  # "aggregator.cli", as in _context


def _limits(settings: Settings) -> FetchLimits:
    from aggregator.fetch import FetchLimits

    return FetchLimits(
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        total_timeout=settings.total_timeout,
        max_bytes=settings.max_bytes,
        max_redirects=settings.max_redirects,
        allow_private=settings.allow_private_addresses,
    )


@contextlib.contextmanager
def _store(settings: Settings) -> Iterator[Store]:
    from aggregator.store import Store

    store = Store.open(settings.database_url)
    try:
        yield store
    finally:
        store.close()


def _index_stored(store: Store, executor: Executor | None = None) -> None:
    """Bring the search index up to what the command stored, before it exits, with
    the tokens made on ``executor`` (the command's parse pool) when there is one.

    The index is written behind the writes (``store._search``); the daemon catches
    up between polls, but a one-shot command has no later idle time, and a backlog
    left behind would make every search read the waiting articles one by one.
    """
    import time

    from aggregator.importer import progress_bar
    from aggregator.workers import start_tokens

    backlog = store.search_backlog()
    if not backlog:
        return
    started = time.monotonic()
    done = 0
    with progress_bar(backlog, doing="indexing for search", unit="articles") as advance:
        indexer = store.backlog_indexer(start_tokens(executor))
        while indexed := indexer.step():
            done += indexed
            advance(indexed)
    logger.info("search index: %d articles indexed in %.1f s", done, time.monotonic() - started)


def _use_database_threads(store: Store) -> None:
    """Give the running loop's ``to_thread`` work (the database) a small thread pool.

    asyncio's default pool grows to CPUs + 4 threads; each thread that touches the
    database keeps a SQLite connection with its own page cache and a malloc arena of
    its own, which was a quarter of the daemon's peak memory.  SQLite writes one
    transaction at a time anyway, so two threads (a poll being stored, a claim or a
    poll's end) lose nothing; PostgreSQL writes in parallel and gets a few more.
    The threads started from here on share :data:`heap.ARENAS` malloc arenas.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from aggregator import heap

    heap.limit_arenas()
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=_database_threads(store), thread_name_prefix="database")
    )


def _database_threads(store: Store) -> int:
    from aggregator.store.engine import is_postgresql

    return 4 if is_postgresql(store.engine) else 2


def _poller(
    settings: Settings, store: Store, fetcher: Fetcher, executor: Executor | None
) -> Poller:
    from aggregator.parse import EntryLimits
    from aggregator.pipeline import Poller

    return Poller(
        store,
        fetcher,
        max_entries=settings.max_entries_per_poll,
        limits=EntryLimits(settings.max_entry_bytes, settings.max_title_bytes),
        jitter=settings.jitter,
        backoff_cap=timedelta(seconds=settings.backoff_cap),
        mirror_retry=timedelta(seconds=settings.mirror_retry),
        pages_per_poll=settings.fulltext_pages_per_poll,
        pages_per_host=settings.max_polls_per_host,
        executor=executor,
    )


def _base_url(settings: Settings) -> str:
    host = settings.http_host
    host = f"[{host}]" if ":" in host else host
    return settings.base_url or f"http://{host}:{settings.http_port}"


def _id_authority(settings: Settings, store: Store) -> str:
    """The ``HOST,YEAR`` of item ids: the database's own, kept when ``base_url`` changes.

    The first configured ``base_url`` fixes it.  Without one, the listening address
    (``0.0.0.0`` in a container) is only a stand-in and is not stored.
    """
    from aggregator.export.site import default_id_authority

    derived = default_id_authority(_base_url(settings))
    stored = store.adopt_id_authority(derived if settings.base_url else None)
    return stored or derived


def _catalog(sources: Sequence[Source], catalog: SourceCatalog | None = None) -> SourceCatalog:
    """The sources as the HTTP service shows them (``catalog`` is updated in place)."""
    from aggregator.serve import SourceCatalog

    names = {source.id: source.name for source in sources}
    enabled = [source.id for source in sources if source.enabled]
    if catalog is None:
        return SourceCatalog(names, enabled)
    catalog.replace(names, enabled)
    return catalog


def _feed_site(settings: Settings, sources: Mapping[str, str], store: Store) -> FeedSite:
    """Addresses, names and id authority of the feeds, for the service and the file export."""
    from aggregator.export.site import FeedSite

    return FeedSite(
        base_url=_base_url(settings),
        title=settings.feed_title,
        sources=sources,
        default_limit=settings.feed_limit,
        id_authority=_id_authority(settings, store),
    )


def _http_app(
    settings: Settings, catalog: SourceCatalog, topics: TopicCatalog, store: Store
) -> Starlette:
    from aggregator.serve import create_app

    site = _feed_site(settings, catalog, store)
    return create_app(
        store,
        base_url=site.base_url,
        title=site.title,
        sources=catalog,
        default_limit=site.default_limit,
        max_limit=settings.feed_max_limit,
        id_authority=site.id_authority,
        topics=topics,
        display_timezone=settings.display_timezone,
        feed_token=settings.feed_token.get_secret_value() if settings.feed_token else None,
    )
