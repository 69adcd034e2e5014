"""Plain text out of bodies: the feedx leading date line, and visible text.

Imports nothing of the cleaner but the whitespace pattern of :mod:`.tree`.
"""

from __future__ import annotations

import re

from aggregator.clean.tree import WHITESPACE

__all__ = ["extract_date_line", "text_content"]


_DATE_LINE = re.compile(
    r"^\s*<div>\s*(?:<i>)?\s*(?P<text>"
    r"\d{1,2}/\d{1,2}/\d{4}\s*-\s*\d{1,2}:\d{2}"
    r"|[A-Z][a-z]{2},\s*\d{1,2}\s+[A-Z][a-z]{2}\s+\d{4}\s+\d{1,2}:\d{2}(?::\d{2})?\s*[A-Za-z0-9+-]*"
    r")\s*(?:</i>)?\s*</div>",
)


def extract_date_line(html: str) -> tuple[str | None, str]:
    """Split off a feedx leading date line: ``(date text or None, rest of body)``.

    feedx prepends ``<div><i>Mon, 03 Jul 2023 10:13:55 GMT</i></div>`` (VOA) or
    ``<div>31/01/2024 - 19:33</div>`` (RFI).  It is chrome in the body but the only
    date some items have, so it is handed back for :mod:`aggregator.dates`.
    """
    match = _DATE_LINE.match(html)
    if not match:
        return None, html
    return match.group("text").strip(), html[match.end() :]


def text_content(html: str) -> str:
    """Visible text with whitespace collapsed (script/style text excluded)."""
    # Imported here: only the generic adapter's titles and summaries need it, and the
    # daemon, the CLI and every parse worker paid its import (0.3 s, 7 MB) for nothing.
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    for tag in soup.find_all(["script", "style", "template"]):
        tag.decompose()
    return WHITESPACE.sub(" ", soup.get_text(" ")).strip()
