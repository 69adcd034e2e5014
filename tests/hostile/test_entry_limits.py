"""One feed cannot exhaust memory: nesting, element count and entry size are bounded.

The 20 MiB response cap used to be the only bound: a JSON Feed nested 2,000 deep
raised ``RecursionError`` out of the poll, one item of 860k tiny tags took a poll
past a gigabyte, a 19 MB title was stored whole.  Each case must now end as a
``ParseError`` of its source, or as the entry kept with what fits and a problem
that says what was cut.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import json
import multiprocessing
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from aggregator.errors import ParseError
from aggregator.normalize import adapt_entries, parse_and_adapt
from aggregator.parse import EntryLimits, parse_feed
from aggregator.parse.limits import MAX_BODY_BYTES, MAX_DEPTH, MAX_ELEMENTS, MAX_TITLE_BYTES
from aggregator.settings import Settings
from aggregator.types import RawEntry, Source

URL = "https://example.org/feed"


def _rss(title: str, body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        f"<item><title>{html.escape(title, quote=False)}</title><link>https://e.org/1</link>"
        f"<description>{html.escape(body, quote=False)}</description></item></channel></rss>"
    ).encode()


def _json_feed(item: object) -> bytes:
    return json.dumps(
        {"version": "https://jsonfeed.org/version/1.1", "title": "j", "items": [item]}
    ).encode()


def test_json_feed_nested_2000_deep_is_a_parse_error() -> None:
    content = (
        b'{"version":"https://jsonfeed.org/version/1.1","items":['
        + b"[" * 2000
        + b"]" * 2000
        + b"]}"
    )
    with pytest.raises(ParseError, match="nested deeper"):
        parse_feed(content, url=URL, source="deep")


def test_json_nesting_within_the_bound_still_reads() -> None:
    nested: object = "leaf"
    for _ in range(MAX_DEPTH - 5):
        nested = [nested]
    # Brackets inside strings are text, not nesting.
    item = {"id": "1", "url": "https://e.org/1", "title": "[" * 5000, "_ext": nested}
    feed = parse_feed(_json_feed(item), url=URL)
    assert [entry.link for entry in feed.entries] == ["https://e.org/1"]


def test_huge_title_is_cut_and_said() -> None:
    feed = parse_feed(_rss("長" * 2_000_000, "<p>body</p>"), url=URL)
    (entry,) = feed.entries
    assert entry.title is not None
    assert len(entry.title.encode()) <= MAX_TITLE_BYTES
    assert entry.title.startswith("長" * 100)
    assert any("title over" in problem for problem in feed.problems)


def test_markup_heavy_title_with_short_text_is_not_cut() -> None:
    title = "<b></b>" * 2000 + "short"
    feed = parse_feed(_rss(title, "<p>b</p>"), url=URL)
    assert feed.entries[0].title == title and not feed.problems


def test_huge_body_is_cut_at_a_tag_and_the_entry_kept() -> None:
    paragraph = "<p>" + "word " * 200 + "</p>"
    body = paragraph * (2 * MAX_BODY_BYTES // len(paragraph))
    feed = parse_feed(_rss("t", body), url=URL)
    (entry,) = feed.entries
    assert entry.content is not None
    assert len(entry.content.encode()) <= MAX_BODY_BYTES
    assert entry.content.endswith("</p>")  # cut before a tag, never inside one
    assert any(f"body over {MAX_BODY_BYTES} bytes" in problem for problem in feed.problems)


def test_element_count_and_depth_are_bounded() -> None:
    many = parse_feed(_rss("t", "<p>start</p>" + "<i>x</i>" * (MAX_ELEMENTS + 10)), url=URL)
    assert many.entries[0].content is not None
    assert many.entries[0].content.count("<i>") == MAX_ELEMENTS - 1
    assert any(f"{MAX_ELEMENTS} elements" in problem for problem in many.problems)

    deep = parse_feed(_rss("t", "<div>" * 100_000 + "deep" + "</div>" * 100_000), url=URL)
    assert deep.entries[0].content == "<div>" * MAX_DEPTH
    assert any(f"depth {MAX_DEPTH}" in problem for problem in deep.problems)


def test_a_real_sized_body_is_untouched() -> None:
    # The largest real post seen: about 3,000 elements, 18 deep, 246 KB.
    body = "<div>" * 18 + "<p>text <a href='https://e.org/'>l</a></p>" * 1000 + "</div>" * 18
    feed = parse_feed(_rss("t", body), url=URL)
    assert feed.entries[0].content == body and not feed.problems


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        "'<p>text</p>' + '<b></b>' * 860_000",  # 860k tiny tags, about 19 MB escaped
        "'<div>' * 100_000 + 'x' + '</div>' * 100_000",
    ],
)
def test_worst_case_poll_body_stays_under_250_mb(case: str) -> None:
    # A fresh interpreter runs what a parse worker runs; its peak RSS is the figure.
    # VmHWM, not ru_maxrss: Linux carries the peak of the process before its exec (here
    # the forked pytest process, hundreds of MB late in a run) into ru_maxrss.
    script = textwrap.dedent(
        f"""
        import html, logging
        from datetime import UTC, datetime
        from aggregator.normalize import parse_and_adapt
        from aggregator.types import Source
        logging.disable(logging.CRITICAL)
        body = html.escape({case}, quote=False)
        doc = ('<rss version="2.0"><channel><title>t</title><item><title>t</title>'
               '<link>https://e.org/1</link><description>' + body +
               '</description></item></channel></rss>').encode()
        del body
        result = parse_and_adapt(doc, url="https://e.org/feed", headers={{}},
                                 source=Source(id="h", name="h", url="https://e.org/feed"),
                                 fetched_at=datetime.now(UTC), max_entries=100)
        assert len(result.pairs) == 1 and result.problems, result.problems
        status = open("/proc/self/status").read().split("VmHWM:")[1]
        print(int(status.split()[0]) // 1024)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert int(done.stdout.strip()) < 250, done.stdout


def test_the_bounds_are_settings_with_checked_ranges() -> None:
    settings = Settings()
    assert (settings.max_entry_bytes, settings.max_title_bytes) == (MAX_BODY_BYTES, MAX_TITLE_BYTES)
    for key, value in [
        ("max_entry_bytes", 0),
        ("max_entry_bytes", 10**12),
        ("max_title_bytes", 3),
        ("max_title_bytes", 10**9),
    ]:
        with pytest.raises(ValidationError):
            Settings.model_validate({key: value})


def test_configured_bounds_reach_a_parse_worker_with_the_task() -> None:
    limits = EntryLimits(body_bytes=20_000, title_bytes=100)
    doc = _rss("長" * 500, "<p>" + "word " * 40_000 + "</p>" + "<p>tail</p>")
    work = functools.partial(
        parse_and_adapt,
        doc,
        url=URL,
        headers={},
        source=Source(id="s", name="s", url=URL),
        fetched_at=datetime.now(UTC),
        max_entries=10,
        limits=limits,
    )
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = pool.submit(work).result()
    ((_, article),) = result.pairs
    assert len(article.title.encode()) <= 100 and article.title.startswith("長" * 30)
    assert len(article.body.encode()) <= 20_000
    assert any("body over 20000 bytes" in problem for problem in result.problems)
    assert any("title over 100 bytes" in problem for problem in result.problems)


def test_a_title_is_bounded_after_cleaning_too() -> None:
    # An archive import never parses a feed: the adapter's title is bounded there.
    entry = RawEntry(guid="g", link="https://e.org/1", title="word " * 1000, content="<p>body</p>")
    source = Source(id="s", name="s", url=URL)
    pairs, skipped, cuts = adapt_entries([entry], source, datetime.now(UTC), max_title_bytes=200)
    ((_, article),) = pairs
    assert skipped == 0 and article.title.startswith("word word")
    assert len(article.title.encode()) <= 200
    assert cuts == [
        "entry https://e.org/1 cut (title over 200 bytes after cleaning, "
        f"4999 characters cut to {len(article.title)})"
    ]
    short = dataclasses.replace(entry, title="short")
    assert adapt_entries([short], source, datetime.now(UTC), max_title_bytes=200)[2] == []
