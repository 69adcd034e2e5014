"""JSON Feed (1.0/1.1) -> :class:`RawFeed`, directly into the shape the XML readers give.

May import :mod:`.charset`, :mod:`.entries` and :mod:`.limits`.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from typing import Any

from aggregator.errors import ParseError
from aggregator.parse.charset import decode_feed
from aggregator.parse.entries import resolve, stripped, tags, title_markup, to_str
from aggregator.parse.limits import MAX_DEPTH
from aggregator.types import RawEntry, RawFeed


def _json_entry(item: Mapping[str, Any], base: str) -> RawEntry:
    content = stripped(item.get("content_html"))
    if content is None and stripped(item.get("content_text")):
        paragraphs = to_str(item["content_text"]).strip().split("\n\n")
        content = "".join(f"<p>{html.escape(part.strip(), quote=False)}</p>" for part in paragraphs)
    authors = item.get("authors") or ([item["author"]] if item.get("author") else [])
    names = [
        to_str(a.get("name")).strip() for a in authors if isinstance(a, Mapping) and a.get("name")
    ]
    attachments = item.get("attachments") or ()
    return RawEntry(
        guid=stripped(item.get("id")),
        link=resolve(stripped(item.get("url")) or stripped(item.get("external_url")), base),
        # JSON Feed titles are plain text by the spec.
        title=title_markup(stripped(item.get("title")), {"type": "text/plain"}),
        content=content or stripped(item.get("summary")),
        summary=stripped(item.get("summary")) if content else None,
        published=stripped(item.get("date_published")),
        updated=stripped(item.get("date_modified")),
        author=", ".join(names) or None,
        tags=tags(item.get("tags") or ()),
        enclosures=tuple(
            to_str(a["url"]).strip() for a in attachments if isinstance(a, Mapping) and a.get("url")
        ),
    )


# A JSON string, or one bracket outside strings: enough to follow the nesting.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _too_deep(text: str) -> bool:
    """Is ``text`` nested deeper than :data:`MAX_DEPTH`?  Checked before ``json.loads``,
    whose recursion would otherwise end in a RecursionError (or, with a raised
    recursion limit, a crash of the interpreter) near 1,000 levels."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        bracket = token.group(0)
        if bracket in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif bracket in "]}":
            depth -= 1
    return False


def parse_json(
    content: bytes, *, url: str, headers: Mapping[str, str] | None, source: str | None
) -> RawFeed:
    text, _encoding, problems = decode_feed(content, headers)
    if _too_deep(text):
        raise ParseError(f"JSON Feed nested deeper than {MAX_DEPTH} levels", source=source, url=url)
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ParseError("not a readable JSON feed", source=source, url=url) from exc
    version = document.get("version") if isinstance(document, dict) else None
    if not isinstance(version, str) or not version.startswith("https://jsonfeed.org/version/"):
        raise ParseError(
            "not a JSON Feed", source=source, url=url, version=version
        ) from ValueError("missing or unknown JSON Feed version")
    items = document.get("items")
    if not isinstance(items, list):
        raise ParseError("JSON Feed has no items list", source=source, url=url)
    entries = []
    all_problems = list(problems)
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            all_problems.append(f"item {index} is not an object; skipped")
            continue
        entries.append(_json_entry(item, url))
    return RawFeed(
        url=url,
        title=stripped(document.get("title")),
        link=resolve(stripped(document.get("home_page_url")), url),
        entries=tuple(entries),
        problems=tuple(all_problems),
    )
