"""A seed-format archive of any size for the import figures, built from the corpus.

The posts are corpus items (their raw bodies, junk included, so an import cleans
them as it cleans a real archive) rendered by :func:`aggregator.archive.render`.
Only ``DISTINCT`` items are generated; beyond that, copies differ in their link (a
new article each, the same cleaning work), which keeps a 64,000-post build short.
Cached under ``bench/.cache/`` like the corpus.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from bench.corpus import CORPUS_VERSION, NAMES, _item, feed_spec

__all__ = ["ARCHIVE_VERSION", "ensure_archive"]

ARCHIVE_VERSION = "1"
DISTINCT = 2_000
PER_FOLDER = 1_000  # posts per sub-folder: no 64,000-entry directory


def ensure_archive(cache: Path, count: int, log: Callable[[str], None]) -> Path:
    """The folder of a ``count``-post archive, built once."""
    from aggregator import archive
    from aggregator.types import Article

    folder = cache / f"archive-v{CORPUS_VERSION}.{ARCHIVE_VERSION}-{count}"
    complete = folder.with_name(folder.name + ".complete")  # beside it: the import reads all
    if complete.exists():
        return folder
    log(f"building a {count:,}-post archive under {folder} ...")
    shutil.rmtree(folder, ignore_errors=True)
    posts: list[Article] = []
    feed = 0
    while len(posts) < min(count, DISTINCT):
        spec = feed_spec(f"f{feed:04d}")
        feed += 1
        for index in range(spec.items):
            title, link, body, when = _item(spec.id, spec.kind, index)
            posts.append(
                Article(
                    source_id=spec.kind,
                    source_name=NAMES[spec.kind],
                    title=title,
                    link=link,
                    body=body,
                    published=when,
                    fetched=when + timedelta(minutes=5),
                    tags=(NAMES[spec.kind],),
                    categories=(NAMES[spec.kind],),
                )
            )
    for serial in range(count):
        post = posts[serial % len(posts)]
        copy = serial // len(posts)
        if copy:
            post = replace(post, link=f"{post.link.rstrip('/')}/c{copy}")
        target = folder / f"{serial // PER_FOLDER:03d}" / f"{serial:06d}.md"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(archive.render(post), encoding="utf-8")
    complete.write_text(f"{count}\n")
    return folder
