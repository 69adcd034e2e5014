"""XML feeds (RSS 0.9x/1.0/2.0, Atom): the feedparser path, after the fast path declines.

feedparser gets bytes, never a URL (``fetch`` owns timeouts, size caps and
conditional requests).  Its own HTML sanitizing and relative-URI resolution are
off: :mod:`aggregator.clean` does both, per source, and they are about two thirds
of feedparser's run time.

May import :mod:`.charset`, :mod:`.prolog`, :mod:`.entries` and :mod:`.rss2`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import feedparser

from aggregator.errors import ParseError
from aggregator.parse.charset import decode_feed, header, rewrite_declaration
from aggregator.parse.entries import Reading, raw_entry, resolve, stripped
from aggregator.parse.prolog import fix_char_refs, neutralise_dtd
from aggregator.parse.rss2 import read_rss2
from aggregator.types import RawFeed

# feedparser reports these for documents it still read completely.
_SURVIVABLE = ("CharacterEncodingOverride", "CharacterEncodingUnknown", "NonXMLContentType")


def prepare_xml(
    content: bytes, headers: Mapping[str, str] | None
) -> tuple[bytes, dict[str, str], tuple[str, ...]]:
    """``(document, response headers, problems)``: the input both XML readers get."""
    text, _encoding, problems = decode_feed(content, headers)
    utf8, dtd_problems = neutralise_dtd(rewrite_declaration(text.encode("utf-8")))
    media_type = (header(headers, "content-type") or "application/xml").split(";")[0].strip()
    # No content-location: feedparser would resolve bare-UUID guids against it.
    response_headers = {"content-type": f"{media_type or 'application/xml'}; charset=utf-8"}
    return fix_char_refs(utf8), response_headers, problems + dtd_problems


def read_with_feedparser(
    document: bytes, response_headers: Mapping[str, str], *, url: str, source: str | None
) -> Reading:
    try:
        # A stream, never bytes: feedparser tries to open() bytes as a file name first,
        # so a body that names a local file would be read from disk.
        result = feedparser.parse(
            io.BytesIO(document),
            response_headers=dict(response_headers),
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as crash:
        # feedparser is third-party code run on hostile bytes; whatever else it trips
        # over must still end as this source's ParseError, not crash the poll.
        raise ParseError("feed parser failed", source=source, url=url) from crash
    feed = result.get("feed") or {}
    return Reading(
        version=result.get("version") or "",
        error=result.get("bozo_exception") if result.get("bozo") else None,
        title=stripped(feed.get("title")),
        link=resolve(stripped(feed.get("link")), url),
        entries=tuple(raw_entry(item, url) for item in result.get("entries") or ()),
    )


def raw_feed(
    reading: Reading,
    problems: tuple[str, ...],
    *,
    url: str,
    headers: Mapping[str, str] | None,
    source: str | None,
) -> RawFeed:
    exc = reading.error
    survivable = exc is not None and type(exc).__name__ in _SURVIVABLE
    # No recognised format and no channel title either: not a feed (an HTML page, say).
    # A channel with a title and no entries yet (CDF, a new feed) is an empty feed.
    unrecognised = not reading.version and reading.title is None
    if not reading.entries and (unrecognised or (exc is not None and not survivable)):
        cause = exc if isinstance(exc, Exception) else ValueError("no feed found in document")
        raise ParseError("not a readable feed", source=source, url=url) from cause
    all_problems = list(problems)
    # A missing Content-Type is ours to supply, and the encoding override is our own
    # re-encoding to UTF-8: neither is a problem with the feed.
    reportable = exc is not None and type(exc).__name__ != "CharacterEncodingOverride"
    if reportable and not (survivable and header(headers, "content-type") is None):
        all_problems.append(f"{type(exc).__name__}: {exc}")
    return RawFeed(
        url=url,
        title=reading.title,
        link=reading.link,
        entries=reading.entries,
        problems=tuple(all_problems),
    )


def parse_xml(
    content: bytes, *, url: str, headers: Mapping[str, str] | None, source: str | None
) -> RawFeed:
    document, response_headers, problems = prepare_xml(content, headers)
    reading = read_rss2(document, response_headers, url=url)
    if reading is None:
        reading = read_with_feedparser(document, response_headers, url=url, source=source)
    return raw_feed(reading, problems, url=url, headers=headers, source=source)
