"""``aggregator run`` and ``serve``: the daemon and the HTTP service, until a signal."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from aggregator.cli._context import CONTEXT, _reported, _sources, app, logger
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
    from aggregator.serve import SourceCatalog
    from aggregator.settings import Settings
    from aggregator.store import Store
    from aggregator.types import Source


async def _serve_until_signalled(
    settings: Settings, sources: Sequence[Source], store: Store, *, poll: bool
) -> None:
    import asyncio
    import signal

    from aggregator.fetch import Fetcher
    from aggregator.scheduler import Daemon
    from aggregator.serve import build_server, listen
    from aggregator.workers import parse_pool

    listening = listen(settings.http_host, settings.http_port)  # a port in use: one line
    _use_database_threads(store)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    catalog = _catalog(sources)
    server = build_server(
        _http_app(settings, catalog, store), settings.http_host, settings.http_port
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
                    async with _reloading(settings, stop, catalog, daemon):
                        await daemon.run(stop)
        else:
            async with _reloading(settings, stop, catalog, None):
                await stop.wait()
    finally:
        server.stop()
        await serving
        listening.close()


@contextlib.asynccontextmanager
async def _reloading(
    settings: Settings, stop: asyncio.Event, catalog: SourceCatalog, daemon: Daemon | None
) -> AsyncIterator[None]:
    """Re-read the sources file on SIGHUP and when it changes, for as long as this lasts."""
    import asyncio
    import signal

    from aggregator.reload import SourcesReloader

    async def apply(sources: Sequence[Source]) -> None:
        if daemon is not None:
            await daemon.replace_sources(sources)
        _catalog(sources, catalog)

    reloader = SourcesReloader(settings.sources_file, lambda: _sources(settings), apply)
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
        sources = _sources(settings)
        with _store(settings) as store:
            asyncio.run(_serve_until_signalled(settings, sources, store, poll=True))


@app.command()
def serve() -> None:
    """Serve the feeds, /healthz and /metrics only, without polling (a read-only replica)."""
    import asyncio

    with _reported():
        settings = CONTEXT.settings()
        sources = _sources(settings)
        with _store(settings) as store:
            asyncio.run(_serve_until_signalled(settings, sources, store, poll=False))
