"""``aggregator import``: archive files into the store, streamed through the parse pool.

Reading a post (its YAML front matter) and normalising it (the adapter, the cleaner)
is nearly all of an import's CPU, and it is the same pure work a poll hands to the
parse pool; so the files go to the pool in chunks, by path (a path pickles in a few
bytes, a post in kilobytes), and come back as articles while the store writes the
previous round.  Only a bounded number of chunks is in flight, and each round is
stored before the next is gathered: memory stays flat whatever the archive's size.

This module is imported by the pool's workers (they run :func:`normalize_files`), so
it imports neither the store nor rich at module level.

Imports from the package: ``workers``, ``normalize``, ``archive``, ``adapters``, the
store for its annotations (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import os
import time
from array import array
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, overload

from aggregator import archive
from aggregator.adapters import get_adapter
from aggregator.errors import AdapterError, ArchiveError
from aggregator.normalize import normalize_entries
from aggregator.parse.limits import MAX_TITLE_BYTES
from aggregator.types import Article, PollCounts, Source
from aggregator.workers import DEMAND_ENTRIES, ParsePool

if TYPE_CHECKING:
    from aggregator.store import Store

__all__ = [
    "CHUNK_FILES",
    "ROUND_FILES",
    "ArchiveFiles",
    "Chunk",
    "Imported",
    "archive_files",
    "import_files",
    "normalize_files",
]

#: Files per task sent to the pool: large enough that pickling is a small part of it,
#: small enough that two workers share even a short archive.
CHUNK_FILES = 50
#: Files stored per transaction round; duplicates within a round count as duplicates
#: of the same import, across rounds as already stored.
ROUND_FILES = 500


@dataclass(frozen=True)
class Chunk:
    """What a worker made of some files: their articles (in file order within a source)
    and one line per file it skipped, with the reason."""

    articles: list[Article]
    skipped: list[str]


@dataclass
class Imported:
    """The totals of an import: the store's counts and the files skipped before it."""

    counts: PollCounts = field(default_factory=PollCounts)
    skipped: int = 0


def source_for(article: Article, sources: Sequence[Source], forced: Source | None) -> Source:
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


def normalize_files(
    paths: Sequence[Path],
    sources: Sequence[Source],
    forced: Source | None,
    max_title_bytes: int = MAX_TITLE_BYTES,
) -> Chunk:
    """Read and normalise archive files, each by its source's adapter (the pool's task),
    titles bounded as a poll bounds them.

    What only the archive knows is kept (:func:`archive.keep_archived`); the
    fingerprint is computed here, in the worker, and travels with the article.
    """
    articles: list[Article] = []
    skipped: list[str] = []
    by_source: defaultdict[Source, list[tuple[Path, Article]]] = defaultdict(list)
    for path, read in archive.read_files(paths):
        if isinstance(read, ArchiveError):
            skipped.append(str(read))
        else:
            by_source[source_for(read.article, sources, forced)].append((path, read.article))
    for owner, documents in by_source.items():
        fetched = (archive.as_fetched(article) for _, article in documents)
        results = normalize_entries(fetched, owner, max_title_bytes=max_title_bytes)
        for (path, archived), (_, result) in zip(documents, results, strict=True):
            if isinstance(result, AdapterError):
                skipped.append(f"{path}: {result}")
            else:
                kept = archive.keep_archived(result, archived)
                kept.fingerprint  # noqa: B018 - computed for its cache, which is pickled
                articles.append(kept)
    return Chunk(articles, skipped)


def import_files(
    files: Sequence[Path],
    store: Store,
    executor: Executor,
    *,
    sources: Sequence[Source],
    forced: Source | None,
    restore: bool = False,
    max_title_bytes: int = MAX_TITLE_BYTES,
    skipped: Callable[[str], None],
    progress: Callable[[int], None] = lambda _: None,
    in_flight: int = 4,
) -> Imported:
    """Import ``files`` round by round; ``skipped`` hears of each file left out (with
    the reason), ``progress`` of each chunk of files done.

    At most ``in_flight`` chunks wait in ``executor`` at a time, so a pool keeps busy
    while the store writes, and memory does not grow with the archive.  A parse pool
    is started at once for an archive bigger than its demand threshold, and waited
    for: parsing on its thread meanwhile gained nothing in time but left the
    parser's memory in this process (15 MB of a 8,760-post import's 137 MB).
    """
    if isinstance(executor, ParsePool) and len(files) > DEMAND_ENTRIES:
        executor.start()
        executor.wait_started()  # falls back to the thread if no process could start
    total = Imported()
    pending: deque[tuple[int, Future[Chunk]]] = deque()
    chunks = _chunks(files)
    rounds: list[Chunk] = []
    in_round = 0
    while True:
        while len(pending) < in_flight and (part := next(chunks, None)) is not None:
            task = executor.submit(normalize_files, part, sources, forced, max_title_bytes)
            pending.append((len(part), task))
        if not pending:
            break
        count, task = pending.popleft()
        rounds.append(task.result())
        in_round += count
        if in_round >= ROUND_FILES or not pending:
            _store_round(rounds, store, total, restore=restore, skipped=skipped)
            progress(in_round)
            rounds, in_round = [], 0
    return total


class ArchiveFiles(Sequence[Path]):
    """The files of an import, in path order, held as one string and handed out as
    paths.

    A ``Path`` object costs four times its string, and even strings, one object per
    file made among the listing's short-lived objects, kept their memory pinned: the
    64,000 files of a big archive held 28 MB of the importing process for the whole
    import.  Joined into one string (NUL, which no path contains, between them) with
    an array of where each starts, they are two allocations, and the listing's
    objects are all freed together once it is done.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self._joined = "\0".join(names)
        self._starts = array("Q", accumulate((len(name) + 1 for name in names), initial=0))

    def __len__(self) -> int:
        return len(self._starts) - 1

    @overload
    def __getitem__(self, index: int) -> Path: ...

    @overload
    def __getitem__(self, index: slice) -> list[Path]: ...

    def __getitem__(self, index: int | slice) -> Path | list[Path]:
        positions = range(len(self))
        if isinstance(index, slice):
            return [self._path(position) for position in positions[index]]
        return self._path(positions[index])

    def _path(self, position: int) -> Path:
        return Path(self._joined[self._starts[position] : self._starts[position + 1] - 1])


def archive_files(paths: Sequence[Path]) -> ArchiveFiles:
    """The files named and those under the folders named; a path that is neither stays,
    so that reading it reports it like any unreadable file."""
    names = {str(path) for path in paths if not path.is_dir()}
    for folder in paths:
        if folder.is_dir():
            names.update(_walk(str(folder)))
    found = [name for name in names if os.path.isfile(name) or not os.path.exists(name)]
    return ArchiveFiles(sorted(found, key=_path_order))


def _walk(folder: str) -> Iterator[str]:
    """Every entry under ``folder`` that is not a directory, as ``Path.rglob`` names
    it (symbolic links to directories not followed).

    ``rglob`` itself left some 20 MB behind in the process after listing 64,000 files
    (freed only partly, and only by a full garbage collection); ``os.walk`` makes no
    object per file but its name.
    """
    for root, _, files in os.walk(folder):
        if folder == os.curdir:  # Path(".").rglob names the entries without "./"
            root = root[2:]
        for name in files:
            yield os.path.join(root, name)


def _path_order(name: str) -> str:
    """A key that sorts path strings as ``Path`` objects sort (part by part): the
    separator made the lowest character, the root kept as the part ``/`` it is."""
    if name.startswith(os.sep):
        return os.sep + "\0" + name[1:].replace(os.sep, "\0")
    return name.replace(os.sep, "\0")


def _chunks(files: Sequence[Path]) -> Iterator[Sequence[Path]]:
    for start in range(0, len(files), CHUNK_FILES):
        yield files[start : start + CHUNK_FILES]


def _store_round(
    chunks: Sequence[Chunk],
    store: Store,
    total: Imported,
    *,
    restore: bool,
    skipped: Callable[[str], None],
) -> None:
    for chunk in chunks:
        for line in chunk.skipped:
            skipped(line)
        total.skipped += len(chunk.skipped)
    articles = [article for chunk in chunks for article in chunk.articles]
    total.counts += store.import_articles(articles, restore=restore)


@contextlib.contextmanager
def progress_bar(
    total: int, *, doing: str = "importing", unit: str = "posts"
) -> Iterator[Callable[[int], None]]:
    """A transient progress bar on stderr with the items done and items per second;
    yields the function that advances it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    started = time.monotonic()
    columns = (
        TextColumn(doing),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(doing, total=total, rate="")
        done = 0

        def advance(items: int) -> None:
            nonlocal done
            done += items
            rate = done / max(time.monotonic() - started, 1e-3)
            bar.update(task, advance=items, rate=f"{rate:,.0f} {unit}/s")

        yield advance
