"""The command line: the composition root that builds settings, store, fetcher and server.

Nothing imports this module.  Errors are mapped to exit codes in one place:
a configuration problem exits 2 with ``file:key: problem``, any other of our
errors exits 1 with its one-line message; tracebacks are for bugs only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from aggregator import __version__
from aggregator.errors import AggregatorError, ConfigError, RateLimitedError

# What a command needs is imported in the command: `--help` and `sources` would
# otherwise load SQLAlchemy, alembic, httpx, uvicorn, the parser and rich, a second
# of start-up and 90 MB (tests/test_lazy_imports.py keeps it so).
if TYPE_CHECKING:
    import asyncio
    from concurrent.futures import Executor

    from rich.console import Console
    from starlette.applications import Starlette

    from aggregator import archive, health
    from aggregator.export.site import FeedSite
    from aggregator.fetch import Fetcher, FetchLimits
    from aggregator.pipeline import Poller, PollOutcome
    from aggregator.scheduler import Daemon
    from aggregator.serve import SourceCatalog
    from aggregator.settings import Explained, Settings
    from aggregator.store import Store
    from aggregator.types import Source, SourceState

__all__ = ["app", "main"]

logger = logging.getLogger(__name__)


class _LazyConsole:
    """A rich console made on first use: importing rich cost every command, ``--help`` too."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def get(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


console = _LazyConsole(stderr=True)
# Tables and counts only; text meant to be copied or parsed goes through typer.echo,
# which neither reads markup nor wraps long lines.
out = _LazyConsole(highlight=False, markup=False)

app = typer.Typer(
    help="Poll news feeds, normalize and deduplicate their articles, serve merged feeds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Help texts are plain: rich markup would eat "[[source]]" and "[a-z0-9_-]".
    rich_markup_mode=None,
)
db_app = typer.Typer(
    help="Database schema migrations.", no_args_is_help=True, rich_markup_mode=None
)
opml_app = typer.Typer(
    help="Export or import the source list as OPML.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(db_app, name="db")
app.add_typer(opml_app, name="opml")


class LogLevel(StrEnum):
    """The levels ``--log-level`` accepts; any other value is a usage error, not a crash."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class _Context:
    """Settings are loaded lazily so `--help` works even with a broken config."""

    config_file: Path | None = None
    log_level: LogLevel | None = None

    def explained(self) -> Explained:
        from aggregator import log
        from aggregator.settings import Explained, explain_settings, unknown_environment

        explained = explain_settings(self.config_file)
        settings = explained.settings
        if self.log_level:
            settings = settings.model_copy(update={"log_level": self.log_level.value})
            origins = {**explained.origins, "log_level": "command line --log-level"}
            explained = Explained(settings, origins)
        log.setup(settings.log_level, settings.log_format)
        for name in unknown_environment(os.environ):
            logger.warning("unknown environment variable %s is ignored", name)
        return explained

    def settings(self) -> Settings:
        return self.explained().settings


CONTEXT = _Context()

SourceOption = Annotated[
    list[str] | None,
    typer.Option("--source", "-s", help="Only this source (repeatable; default: all)."),
]


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"aggregator {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Settings file (TOML). Default: config/aggregator.toml when present.",
            envvar="AGGREGATOR_CONFIG",
        ),
    ] = None,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(case_sensitive=False, help="Overrides the log_level setting."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    CONTEXT.config_file = config
    CONTEXT.log_level = log_level


def _sources(settings: Settings) -> list[Source]:
    from aggregator.adapters import adapter_names
    from aggregator.settings import load_sources

    return load_sources(settings, adapters=adapter_names())


def _pick(sources: Sequence[Source], wanted: Sequence[str] | None) -> list[Source]:
    if not wanted:
        return list(sources)
    known = {source.id: source for source in sources}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(
            f"unknown source {', '.join(map(repr, unknown))} (known: {', '.join(known)})",
            key="--source",
        )
    return [known[name] for name in wanted]


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


def _use_database_threads(store: Store) -> None:
    """Give the running loop's ``to_thread`` work (the database) a small thread pool.

    asyncio's default pool grows to CPUs + 4 threads; each thread that touches the
    database keeps a SQLite connection with its own page cache and a malloc arena of
    its own, which was a quarter of the daemon's peak memory.  SQLite writes one
    transaction at a time anyway, so two threads (a poll being stored, a claim or a
    poll's end) lose nothing; PostgreSQL writes in parallel and gets a few more.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=_database_threads(store), thread_name_prefix="database")
    )


def _database_threads(store: Store) -> int:
    from aggregator.store.engine import is_postgresql

    return 4 if is_postgresql(store.engine) else 2


def _poller(
    settings: Settings, store: Store, fetcher: Fetcher, executor: Executor | None
) -> Poller:
    from aggregator.pipeline import Poller

    return Poller(
        store,
        fetcher,
        max_entries=settings.max_entries_per_poll,
        jitter=settings.jitter,
        backoff_cap=timedelta(seconds=settings.backoff_cap),
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


def _http_app(settings: Settings, catalog: SourceCatalog, store: Store) -> Starlette:
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
    )


def _fail(error: AggregatorError) -> NoReturn:
    from rich.text import Text

    # The message is text, not markup: a title or URL with brackets keeps them.
    console.print(
        Text.assemble(("error:", "bold red"), f" {error}"), highlight=False, soft_wrap=True
    )
    raise typer.Exit(2 if isinstance(error, ConfigError) else 1)


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """Our errors become one line and an exit code; other exceptions are bugs: traceback."""
    try:
        yield
    except AggregatorError as error:
        _fail(error)


# --------------------------------------------------------------------------- run / serve


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


# --------------------------------------------------------------------------- poll


async def _poll_once(
    settings: Settings, sources: Sequence[Source], store: Store
) -> list[PollOutcome]:
    import asyncio

    from aggregator.fetch import Fetcher
    from aggregator.scheduler import HostSlots, sync_sources
    from aggregator.workers import parse_pool

    _use_database_threads(store)
    await sync_sources(store, sources)
    limit = asyncio.Semaphore(settings.max_concurrent_polls)
    hosts = HostSlots(settings.max_polls_per_host)
    # The pool starts only if the polls bring enough entries to be worth it.
    with parse_pool(settings) as executor:
        async with Fetcher(_limits(settings)) as fetcher:
            poller = _poller(settings, store, fetcher, executor)

            async def one(source: Source) -> PollOutcome:
                # The host's slot first: waiting for it must not hold one of `limit`.
                async with hosts.hold(source.url), limit:
                    return await poller.poll(source)

            return list(await asyncio.gather(*(one(source) for source in sources)))


@app.command()
def poll(
    source: SourceOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Also poll sources a server asked to wait (Retry-After), disabled by "
            "HTTP 410, or with enabled = false.",
        ),
    ] = False,
    due: Annotated[
        bool,
        typer.Option("--due", help="Only sources whose next poll time has come (for cron)."),
    ] = False,
) -> None:
    """Poll once, now, and print a summary.

    Sources a server asked to wait (Retry-After) or disabled (HTTP 410) are skipped
    unless --force.  Exits non-zero only when every polled source failed; a skipped
    source is not a failure.
    """
    import asyncio

    from rich.table import Table

    from aggregator import health
    from aggregator.scheduler import sync_sources
    from aggregator.types import SourceState

    now = datetime.now(UTC)
    with _reported():
        settings = CONTEXT.settings()
        chosen = _pick(_sources(settings), source)
        with _store(settings) as store:
            # First: a source whose URL was edited starts afresh, not skipped as disabled.
            asyncio.run(sync_sources(store, chosen))
            states = {state.source_id: state for state in store.states()}
            skipped = {
                item.id: reason
                for item in chosen
                if (reason := _why_not_poll(item, states.get(item.id), now, force=force, due=due))
            }
            polled = [item for item in chosen if item.id not in skipped]
            if force:
                _lift_disabled(store, [states[item.id] for item in polled if item.id in states])
            outcomes = asyncio.run(_poll_once(settings, polled, store)) if polled else []
    table = Table("source", "status", "new", "updated", "unchanged", "time", "problem")
    by_id = {outcome.source_id: outcome for outcome in outcomes}
    for item in chosen:
        outcome = by_id.get(item.id)
        if outcome is None:
            table.add_row(item.id, "skipped", "", "", "", "", skipped.get(item.id, ""))
            continue
        counts = outcome.counts
        state = states.get(item.id) or SourceState.fresh(item)
        problem = health.cause_first(str(outcome.error), state) if outcome.error else ""
        table.add_row(
            item.id,
            outcome.status,
            str(counts.new),
            str(counts.updated),
            str(counts.unchanged + counts.merged),
            f"{outcome.duration:.2f}s",
            problem,
        )
    out.print(table)
    if outcomes and all(outcome.failed for outcome in outcomes):
        raise typer.Exit(1)


def _why_not_poll(
    source: Source, state: SourceState | None, now: datetime, *, force: bool, due: bool
) -> str | None:
    """Why a one-shot poll leaves ``source`` alone (``None``: poll it).

    The daemon honours a server's Retry-After and a 410 through the stored next poll
    time and disabled flag; a cron-driven ``poll`` must too, or it hammers a server
    that asked it to wait.
    """
    next_poll = state.next_poll if state is not None else None
    until = f"{next_poll:%Y-%m-%d %H:%M} UTC" if next_poll is not None and next_poll > now else None
    if not force:
        if not source.enabled:
            return "enabled = false (--force polls it)"
        if state is not None and state.disabled_reason:
            return f"disabled: {state.disabled_reason} (--force polls it)"
        if until and state is not None and state.last_error_kind == RateLimitedError.kind:
            return f"server asked to wait until {until} (Retry-After)"
    if due and until:
        return f"not due until {until}"
    return None


def _lift_disabled(store: Store, states: Sequence[SourceState]) -> None:
    """A forced poll of a source disabled by a 410 tries it again; a success re-enables it."""
    store.finish_polls(
        [(replace(state, disabled_reason=None), None) for state in states if state.disabled_reason]
    )


# --------------------------------------------------------------------------- status


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = int((now - moment).total_seconds())
    suffix = "ago" if seconds >= 0 else "from now"
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} {suffix}"
    return f"{seconds}s {suffix}"


@app.command()
def sources(
    wide: Annotated[
        bool, typer.Option("--wide", help="Every column on one line per source, unwrapped.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
) -> None:
    """List every source with its polling state, article count and what is wrong.

    Fits 80 columns (the problem wraps); --wide adds name, URL and failure count.
    """
    from rich.console import Console
    from rich.table import Table

    from aggregator import health

    with _reported():
        settings = CONTEXT.settings()
        configured = _sources(settings)
        with _store(settings) as store:
            states = {state.source_id: state for state in store.states()}
            counts = store.article_counts()
    enabled = {source.id for source in configured if source.enabled}
    problems = {item.source_id: item for item in health.failing(states.values(), enabled)}
    now = datetime.now(UTC)
    if as_json:
        rows = [
            _source_json(source, states.get(source.id), problems.get(source.id), counts)
            for source in configured
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("source", "articles", "last success", "next poll", "problem")
    if wide:
        table = Table(
            "source", "name", "url", "articles", "last success", "next poll", "failures", "problem"
        )
    for source in configured:
        state = states.get(source.id)
        problem = problems.get(source.id)
        if not source.enabled:
            note = "not polled (enabled = false)"
        elif problem is not None:
            when = f"failing since {_ago(problem.since, now)}" if problem.since else "failing"
            note = f"{when}: {problem.message}"
        else:
            note = ""
        row = [
            str(counts.get(source.id, 0)),
            _ago(state.last_success if state else None, now),
            _ago(state.next_poll if state else None, now) if source.enabled else "-",
        ]
        if wide:
            failures = str(state.consecutive_failures if state else 0)
            table.add_row(source.id, source.name, source.url, *row, failures, note)
        else:
            table.add_row(source.id, *row, note)
    (Console(highlight=False, markup=False, width=10_000) if wide else out).print(table)


def _source_json(
    source: Source,
    state: SourceState | None,
    problem: health.Failing | None,
    counts: Mapping[str, int],
) -> dict[str, object]:
    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "id": source.id,
        "name": source.name,
        "url": source.url,
        "enabled": source.enabled,
        "articles": counts.get(source.id, 0),
        "last_success": iso(state.last_success if state else None),
        "next_poll": iso(state.next_poll if state else None),
        "consecutive_failures": state.consecutive_failures if state else 0,
        "failing": problem is not None,
        "failing_since": iso(problem.since if problem else None),
        "problem": problem.message if problem else None,
        "error_kind": problem.kind if problem else None,
        "disabled": state.disabled_reason if state else None,
    }


@app.command("config")
def show_config() -> None:
    """Print the effective settings as TOML, each with where it came from.

    The output is a valid settings file (secrets masked); a setting left unset
    is a comment.
    """
    import tomli_w

    with _reported():
        explained = CONTEXT.explained()
    values = explained.settings.model_dump(mode="json")
    values["database_url"] = _masked_database_url(values["database_url"])
    for name, value in values.items():
        origin = explained.origins[name]
        if value is None:
            typer.echo(f"# {name} is not set  # {origin}")
        else:
            typer.echo(f"{tomli_w.dumps({name: value}).rstrip()}  # {origin}")


def _masked_database_url(url: str) -> str:
    """The database URL with its password as ``***`` (it goes to terminals and tickets)."""
    from sqlalchemy.exc import ArgumentError

    from aggregator.store.engine import parse_url

    try:
        return parse_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "***"  # not a URL SQLAlchemy reads; it may still hold a secret


# --------------------------------------------------------------------------- export / import


class ExportFormat(StrEnum):
    rss = "rss"
    atom = "atom"
    json = "json"
    jekyll = "jekyll"


@app.command()
def export(
    format: Annotated[ExportFormat, typer.Option("--format", "-f", help="Output format.")],
    source: SourceOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest N articles (feeds).")] = 50,
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="File (feeds) or folder (jekyll). Feeds go to stdout without it."
        ),
    ] = None,
) -> None:
    """Write the merged (or per-source) feed as a file, or the seed-format archive (jekyll)."""
    from aggregator.export.feeds import FORMATS
    from aggregator.export.site import FEED_PATHS

    with _reported():
        settings = CONTEXT.settings()
        chosen = _pick(_sources(settings), source) if source else None
        ids = [item.id for item in chosen] if chosen else None
        with _store(settings) as store:
            if format is ExportFormat.jekyll:
                if out_path is None:
                    raise ConfigError("jekyll export needs --out FOLDER", key="--out")
                written = _export_jekyll(store, ids, out_path)
                console.print(f"{written.written} written, {written.unchanged} unchanged")
                return
            rows = store.latest(sources=ids, limit=limit + 1)
            items = rows[:limit]
            # A snapshot of the first page; its next link continues on the HTTP service.
            meta = _feed_site(
                settings, {item.id: item.name for item in _sources(settings)}, store
            ).meta(
                FEED_PATHS[format.value],
                ids or [],
                limit,
                updated=store.last_updated(ids),
                next_page=items[-1].cursor if len(rows) > limit else None,
            )
            payload = FORMATS[format.value].render(meta, items)
    if out_path is None:
        sys.stdout.buffer.write(payload)
    else:
        out_path.write_bytes(payload)


def _export_jekyll(store: Store, ids: list[str] | None, folder: Path) -> archive.WriteCounts:
    """Walk the whole store newest-first, page by page, so memory stays flat."""
    from aggregator import archive

    total = archive.WriteCounts()
    cursor = None
    while True:
        page = store.latest(sources=ids, limit=500, before=cursor)
        if not page:
            return total
        counts = archive.write_archive((stored.article for stored in page), folder)
        total = archive.WriteCounts(
            total.written + counts.written, total.unchanged + counts.unchanged
        )
        cursor = page[-1].cursor


def _archive_files(paths: Sequence[Path]) -> list[Path]:
    """The files named and those under the folders named; a path that is neither stays,
    so that reading it reports it like any unreadable file."""
    files = {path for path in paths if not path.is_dir()}
    files.update(file for path in paths if path.is_dir() for file in path.rglob("*"))
    return sorted(file for file in files if file.is_file() or not file.exists())


def _say(line: str) -> None:
    """One plain line on stderr: never wrapped, brackets kept (no markup)."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Archive files or folders of them.")],
    source: Annotated[
        str | None,
        typer.Option("--source", "-s", help="Source id for every file (default: by author/site)."),
    ] = None,
    restore: Annotated[
        bool, typer.Option("--restore", help="Store again articles that were pruned earlier.")
    ] = False,
) -> None:
    """Import seed-format archive files into the database, deduplicated (twice adds nothing).

    Each file becomes new, updated, already stored, a duplicate of another file of the
    same import, or skipped (unreadable, or rejected by its source's adapter: printed
    with the reason, one line per file); the summary's counts add up to the files.
    """
    from aggregator import importer
    from aggregator.workers import parse_pool

    files = _archive_files(paths)
    with _reported():
        settings = CONTEXT.settings()
        configured = _sources(settings)
        forced = _pick(configured, [source])[0] if source else None
        with (
            _store(settings) as store,
            parse_pool(settings) as pool,
            importer.progress_bar(len(files)) as advance,
        ):
            imported = importer.import_files(
                files,
                store,
                pool,
                sources=configured,
                forced=forced,
                restore=restore,
                skipped=lambda line: _say(f"skipped {line}"),
                progress=advance,
            )
    counts, skipped = imported.counts, imported.skipped
    held = counts.tombstoned  # part of the store's skipped count: not duplicates
    out.print(
        f"{len(files)} files: {counts.new} new, {counts.updated} updated, "
        f"{counts.unchanged + counts.merged} already stored, "
        f"{counts.skipped - held} duplicates, {skipped} skipped"
        + (f", {held} not restored (pruned earlier; --restore brings them back)" if held else "")
    )
    if files and skipped == len(files):
        raise typer.Exit(1)


@app.command()
def renormalize(
    source: SourceOption = None,
) -> None:
    """Re-run the (improved) adapters over the stored raw entries, without refetching.

    An entry its adapter now rejects (or crashes on) keeps its stored article and is
    counted, as a poll would skip it; the others are rewritten.
    """
    from collections import defaultdict

    from aggregator.errors import AdapterError
    from aggregator.normalize import normalize_entries
    from aggregator.types import Article, RawEntry

    with _reported():
        settings = CONTEXT.settings()
        chosen = {item.id: item for item in _pick(_sources(settings), source)}
        skipped = 0
        with _store(settings) as store:
            stored: defaultdict[str, list[tuple[RawEntry, datetime]]] = defaultdict(list)
            for source_id, entry, fetched in store.iter_raw(sorted(chosen)):
                if source_id in chosen:
                    stored[source_id].append((entry, fetched))
            for source_id, entries in stored.items():
                pairs: list[tuple[RawEntry, Article]] = []
                for entry, result in normalize_entries(entries, chosen[source_id]):
                    if isinstance(result, AdapterError):
                        skipped += 1
                        logger.warning("renormalize skipped an entry: %s", result)
                    else:
                        pairs.append((entry, result))
                counts = store.replace_articles(chosen[source_id], pairs)
                out.print(f"{source_id}: {counts.updated} updated, {counts.unchanged} unchanged")
    if skipped:
        out.print(f"{skipped} entries skipped (see log)")


@app.command()
def prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what would go; delete nothing.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also list every article pruned.")
    ] = False,
) -> None:
    """Delete articles past their retention (off unless retention_days is set), keeping
    tombstones so they do not come back; prints what went and what stayed per source."""
    with _reported():
        settings = CONTEXT.settings()
        per_source = {item.id: item.retention for item in _sources(settings) if item.retention}
        if settings.retention is None and not per_source:
            out.print("retention is off (retention_days is not set): nothing is pruned")
            return
        with _store(settings) as store:
            report = store.prune(
                now=datetime.now(UTC),
                default_retention=settings.retention,
                per_source=per_source,
                dry_run=dry_run,
            )
    verb = "would prune" if dry_run else "pruned"
    for summary in report.sources:
        out.print(summary.describe(dry_run=dry_run), markup=False)
    if verbose:
        for stored in report.articles:
            article = stored.article
            when = article.sort_time
            line = f"{verb} {article.source_id} {when:%Y-%m-%d} {article.link} {article.title}"
            out.print(line, markup=False)
    out.print(f"{verb} {report.pruned} articles")


# --------------------------------------------------------------------------- db, opml


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations (also done at daemon start)."""
    with _reported():
        settings = CONTEXT.settings()
        with _store(settings):
            pass
    out.print("database is up to date")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the database."""
    from aggregator.store import Store

    with _reported():
        settings = CONTEXT.settings()
        store = Store.open(settings.database_url, migrate=False)
        try:
            out.print(store.current_revision() or "empty (no migrations applied)")
        finally:
            store.close()


@opml_app.command("export")
def opml_export(
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="File; stdout without it.")
    ] = None,
) -> None:
    """Write the configured sources as OPML 2.0."""
    from aggregator import opml

    with _reported():
        settings = CONTEXT.settings()
        payload = opml.export_opml(_sources(settings), title=settings.feed_title)
    if out_path is None:
        sys.stdout.buffer.write(payload)
    else:
        out_path.write_bytes(payload)


@opml_app.command("import")
def opml_import(
    path: Annotated[Path, typer.Argument(help="An OPML file.")],
) -> None:
    """Print the [[source]] tables for an OPML file's feeds, to append to the sources file."""
    from aggregator import opml
    from aggregator.settings import sources_to_toml

    with _reported():
        settings = CONTEXT.settings()
        known = {source.url for source in _sources(settings)}
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from exc
        imported = opml.parse_opml(data, file=str(path))
    fresh = [item for item in imported if item.url not in known]
    typer.echo(sources_to_toml(fresh), nl=False)
    console.print(f"{len(fresh)} new sources ({len(imported) - len(fresh)} already configured)")


def main() -> None:
    app()
