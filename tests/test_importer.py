"""The streamed import: the same articles through the parse pool as on one thread,
with a bounded number of chunks in flight whatever the archive's size."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pytest
from sqlalchemy import select

from aggregator import importer
from aggregator.store import Store
from aggregator.store.tables import articles
from aggregator.types import Source
from aggregator.workers import ParsePool

POSTS = Path(__file__).parent / "fixtures" / "realdata" / "posts"
SOURCES = [
    Source(id="zaobao", name="联合早报", url="https://feedx.net/rss/zaobao.xml", adapter="zaobao"),
    Source(id="rfi", name="法广", url="https://feedx.net/rss/rfi.xml", adapter="rfi"),
    Source(id="rfa", name="自由亚洲电台", url="https://feedx.net/rss/rfa.xml", adapter="rfa"),
    Source(id="voa", name="美国之音", url="https://feedx.net/rss/mgzy1.xml", adapter="voa"),
]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class Counting(Executor):
    """A thread executor that records the most futures outstanding at once."""

    def __init__(self) -> None:
        self.inner = ThreadPoolExecutor(max_workers=1)
        self.outstanding: set[Future[Any]] = set()
        self.most = 0

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        self.outstanding = {future for future in self.outstanding if not future.done()}
        future = self.inner.submit(fn, *args, **kwargs)
        self.outstanding.add(future)
        self.most = max(self.most, len(self.outstanding))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)


def _import(
    tmp_path: Path, name: str, files: list[Path], executor: Executor
) -> tuple[importer.Imported, set[tuple[str, str, str, str]], list[str], int]:
    lines: list[str] = []
    done: list[int] = []
    with Store.open(f"sqlite:///{tmp_path}/{name}.sqlite") as store:
        result = importer.import_files(
            files,
            store,
            executor,
            sources=SOURCES,
            forced=None,
            skipped=lines.append,
            progress=done.append,
        )
        with store.engine.connect() as conn:
            rows = conn.execute(
                select(articles.c.source_id, articles.c.link, articles.c.title, articles.c.body)
            )
            stored = {(row.source_id, row.link, row.title, row.body) for row in rows}
    return result, stored, lines, sum(done)


def _files(tmp_path: Path) -> list[Path]:
    files = sorted(POSTS.iterdir())
    broken = tmp_path / "broken.md"
    broken.write_bytes(b"\xff\xfe not UTF-8")
    return [*files, broken]


def test_the_pool_imports_what_one_thread_imports(tmp_path: Path) -> None:
    files = _files(tmp_path)
    with ThreadPoolExecutor(max_workers=1) as thread:
        alone = _import(tmp_path, "thread", files, thread)
    pool = ParsePool(2)
    try:
        pool.start()
        assert pool.wait_started(60)
        pooled = _import(tmp_path, "pool", files, pool)
    finally:
        pool.shutdown()
    assert pooled == alone
    result, stored, lines, done = pooled
    assert done == len(files)
    assert result.skipped == len(lines) >= 1  # the broken file at least
    assert any(line.startswith(str(files[-1])) for line in lines), lines
    counts = result.counts
    assert counts.new == len(stored) > 200
    assert counts.new + counts.skipped + result.skipped == len(files)


def test_chunks_in_flight_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "posts"
    folder.mkdir()
    for post in sorted(POSTS.iterdir())[:40]:
        shutil.copy(post, folder / post.name)
    files = sorted(folder.iterdir())
    executor = Counting()
    monkeypatch.setattr(importer, "CHUNK_FILES", 2)  # 20 chunks: more than may wait at once
    try:
        result, _, _, done = _import(tmp_path, "bounded", files, executor)
    finally:
        executor.shutdown()
    assert done == len(files)
    assert result.counts.new > 0
    assert 1 < executor.most <= 4


def test_titles_are_bounded_in_the_pool_as_a_poll_bounds_them(tmp_path: Path) -> None:
    files = sorted(POSTS.iterdir())
    _, full, _, _ = _import(tmp_path, "full", files, ThreadPoolExecutor(max_workers=1))
    limit = min(len(title.encode("utf-8")) for _, _, title, _ in full) - 1
    with Store.open(f"sqlite:///{tmp_path}/cut.sqlite") as store:
        importer.import_files(
            files,
            store,
            ThreadPoolExecutor(max_workers=1),
            sources=SOURCES,
            forced=None,
            max_title_bytes=limit,
            skipped=lambda _: None,
        )
        with store.engine.connect() as conn:
            titles = list(conn.execute(select(articles.c.title)).scalars())
    assert len(titles) == len(full)
    assert all(len(title.encode("utf-8")) <= limit for title in titles)
