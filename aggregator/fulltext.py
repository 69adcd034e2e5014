"""Full text for summary-only feeds: which entries need their page, and what of the
page is the article.

Pure functions, run in the parse pool or a thread; the pipeline fetches and stores.

**When** (``Source.fulltext``): ``True`` fetches every entry's page, ``False`` none,
``"auto"`` decides per entry, so a source whose mirrors mix full-text and summary
feeds fetches pages only for the summaries.  An entry is a summary when its body's
visible text

* is shorter than :data:`SUMMARY_CHARS` (200) characters, or
* ends in an ellipsis (``…``, ``...``, ``[…]``) or a "read more" link's text
  (``more``, ``...more``, ``Read more``, ``Continue reading``, ``阅读全文``,
  ``继续阅读``, ``查看全文``, ``全文``, ``更多``), or
* is the same as the entry's description (a feed that copies its summary into the
  content field).

**What**: the adapter's ``content_selector`` (CSS, first match wins) when it has one
and it matches; else trafilatura's main-content extraction, the best scored of the
maintained extractors in the published comparisons, with comments left out.  The
result then goes through the source's adapter like a feed body (junk rules,
sanitizer, link rewriting), so a page body is held to the same rules.

trafilatura is imported on first use: a daemon without full-text sources (and each
parse worker) never pays its import (~0.1 s, ~20 MB).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from datetime import datetime

import lxml.html

from aggregator.adapters import get_adapter
from aggregator.clean import text_content
from aggregator.types import Article, RawEntry, Source

__all__ = ["SUMMARY_CHARS", "decode_page", "extract_main", "page_article", "wants_page"]

logger = logging.getLogger(__name__)

SUMMARY_CHARS = 200
_TEASER_END = re.compile(
    r"(?:…|\.\.\.|\[…\]|\[\.\.\.\]|\bmore|read more|continue reading"
    r"|阅读全文|閱讀全文|继续阅读|繼續閱讀|查看全文|全文|更多)\s*[»›>\]]*\s*$",
    re.IGNORECASE,
)
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)


def wants_page(entry: RawEntry, mode: bool | str) -> bool:
    """Does ``entry`` need its article page, under the source's ``fulltext`` mode?"""
    if mode is True:
        return True
    if mode != "auto":
        return False
    body = entry.content or entry.summary or ""
    text = text_content(body) if body.strip() else ""
    if len(text) < SUMMARY_CHARS or _TEASER_END.search(text):
        return True
    return bool(entry.content and entry.summary) and text == text_content(entry.summary or "")


def decode_page(content: bytes, headers: Mapping[str, str]) -> str:
    """The page as text: the declared charset when it decodes, else a ``<meta>``
    declaration, else a guess (UnicodeDammit, as bs4 does for any document)."""
    from bs4 import UnicodeDammit  # with soupsieve 1 MB and 0.1 s: full-text sources only

    declared = _CHARSET.search(headers.get("content-type", ""))
    known = [declared.group(1)] if declared else []
    dammit = UnicodeDammit(content, known_definite_encodings=known, is_html=True)
    return dammit.unicode_markup or content.decode("utf-8", "replace")


def extract_main(page: str, *, url: str, adapter: str) -> str | None:
    """The main content of ``page`` as HTML; ``None`` when none can be told apart."""
    if not page.strip():
        return None
    selectors: tuple[str, ...] = getattr(
        getattr(get_adapter(adapter), "spec", None), "content_selector", ()
    )
    if selectors:
        try:
            root = lxml.html.document_fromstring(page, base_url=url)
        except (ValueError, lxml.etree.ParserError):
            return None
        for selector in selectors:
            found = root.cssselect(selector)
            if found:
                return "".join(lxml.html.tostring(node, encoding="unicode") for node in found)
    import trafilatura  # heavy, and only full-text sources use it

    try:
        extracted: str | None = trafilatura.extract(
            page,
            url=url,
            output_format="html",
            include_comments=False,
            include_images=True,
            include_links=True,
            include_tables=True,
            favor_precision=True,
        )
    except Exception:  # a library bug on a hostile page costs that page only
        logger.warning("extraction failed: url=%r", url, exc_info=True)
        return None
    return extracted if extracted and text_content(extracted) else None


def page_article(entry: RawEntry, main: str, *, source: Source, fetched_at: datetime) -> Article:
    """The article of ``entry`` with ``main`` (extracted page content) as its body,
    normalized by the source's adapter like any feed body."""
    paged = dataclasses.replace(entry, content=main)
    article = get_adapter(source.adapter)(paged, source, fetched_at)
    return dataclasses.replace(article, body_source="page")
