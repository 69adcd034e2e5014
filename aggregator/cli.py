"""The command line: the composition root that builds settings, store, fetcher and server.

Nothing imports this module.  Errors are mapped to exit codes in one place:
a configuration problem exits 2 with ``file:key: problem``, any other of our
errors exits 1 with its one-line message; tracebacks are for bugs only.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import multiprocessing
import os
import signal
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn
from urllib.parse import urlencode, urlsplit

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from starlette.applications import Starlette

from aggregator import archive, log, opml
from aggregator.adapters import adapter_names, get_adapter
from aggregator.errors import (
    AdapterError,
    AggregatorError,
    ArchiveError,
    ConfigError,
    QueryError,
)
from aggregator.export.feeds import FORMATS, FeedMeta, encode_cursor
from aggregator.fetch import Fetcher, FetchLimits
from aggregator.normalize import init_worker, warm_up
from aggregator.pipeline import Poller, PollOutcome
from aggregator.scheduler import Daemon, host_of, sync_sources
from aggregator.search import Topic, parse_query
from aggregator.serve import FEED_PATHS, build_server, create_app
from aggregator.settings import (
    Settings,
    load_settings,
    load_sources,
    load_topics,
    sources_to_toml,
)
from aggregator.store import Store
from aggregator.store.engine import is_postgresql
from aggregator.types import Article, RawEntry, Source, StoredArticle

__all__ = ["app", "main"]

logger = logging.getLogger(__name__)
console = Console(stderr=True)
out = Console(highlight=False)

app = typer.Typer(
    help="Poll news feeds, normalize and deduplicate their articles, serve merged feeds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
opml_app = typer.Typer(help="Export or import the source list as OPML.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(opml_app, name="opml")


class _Context:
    """Settings are loaded lazily so `--help` works even with a broken config."""

    config_file: Path | None = None
    log_level: str | None = None

    def settings(self) -> Settings:
        settings = load_settings(self.config_file)
        if self.log_level:
            settings = settings.model_copy(update={"log_level": self.log_level.upper()})
        log.setup(settings.log_level)
        return settings


CONTEXT = _Context()

SourceOption = Annotated[
    list[str] | None,
    typer.Option("--source", "-s", help="Only this source (repeatable; default: all)."),
]


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
        str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR (overrides settings).")
    ] = None,
) -> None:
    CONTEXT.config_file = config
    CONTEXT.log_level = log_level


def _sources(settings: Settings) -> list[Source]:
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
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=_database_threads(store), thread_name_prefix="database")
    )


def _database_threads(store: Store) -> int:
    return 4 if is_postgresql(store.engine) else 2


@contextlib.contextmanager
def _parse_pool(settings: Settings) -> Iterator[Executor]:
    """Processes for the CPU-bound parse-and-clean step, or one thread of our own.

    Spawned, not forked: the daemon has threads (database, HTTP) by then, and a
    fork copies their locks in whatever state they are.  Without processes, parsing
    gets its own thread rather than the database's: it would hold those threads
    while claims and stores waited.
    """
    workers = settings.parse_processes
    if workers < 0:
        workers = os.cpu_count() or 1
        workers = workers if workers > 1 else 0
    if workers == 0:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse") as thread:
            yield thread
        return
    _keep_main_out_of_workers()
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(settings.log_level,),
    )
    try:
        list(pool.map(warm_up, range(workers)))
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _keep_main_out_of_workers() -> None:
    """Spare each spawned parse worker a run of the daemon's main module.

    ``spawn`` re-imports the parent's ``__main__`` in every child: by module name
    when it has one, by path otherwise.  The console script pip writes has no name,
    so every worker ran it and imported the whole CLI (SQLAlchemy, uvicorn, alembic:
    90 MB per idle worker instead of 27 MB).  Named as ``python -m aggregator``'s main,
    which ``spawn`` never re-imports, it stays out; the workers' tasks and
    initializer live in :mod:`aggregator.normalize` and never need it.
    """
    main = sys.modules["__main__"]
    main.__spec__ = importlib.util.find_spec("aggregator.__main__")


def _poller(
    settings: Settings, store: Store, fetcher: Fetcher, executor: Executor | None
) -> Poller:
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


def _http_app(settings: Settings, sources: Sequence[Source], store: Store) -> Starlette:
    return create_app(
        store,
        base_url=_base_url(settings),
        title=settings.feed_title,
        sources={source.id: source.name for source in sources},
        default_limit=settings.feed_limit,
        max_limit=settings.feed_max_limit,
        topics=load_topics(settings, sources),
        display_timezone=settings.display_timezone,
        feed_token=settings.feed_token.get_secret_value() if settings.feed_token else None,
    )


def _fail(error: AggregatorError) -> NoReturn:
    console.print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
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
    _use_database_threads(store)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = build_server(
        _http_app(settings, sources, store), settings.http_host, settings.http_port
    )
    serving = asyncio.create_task(server.serve())
    logger.info("serving feeds on %s/feed.xml", _base_url(settings))
    try:
        if poll:
            with _parse_pool(settings) as pool:
                async with Fetcher(_limits(settings)) as fetcher:
                    poller = _poller(settings, store, fetcher, pool)
                    await Daemon(settings, sources, store, poller).run(stop)
        else:
            await stop.wait()
    finally:
        server.stop()
        await serving


@app.command()
def run() -> None:
    """Run the daemon: poll every enabled source on its schedule and serve the feeds.

    Stops cleanly on SIGINT/SIGTERM: in-flight polls finish (bounded by
    shutdown_grace), then the database is closed.
    """
    with _reported():
        settings = CONTEXT.settings()
        sources = _sources(settings)
        with _store(settings) as store:
            asyncio.run(_serve_until_signalled(settings, sources, store, poll=True))


@app.command()
def serve() -> None:
    """Serve the feeds, /healthz and /metrics only, without polling (a read-only replica)."""
    with _reported():
        settings = CONTEXT.settings()
        sources = _sources(settings)
        with _store(settings) as store:
            asyncio.run(_serve_until_signalled(settings, sources, store, poll=False))


# --------------------------------------------------------------------------- poll


async def _poll_once(
    settings: Settings, sources: Sequence[Source], store: Store
) -> list[PollOutcome]:
    _use_database_threads(store)
    await sync_sources(store, sources)
    limit = asyncio.Semaphore(settings.max_concurrent_polls)
    per_host: defaultdict[str, asyncio.Semaphore] = defaultdict(
        lambda: asyncio.Semaphore(settings.max_polls_per_host)
    )
    # One-shot polls of a few feeds would spend longer starting a pool than using it.
    pool = _parse_pool(settings) if len(sources) > 4 else contextlib.nullcontext()
    with pool as executor:
        async with Fetcher(_limits(settings)) as fetcher:
            poller = _poller(settings, store, fetcher, executor)

            async def one(source: Source) -> PollOutcome:
                # The host's slot first: waiting for it must not hold one of `limit`.
                async with per_host[host_of(source.url)], limit:
                    return await poller.poll(source)

            return list(await asyncio.gather(*(one(source) for source in sources)))


@app.command()
def poll(
    source: SourceOption = None,
) -> None:
    """Poll once, now, and print a summary. Exits non-zero only when every polled source failed."""
    with _reported():
        settings = CONTEXT.settings()
        chosen = _pick(_sources(settings), source)
        with _store(settings) as store:
            outcomes = asyncio.run(_poll_once(settings, chosen, store))
    table = Table(
        "source", "status", "new", "updated", "unchanged", "merged", "skipped", "time", "error"
    )
    for outcome in outcomes:
        counts = outcome.counts
        table.add_row(
            outcome.source_id,
            outcome.status,
            str(counts.new),
            str(counts.updated),
            str(counts.unchanged),
            str(counts.merged),
            str(counts.skipped),
            f"{outcome.duration:.2f}s",
            str(outcome.error or ""),
        )
    out.print(table)
    if outcomes and all(outcome.failed for outcome in outcomes):
        raise typer.Exit(1)


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
def sources() -> None:
    """List every source with its polling state and article count."""
    with _reported():
        settings = CONTEXT.settings()
        configured = _sources(settings)
        with _store(settings) as store:
            states = {state.source_id: state for state in store.states()}
            counts = store.article_counts()
    now = datetime.now(UTC)
    table = Table(
        "id", "name", "enabled", "last success", "failures", "last error", "next poll", "articles"
    )
    for source in configured:
        state = states.get(source.id)
        problem = ""
        if state and state.disabled_reason:
            problem = f"DISABLED: {state.disabled_reason}"
        elif state and state.last_error:
            problem = f"{state.last_error_kind}: {state.last_error}"
        table.add_row(
            source.id,
            source.name,
            "yes" if source.enabled else "no",
            _ago(state.last_success if state else None, now),
            str(state.consecutive_failures if state else 0),
            problem[:80],
            _ago(state.next_poll if state else None, now) if source.enabled else "-",
            str(counts.get(source.id, 0)),
        )
    out.print(table)


@app.command("config")
def show_config() -> None:
    """Print the effective settings (file + environment + defaults)."""
    with _reported():
        settings = CONTEXT.settings()
    for name, value in settings.model_dump().items():
        out.print(f"{name} = {value!r}")


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
    topic: Annotated[
        str | None, typer.Option("--topic", "-t", help="A [[topic]] id: its matching articles.")
    ] = None,
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="File (feeds) or folder (jekyll). Feeds go to stdout without it."
        ),
    ] = None,
) -> None:
    """Write the merged (or per-source) feed as a file, or the seed-format archive (jekyll)."""
    with _reported():
        settings = CONTEXT.settings()
        configured = _sources(settings)
        chosen = _pick(configured, source) if source else None
        ids = [item.id for item in chosen] if chosen else None
        picked = _topic(settings, configured, topic) if topic else None
        if picked is not None and ids is None and picked.sources is not None:
            ids = list(picked.sources)
        with _store(settings) as store:
            if picked is not None:
                items = store.search(picked.query, sources=ids, limit=limit)
                meta = _export_meta(settings, format.value, ids or [], limit, items, store)
                payload = FORMATS[format.value].render(meta, items)
            elif format is ExportFormat.jekyll:
                if out_path is None:
                    raise ConfigError("jekyll export needs --out FOLDER", key="--out")
                written = _export_jekyll(store, ids, out_path)
                console.print(f"{written.written} written, {written.unchanged} unchanged")
                return
            else:
                items = store.latest(sources=ids, limit=limit)
                meta = _export_meta(settings, format.value, ids or [], limit, items, store)
                payload = FORMATS[format.value].render(meta, items)
    if out_path is None:
        sys.stdout.buffer.write(payload)
    else:
        out_path.write_bytes(payload)


def _topic(settings: Settings, sources: Sequence[Source], topic_id: str) -> Topic:
    for topic in load_topics(settings, sources):
        if topic.id == topic_id:
            return topic
    raise ConfigError(f"no [[topic]] with id {topic_id!r}", key="--topic")


@app.command()
def search(
    query: Annotated[
        str, typer.Argument(help='Terms (all must match), "phrase", -excluded, a OR b.')
    ],
    source: SourceOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest N matches.")] = 20,
) -> None:
    """Print the newest articles matching QUERY: date, sources, title and link."""
    with _reported():
        settings = CONTEXT.settings()
        chosen = _pick(_sources(settings), source) if source else None
        try:
            parsed = parse_query(query)
        except QueryError as exc:
            raise ConfigError(exc.message, key="QUERY") from exc
        with _store(settings) as store:
            found = store.search(
                parsed, sources=[s.id for s in chosen] if chosen else None, limit=limit
            )
    for stored in found:
        names = ", ".join(dict.fromkeys(route.source_name for route in stored.provenance))
        moment = stored.cursor.sort_time
        out.print(f"{moment:%Y-%m-%d %H:%M}  {names}  {stored.article.title}", highlight=False)
        out.print(f"    {stored.article.link}", highlight=False, soft_wrap=True)
    console.print(f"{len(found)} matches")


def _export_meta(
    settings: Settings,
    format: str,
    sources: list[str],
    limit: int,
    items: Sequence[StoredArticle],
    store: Store,
) -> FeedMeta:
    """Metadata for an exported feed file, linking to the served pages of the same selection.

    The file is a snapshot of the first page; its ``next`` link continues on the
    HTTP service at ``base_url``, which serves the older pages with the same cursor.
    """
    base = _base_url(settings)
    path = FEED_PATHS[format]
    selection = [("source", source) for source in sorted(sources)]
    if limit != settings.feed_limit:
        selection.append(("limit", str(limit)))

    def url(params: list[tuple[str, str]]) -> str:
        return base + path + (f"?{urlencode(params)}" if params else "")

    next_url = None
    if len(items) == limit:
        next_url = url([*selection, ("before", encode_cursor(items[-1].cursor))])
    return FeedMeta(
        title=settings.feed_title,
        self_url=url(selection),
        first_url=url(selection),
        html_url=base + "/",
        updated=store.last_updated(sources or None) or datetime.now(UTC),
        id_authority=f"{urlsplit(base).hostname},2025",
        next_url=next_url,
    )


def _export_jekyll(store: Store, ids: list[str] | None, folder: Path) -> archive.WriteCounts:
    """Walk the whole store newest-first, page by page, so memory stays flat."""
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


def _source_for(article: Article, sources: Sequence[Source], forced: Source | None) -> Source:
    """The configured source an archived article belongs to: forced, by author, or by site."""
    if forced is not None:
        return forced
    for source in sources:
        if article.source_name and article.source_name == source.name:
            return source
    for source in sources:
        handles = getattr(get_adapter(source.adapter), "handles", None)
        if handles is not None and handles(article.link):
            return source
    return Source(id="archive", name=article.source_name or "archive", url=article.link)


def _renormalized(article: Article, source: Source) -> Article:
    """Run an archived article through its source's adapter, as if it were fetched again.

    This is what cleans the body of seed files that still carry ads and repairs
    their dates; the first-fetched time of the archive is kept.
    """
    published = article.published.isoformat() if article.published else None
    entry = RawEntry(
        link=article.link, title=article.title, content=article.body, published=published
    )
    fetched = article.fetched or article.published or datetime.now(UTC)
    adapter = get_adapter(source.adapter if source.id != "archive" else "generic")
    fresh = adapter(entry, source, fetched)
    return replace(fresh, fetched=article.fetched or fresh.fetched, comments=article.comments)


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Archive files or folders of them.")],
    source: Annotated[
        str | None,
        typer.Option("--source", "-s", help="Source id for every file (default: by author/site)."),
    ] = None,
) -> None:
    """Import seed-format archive files into the database, deduplicated (twice adds nothing)."""
    files = sorted(
        {
            file
            for path in paths
            for file in ([path] if path.is_file() else path.rglob("*"))
            if file.is_file()
        }
    )
    with _reported():
        settings = CONTEXT.settings()
        configured = _sources(settings)
        forced = _pick(configured, [source])[0] if source else None
        articles: list[Article] = []
        failures = 0
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("reading", total=len(files))
            for path, result in archive.read_files(files):
                progress.advance(task)
                if isinstance(result, ArchiveError):
                    failures += 1
                    console.print(f"[yellow]skipped[/] {result}")
                    continue
                owner = _source_for(result.article, configured, forced)
                try:
                    articles.append(_renormalized(result.article, owner))
                except AdapterError as exc:
                    failures += 1
                    console.print(f"[yellow]skipped[/] {path}: {exc}")
        with _store(settings) as store:
            counts = store.import_articles(articles)
    out.print(
        f"{len(files)} files: {counts.new} new, {counts.updated} updated, "
        f"{counts.unchanged + counts.merged} already stored, {failures} skipped"
    )
    if files and failures == len(files):
        raise typer.Exit(1)


@app.command()
def renormalize(
    source: SourceOption = None,
) -> None:
    """Re-run the (improved) adapters over the stored raw entries, without refetching."""
    with _reported():
        settings = CONTEXT.settings()
        chosen = {item.id: item for item in _pick(_sources(settings), source)}
        with _store(settings) as store:
            batches: dict[str, list[tuple[RawEntry, Article]]] = {}
            skipped = 0
            for source_id, entry, fetched in store.iter_raw(sorted(chosen)):
                owner = chosen.get(source_id)
                if owner is None:
                    continue
                try:
                    fresh = get_adapter(owner.adapter)(entry, owner, fetched)
                except AdapterError as exc:
                    skipped += 1
                    logger.warning("renormalize skipped an entry: %s", exc)
                    continue
                batches.setdefault(source_id, []).append((entry, fresh))
            for source_id, pairs in batches.items():
                counts = store.replace_articles(chosen[source_id], pairs)
                out.print(f"{source_id}: {counts.updated} updated, {counts.unchanged} unchanged")
    if skipped:
        out.print(f"{skipped} entries skipped (see log)")


@app.command()
def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would go.")] = False,
) -> None:
    """Delete articles past their retention, keeping tombstones so they do not come back."""
    with _reported():
        settings = CONTEXT.settings()
        configured = _sources(settings)
        with _store(settings) as store:
            gone = store.prune(
                now=datetime.now(UTC),
                default_retention=timedelta(days=settings.retention_days),
                per_source={item.id: item.retention for item in configured if item.retention},
                dry_run=dry_run,
            )
    verb = "would prune" if dry_run else "pruned"
    for stored in gone:
        article = stored.article
        when = article.published or article.fetched
        out.print(f"{verb} {article.source_id} {when:%Y-%m-%d} {article.title}")
    out.print(f"{verb} {len(gone)} articles")


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
    with _reported():
        settings = CONTEXT.settings()
        sources = _sources(settings)
        payload = opml.export_opml(
            sources,
            title=settings.feed_title,
            topics=load_topics(settings, sources),
            base_url=_base_url(settings),
        )
    if out_path is None:
        sys.stdout.buffer.write(payload)
    else:
        out_path.write_bytes(payload)


@opml_app.command("import")
def opml_import(
    path: Annotated[Path, typer.Argument(help="An OPML file.")],
) -> None:
    """Print the [[source]] tables for an OPML file's feeds, to append to the sources file."""
    with _reported():
        settings = CONTEXT.settings()
        known = {source.url for source in _sources(settings)}
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from exc
        imported = opml.parse_opml(data, file=str(path))
    fresh = [item for item in imported if item.url not in known]
    out.print(sources_to_toml(fresh), end="")
    console.print(f"{len(fresh)} new sources ({len(imported) - len(fresh)} already configured)")


def main() -> None:
    app()
