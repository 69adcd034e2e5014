"""Time ``parse_and_adapt`` over the benchmark corpus, or digest its whole output.

usage: python -m bench.adapt_check time [ROUNDS] [FEEDS]
       python -m bench.adapt_check digest OUT [FEEDS]

``time`` renders the first FEEDS feeds (default 100) and prints the CPU time per
entry (``time.process_time``) of each of ROUNDS rounds (default 3) of what a parse
worker runs per document: parse, adapt and clean, fingerprint.
Start it alternately with ``PYTHONPATH`` pointing at two checkouts to compare them:
the figure moves with the load of a shared machine, so only interleaved runs compare.

``digest`` writes one line per feed and per article of the main, growth and mixed
sets (default all 1,000 + 100 + 200 feeds): a SHA-256 of everything
``parse_and_adapt`` returned (the raw entry, the article, its fingerprint) and of
the article's search tokens (sorted, since the token string's order is a set's).
Two checkouts produce the same output exactly when ``cmp`` finds their files
identical; a differing line names the feed and the article.
"""

from __future__ import annotations

import hashlib
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from aggregator.normalize import Normalized, parse_and_adapt
from aggregator.search.text import indexed_tokens
from aggregator.types import Source
from bench.corpus import feed_ids, feed_spec, render_feed

HEADERS = {"Content-Type": "application/xml"}
FETCHED = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)


def _documents(ids: list[str]) -> list[tuple[bytes, Source]]:
    documents = []
    for feed_id in ids:
        spec = feed_spec(feed_id)
        url = f"http://127.0.0.1/rss/{feed_id}.xml"
        source = Source(id=feed_id, name=spec.name, url=url, adapter=spec.kind)
        documents.append((render_feed(spec), source))
    return documents


def _adapt(document: bytes, source: Source) -> Normalized:
    return parse_and_adapt(
        document,
        url=source.url,
        headers=HEADERS,
        source=source,
        fetched_at=FETCHED,
        max_entries=10_000,
    )


def _lines(feed_id: str, result: Normalized) -> list[str]:
    lines = [f"{feed_id} {result.entries_sent} {result.skipped} {result.problems!r}"]
    for index, (entry, article) in enumerate(result.pairs):
        tokens = "\n".join(sorted(indexed_tokens(article.title, article.body).split("\n")))
        text = f"{entry!r}\n{article!r}\n{article.fingerprint}\n{tokens}"
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        lines.append(f"{feed_id} {index} {digest}")
    return lines


def time_rounds(rounds: int, feeds: int) -> None:
    documents = _documents(feed_ids(feeds, 0))
    for document, source in documents[:3]:
        _adapt(document, source)  # builds the fold tables and the compiled selectors
    for _ in range(rounds):
        start = time.process_time()
        entries = sum(_adapt(document, source).entries_sent for document, source in documents)
        spent = time.process_time() - start
        print(f"{spent / entries * 1e3:.3f} ms CPU per entry ({entries} entries, {spent:.2f} s)")


def digest(out: Path, feeds: int | None) -> None:
    ids = feed_ids(1000, 100, 200) if feeds is None else feed_ids(feeds, 0)
    with out.open("w", encoding="utf-8") as file:
        for document, source in _documents(ids):
            file.write("\n".join(_lines(source.id, _adapt(document, source))) + "\n")


def main(argv: list[str]) -> None:
    match argv:
        case ["time", *rest] if len(rest) <= 2:
            numbers = [int(value) for value in rest]
            time_rounds(*(numbers + [3, 100][len(numbers) :]))
        case ["digest", out, *rest] if len(rest) <= 1:
            digest(Path(out), int(rest[0]) if rest else None)
        case _:
            raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
