"""``aggregator run`` and ``serve``: the daemon and the HTTP service, until a signal."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from aggregator.cli._context import CONTEXT, _reported, _sources_file, app, logger
from aggregator.cli._wiring import (
    _base_url,
    _catalog,
    _http_app,
    _limits,
    _poller,
    _store,
    _use_database_threads,
)

# Imported where used, as everywhere in the CLI (see _context).
if TYPE_CHECKING:
    import asyncio

    from aggregator.scheduler import Daemon
    from aggregator.search import Topic
    from aggregator.serve import SourceCatalog, TopicCatalog
    from aggregator.settings import Settings, SourcesFile
    from aggregator.store import Store
    from aggregator.types import Source


async def _serve_until_signalled(
    settings: Settings,
    sources: Sequence[Source],
    topics: Sequence[Topic],
    store: Store,
    *,
    poll: bool,
) -> None:
    import asyncio
    import signal

    from aggregator.fetch import Fetcher
    from aggregator.scheduler import Daemon
    from aggregator.serve import TopicCatalog, build_server, listen
    from aggregator.workers import parse_pool

    listening = listen(settings.http_host, settings.http_port)  # a port in use: one line
    _use_database_threads(store)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    catalog = _catalog(sources)
    served = TopicCatalog(topics)
    server = build_server(
        _http_app(settings, catalog, served, store), settings.http_host, settings.http_port
    )
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    logger.info("serving feeds on %s/feed.xml", _base_url(settings))
    if settings.base_url is None:
        logger.warning(
            "base_url is not set: feed links point to %s; set base_url (or "
            "AGGREGATOR_BASE_URL) to the public URL, which also fixes the item ids for good",
            _base_url(settings),
        )
    try:
        if poll:
            with parse_pool(settings) as pool:
                async with Fetcher(_limits(settings)) as fetcher:
                    poller = _poller(settings, store, fetcher, pool)
                    daemon = Daemon(settings, sources, store, poller)
                    async with _reloading(settings, stop, catalog, served, daemon):
                        await daemon.run(stop)
        else:
            async with _reloading(settings, stop, catalog, served, None):
                await stop.wait()
    finally:
        server.stop()
        await serving
        listening.close()


@contextlib.asynccontextmanager
async def _reloading(
    settings: Settings,
    stop: asyncio.Event,
    catalog: SourceCatalog,
    topics: TopicCatalog,
    daemon: Daemon | None,
) -> AsyncIterator[None]:
    """Re-read the sources file on SIGHUP and when it changes, for as long as this
    lasts: the daemon polls the new sources, the HTTP service serves their names and
    the new topics."""
    import asyncio
    import signal

    from aggregator.reload import SourcesReloader, topics_to_serve

    async def apply(loaded: SourcesFile) -> None:
        if daemon is not None:
            await daemon.replace_sources(loaded.sources)
        _catalog(loaded.sources, catalog)
        topics.replace(topics_to_serve(topics, loaded))

    reloader = SourcesReloader(settings.sources_file, lambda: _sources_file(settings), apply)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reloader.request)
    watching = asyncio.create_task(reloader.watch(stop, settings.tick_seconds))
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching


@app.command()
def run() -> None:
    """Run the daemon: poll every enabled source on its schedule and serve the feeds.

    Stops cleanly on SIGINT/SIGTERM: in-flight polls finish (bounded by
    shutdown_grace), then the database is closed.
    """
    import asyncio

    with _reported():
        settings = CONTEXT.settings()
        configured = _sources_file(settings)
        topics = configured.every_topic()  # a bad one stops the start, before the database
        with _store(settings) as store:
            asyncio.run(
                _serve_until_signalled(settings, configured.sources, topics, store, poll=True)
            )


@app.command()
def serve() -> None:
    """Serve the feeds, /healthz and /metrics only, without polling (a read-only replica)."""
    import asyncio

    with _reported():
        settings = CONTEXT.settings()
        configured = _sources_file(settings)
        topics = configured.every_topic()  # a bad one stops the start, before the database
        with _store(settings) as store:
            asyncio.run(
                _serve_until_signalled(settings, configured.sources, topics, store, poll=False)
            )
