"""Commands over the stored articles: ``export``, ``import``, ``renormalize``,
``prune``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aggregator.cli._context import (
    CONTEXT,
    SourceOption,
    _link_token,
    _pick,
    _reported,
    _sources,
    _sources_file,
    app,
    console,
    logger,
    out,
)
from aggregator.cli._wiring import _feed_site, _index_stored, _store
from aggregator.errors import AdapterError, ConfigError, QueryError

# Imported where used, as everywhere in the CLI (see _context).
if TYPE_CHECKING:
    from aggregator import archive
    from aggregator.search import Query
    from aggregator.store import Store
    from aggregator.types import Article, Page, RawEntry, Source


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
    with_token: Annotated[
        bool,
        typer.Option(
            "--with-token", help="Write feed_token into the feed's links to this service."
        ),
    ] = False,
) -> None:
    """Write the merged (or per-source) feed as a file, or the seed-format archive (jekyll)."""
    from aggregator.export.feeds import FORMATS
    from aggregator.export.site import FEED_PATHS

    with _reported():
        settings = CONTEXT.settings()
        token = _link_token(settings, with_token) if format is not ExportFormat.jekyll else None
        configured = _sources_file(settings)
        chosen = _pick(configured.sources, source) if source else None
        asked = [item.id for item in chosen] if chosen else []
        picked = configured.topic(topic) if topic else None
        # What is read: a topic's sources narrowed to those asked for, else those asked
        # for, else all.  The links and title name only what was asked for, as the
        # service's do.
        ids = picked.narrowed(asked) if picked else (asked or None)
        with _store(settings) as store:
            if format is ExportFormat.jekyll:
                if out_path is None:
                    raise ConfigError("jekyll export needs --out FOLDER", key="--out")
                written = _export_jekyll(store, ids, picked.query if picked else None, out_path)
                console.print(f"{written.written} written, {written.unchanged} unchanged")
                return
            if picked is not None:
                rows = store.search(picked.query, sources=ids, limit=limit + 1)
                path = f"/topics/{picked.id}{FEED_PATHS[format.value]}"
            else:
                rows = store.latest(sources=ids, limit=limit + 1)
                path = FEED_PATHS[format.value]
            items = rows[:limit]
            # A snapshot of the first page; its next link continues on the HTTP service.
            names = {item.id: item.name for item in configured.sources}
            meta = _feed_site(settings, names, store).meta(
                path,
                asked,
                limit,
                updated=store.last_updated(ids),
                next_page=items[-1].cursor if len(rows) > limit else None,
                token=token,
            )
            if picked is not None:
                meta = dataclasses.replace(meta, title=f"{meta.title}: {picked.title}")
            payload = FORMATS[format.value].render(meta, items)
    if out_path is None:
        sys.stdout.buffer.write(payload)
    else:
        out_path.write_bytes(payload)


@app.command()
def search(
    query: Annotated[
        str, typer.Argument(help='Terms (all must match), "phrase", -excluded, a OR b.')
    ],
    source: SourceOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest N matches.")] = 20,
) -> None:
    """Print the newest articles matching QUERY: date, sources, title and link."""
    from aggregator.search import parse_query

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


def _export_jekyll(
    store: Store, ids: list[str] | None, query: Query | None, folder: Path
) -> archive.WriteCounts:
    """Walk the whole store (or a topic's matches) newest-first, page by page, so
    memory stays flat."""
    from aggregator import archive

    total = archive.WriteCounts()
    cursor = None
    while True:
        if query is None:
            page = store.latest(sources=ids, limit=500, before=cursor)
        else:
            page = store.search(query, sources=ids, limit=500, before=cursor)
        if not page:
            return total
        counts = archive.write_archive((stored.article for stored in page), folder)
        total = archive.WriteCounts(
            total.written + counts.written, total.unchanged + counts.unchanged
        )
        cursor = page[-1].cursor


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

    files = importer.archive_files(paths)
    with _reported():
        settings = CONTEXT.settings()
        configured = _sources(settings)
        forced = _pick(configured, [source])[0] if source else None
        with _store(settings) as store, parse_pool(settings, batch=True) as pool:
            with importer.progress_bar(len(files)) as advance:
                imported = importer.import_files(
                    files,
                    store,
                    pool,
                    sources=configured,
                    forced=forced,
                    restore=restore,
                    max_title_bytes=settings.max_title_bytes,
                    skipped=lambda line: _say(f"skipped {line}"),
                    progress=advance,
                )
            _index_stored(store, pool)  # its own progress bar, after the import's
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


def _from_page(
    store: Store, source: Source, entry: RawEntry, article: Article, page: Page, fetched: datetime
) -> Article:
    """``article`` from its stored page, extracted again (the extraction or the
    adapter's content selector may have improved); the page keeps the new extract,
    so the next poll does not put the old one back."""
    from aggregator.fulltext import extract_main, page_article

    assert page.html is not None
    main = extract_main(page.html, url=page.url, adapter=source.adapter)
    if main is None:
        return article
    if main != page.main:
        store.save_page(source, article.link, replace(page, main=main))
    return page_article(entry, main, source=source, fetched_at=fetched)


@app.command()
def renormalize(
    source: SourceOption = None,
) -> None:
    """Re-run the (improved) adapters over the stored raw entries, without refetching.

    An entry its adapter now rejects (or crashes on) keeps its stored article and is
    counted, as a poll would skip it; the others are rewritten.
    """
    from collections import defaultdict

    from aggregator.dedupe import link_key
    from aggregator.normalize import normalize_entries

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
                owner = chosen[source_id]
                # Full text: a stored page is extracted again instead of the feed's teaser.
                pages = dict(store.iter_pages(source_id)) if owner.fulltext else {}
                pairs: list[tuple[RawEntry, Article]] = []
                normalized = normalize_entries(
                    entries, owner, max_title_bytes=settings.max_title_bytes
                )
                for (entry, result), (_, fetched) in zip(normalized, entries, strict=True):
                    if isinstance(result, AdapterError):
                        skipped += 1
                        logger.warning("renormalize skipped an entry: %s", result)
                        continue
                    page = pages.get(link_key(result.link) or "")
                    if page is not None:
                        try:
                            result = _from_page(store, owner, entry, result, page, fetched)
                        except AdapterError as exc:  # the feed's version stays
                            logger.warning("renormalize kept the feed's body: %s", exc)
                    pairs.append((entry, result))
                counts = store.replace_articles(chosen[source_id], pairs)
                out.print(f"{source_id}: {counts.updated} updated, {counts.unchanged} unchanged")
            _index_stored(store)
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
