"""Time the parser alone, per entry and per feed format, over the benchmark corpus.

usage: python -m bench.parse_time [ROUNDS] [FEEDS]

Renders the first FEEDS feeds of the corpus (default 60: every fifth Atom, the rest
CDATA or entity-escaped RSS 2.0) and times ``parse_feed`` on each format's documents,
and feedparser's path alone beside it, in CPU time (``time.process_time``).  The
formats and the two readers take turns within each round, so a burst of another
process on the shared machine spreads over all of them; the figure is the median of
ROUNDS rounds.  Point ``PYTHONPATH`` at another checkout's ``aggregator`` to time
that one on the same documents.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

from aggregator.parse import parse_feed
from aggregator.parse.xmlfeed import prepare_xml, read_with_feedparser
from bench.corpus import FORMATS, feed_ids, feed_spec, render_feed

URL = "http://127.0.0.1/rss/feed.xml"
HEADERS = {"Content-Type": "application/xml"}


def _parse(document: bytes) -> int:
    return len(parse_feed(document, url=URL, headers=HEADERS).entries)


def _feedparser_only(document: bytes) -> int:
    prepared, response_headers, _problems = prepare_xml(document, HEADERS)
    reading = read_with_feedparser(prepared, response_headers, url=URL, source=None)
    return len(reading.entries)


READERS: dict[str, Callable[[bytes], int]] = {"parse_feed": _parse, "feedparser": _feedparser_only}


def main(rounds: int, feeds: int) -> None:
    documents: dict[str, list[bytes]] = {form: [] for form in FORMATS}
    for feed_id in feed_ids(feeds, 0):
        spec = feed_spec(feed_id)
        documents[spec.format].append(render_feed(spec))
    per_entry: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for form, docs in documents.items():
            for name, read in READERS.items():
                start = time.process_time()
                entries = sum(read(document) for document in docs)
                spent = time.process_time() - start
                per_entry.setdefault((form, name), []).append(spent / entries * 1e6)
    print(f"CPU microseconds per entry, median of {rounds} rounds over {feeds} feeds:")
    for (form, name), values in per_entry.items():
        spread = f"{min(values):.0f}-{max(values):.0f}"
        print(f"  {form:12} {name:10} {statistics.median(values):6.0f}  ({spread})")


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 5, int(sys.argv[2]) if len(sys.argv) > 2 else 60
    )
