"""Feed bytes + response headers -> :class:`RawFeed`.  Pure: never touches the network.

One job per module, each importing only those below it:

* :mod:`.charset`: which charset the bytes are in;
* :mod:`.prolog`: the XML prolog made safe (no DTD processing, no bad char refs);
* :mod:`.entries`: feedparser-shaped entries -> :class:`RawEntry`;
* :mod:`.fastpath`, :mod:`.rss2`, :mod:`.atom`: the fast path for plain RSS 2.0 and
  Atom 1.0 (exactly feedparser's result, or nothing);
* :mod:`.xmlfeed`: every XML feed, through the fast path or feedparser;
* :mod:`.jsonfeed`: JSON Feed;
* :mod:`.limits`: what one entry may carry, applied to every reader's result.

Imports from the package: ``errors`` and ``types`` (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from aggregator.parse.charset import decode_feed
from aggregator.parse.jsonfeed import parse_json
from aggregator.parse.limits import DEFAULT_LIMITS, EntryLimits, bound_feed
from aggregator.parse.prolog import neutralise_dtd
from aggregator.parse.xmlfeed import parse_xml
from aggregator.types import RawFeed

__all__ = ["EntryLimits", "decode_feed", "neutralise_dtd", "parse_feed"]


def _looks_json(content: bytes) -> bool:
    # Sniff rather than trust Content-Type: servers label feeds every which way.
    return content.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def parse_feed(
    content: bytes,
    *,
    url: str,
    headers: Mapping[str, str] | None = None,
    source: str | None = None,
    limits: EntryLimits = DEFAULT_LIMITS,
) -> RawFeed:
    """Parse RSS 0.9x/1.0/2.0, Atom or JSON Feed bytes into a :class:`RawFeed`.

    A document that parses with errors but still yields entries keeps them and
    records the problem in ``RawFeed.problems``; one with no entries and a fatal
    error raises :class:`ParseError` (naming ``source`` and ``url``) from the cause.
    Entry links are resolved against ``url``; guids are kept exactly as sent.  An
    entry over ``limits`` (see :mod:`.limits`) is cut to them, and the cut is a problem.
    """
    read = parse_json if _looks_json(content) else parse_xml
    return bound_feed(read(content, url=url, headers=headers, source=source), limits)
