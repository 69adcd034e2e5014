"""Rebuild ``archive-bodies.json.gz`` from an unpacked copy of the real archive sample.

    .venv/bin/python -m bench.data.extract DIR   # DIR holds the sample's archive/ folder

Takes 50 posts of each of the four seed sources (front matter ``author``), every
k-th in file-name order so the pick spans the archive's dates, and keeps each
post's file name and HTML body (through the project's own archive reader).  The
benchmark only ever reads the JSON; see README.md in this folder for provenance.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from aggregator.archive import read_file

PER_SOURCE = 50
SOURCES = {"联合早报": "zaobao", "法广": "rfi", "美国之音": "voa", "自由亚洲电台": "rfa"}
OUTPUT = Path(__file__).resolve().parent / "archive-bodies.json.gz"


def main(folder: Path) -> None:
    by_kind: dict[str, list[dict[str, str]]] = {kind: [] for kind in SOURCES.values()}
    for path in sorted((folder / "archive").glob("*.md")):
        article = read_file(path).article
        kind = SOURCES.get(article.source_name)
        if kind is not None and article.body.strip():
            by_kind[kind].append({"file": path.name, "body": article.body})
    picked = {
        kind: posts[:: max(1, len(posts) // PER_SOURCE)][:PER_SOURCE]
        for kind, posts in by_kind.items()
    }
    data = json.dumps(picked, ensure_ascii=False, sort_keys=True).encode("utf-8")
    OUTPUT.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    print(f"{OUTPUT.name}: {sum(map(len, picked.values()))} bodies, {len(data)} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
