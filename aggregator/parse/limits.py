"""What one entry may carry: bounds applied before any HTML parser or cleaner sees it.

The response cap (20 MiB) is the only bound a feed has before this point, and one
entry of that size (860k tiny tags, a 19 MB title, 100k-deep nesting) took a poll
to over a gigabyte in the cleaner, the store and every export.  The largest real
post we have seen is 246 KB with 2,983 elements, 18 deep; the bounds below leave
it a wide margin.  What is cut is said in the feed's problems, and the entry is
kept with what fits: a long article loses its tail, not its existence.

The body and title bounds are settings (``max_entry_bytes``, ``max_title_bytes``),
carried as an :class:`EntryLimits` with each parse task; the element count and
depth are not, since no real post comes near them and they only guard the parsers.

The element count and depth are measured by a tag scan, not a parse, so that no
tree is ever built for a body over the bounds; it is approximate where HTML closes
elements implicitly, and errs towards a deeper count (an unclosed ``<p>`` counts).

Imports only :mod:`aggregator.types`.
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import re

from aggregator.types import RawEntry, RawFeed

MAX_BODY_BYTES = 1 << 20  # default: UTF-8 bytes of one body (content or summary) as sent
MAX_TITLE_BYTES = 2048  # default: UTF-8 bytes of a title as plain text
MAX_ELEMENTS = 100_000  # elements in one body
MAX_DEPTH = 256  # element nesting in one body

_TAG = re.compile(r"<(/?)([A-Za-z][^\s/>]*)")
_VOID = frozenset(
    ("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta")
    + ("param", "source", "track", "wbr")
)
_MARKUP = re.compile(r"<[^>]*>")


@dataclasses.dataclass(frozen=True)
class EntryLimits:
    """The configurable bounds of one entry (picklable: it travels with a parse task)."""

    body_bytes: int = MAX_BODY_BYTES
    title_bytes: int = MAX_TITLE_BYTES


DEFAULT_LIMITS = EntryLimits()


def cut_bytes(text: str, limit: int) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _cut_body(body: str, limit: int) -> tuple[str, str | None]:
    """``body`` within the bounds (``limit`` UTF-8 bytes), and what was cut (``None``
    when nothing was)."""
    reason = None
    if len(body) > limit // 4 and len(body.encode("utf-8")) > limit:
        body = cut_bytes(body, limit)
        body = body[: body.rfind("<")] if "<" in body else body  # never inside a tag
        reason = f"body over {limit} bytes"
    if body.count("<") <= MAX_DEPTH:  # the common case: too few tags to reach a bound
        return body, reason
    # HTML parsers ignore "/>" on an ordinary element (``<div/>`` opens a div), so a
    # tag's name is all the scan needs: a list built in C, walked once.
    tags = _TAG.findall(body)
    if len(tags) <= MAX_DEPTH:
        return body, reason
    depth = elements = 0
    for index, (closing, name) in enumerate(tags):
        if closing:
            depth = max(depth - 1, 0)
            continue
        elements += 1
        if name.lower() not in _VOID:
            depth += 1
        if elements > MAX_ELEMENTS or depth > MAX_DEPTH:
            what = f"{MAX_ELEMENTS} elements" if elements > MAX_ELEMENTS else f"depth {MAX_DEPTH}"
            cut = next(itertools.islice(_TAG.finditer(body), index, None))
            return body[: cut.start()], f"body over {what}"
    return body, reason


def _plain_text(markup: str) -> str:
    return " ".join(html.unescape(_MARKUP.sub(" ", markup)).split())


def _cut_title(title: str, limit: int) -> tuple[str, str | None]:
    if len(title) <= limit // 4:
        return title, None
    # A head of the title first, cut before its last tag or reference so that no
    # half of one is read as text: its text alone is usually over the bound already,
    # and a 19 MB title is then never unescaped whole.
    head = title[: limit * 8]
    if len(head) < len(title):
        head = head[: max(head.rfind("<"), head.rfind("&"), limit * 4)]
    for candidate in (head, title) if len(head) < len(title) else (title,):
        plain = _plain_text(candidate)
        if len(plain.encode("utf-8")) > limit:
            cut = html.escape(cut_bytes(plain, limit), quote=False)
            return cut, f"title over {limit} bytes"
    return title, None


def bound_feed(feed: RawFeed, limits: EntryLimits = DEFAULT_LIMITS) -> RawFeed:
    """``feed`` with every entry within the bounds; each cut is one more problem."""
    entries: list[RawEntry] = []
    problems = list(feed.problems)
    for entry in feed.entries:
        bounded, problem = bound_entry(entry, limits)
        entries.append(bounded)
        if problem is not None:
            problems.append(problem)
    if len(problems) == len(feed.problems):
        return feed
    return dataclasses.replace(feed, entries=tuple(entries), problems=tuple(problems))


def bound_entry(
    entry: RawEntry, limits: EntryLimits = DEFAULT_LIMITS
) -> tuple[RawEntry, str | None]:
    """``entry`` within the per-entry bounds, and a problem saying what was cut, if anything."""
    fields = {"title": entry.title, "content": entry.content, "summary": entry.summary}
    reasons: list[str] = []
    for field, value in fields.items():
        if value is None:
            continue
        cut, reason = (
            _cut_title(value, limits.title_bytes)
            if field == "title"
            else _cut_body(value, limits.body_bytes)
        )
        if reason is not None:
            fields[field] = cut
            reasons.append(f"{field}: {reason}, {len(value)} characters cut to {len(cut)}")
    if not reasons:
        return entry, None
    bounded = dataclasses.replace(
        entry, title=fields["title"], content=fields["content"], summary=fields["summary"]
    )
    return bounded, cut_problem(entry, reasons)


def cut_problem(entry: RawEntry, reasons: list[str]) -> str:
    """The feed problem that says what was cut of ``entry``, naming it by link or guid."""
    name = (entry.link or entry.guid or "without link")[:200]
    return f"entry {name} cut ({'; '.join(reasons)})"
