"""JSON Feed (1.0/1.1) -> :class:`RawFeed`, directly into the shape the XML readers give.

May import :mod:`.charset` and :mod:`.entries`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

from aggregator.errors import ParseError
from aggregator.parse.charset import decode_feed
from aggregator.parse.entries import resolve, stripped, tags, title_markup, to_str
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


def parse_json(
    content: bytes, *, url: str, headers: Mapping[str, str] | None, source: str | None
) -> RawFeed:
    text, _encoding, problems = decode_feed(content, headers)
    try:
        document = json.loads(text)
    except ValueError as exc:
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
