"""OPML 2.0 export and import of the source list.

Export writes what every feed reader understands (``type="rss"``, ``text``, ``title``,
``xmlUrl``) and keeps our own settings (id, adapter, interval, ...) in attributes of a
private namespace, so a round trip through this module loses nothing while other
readers simply ignore them.

Topics (saved searches) are exported too, in a folder of their own: each is an ``rss``
outline whose ``xmlUrl`` is the topic's feed on this service (``/topics/ID/feed.xml``),
so a feed reader subscribes to the search as to any feed, and whose private attributes
keep its id, query and sources.  Import skips them: they are our own feeds, not
sources to poll.

Import treats the file as hostile: OPML files are downloaded from anywhere and shared
around.  defusedxml refuses DTDs outright (OPML never needs one), which rules out
entity expansion bombs and external entities, and nothing is ever fetched.

Imports from the package: ``errors`` and ``types`` (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Final
from urllib.parse import urlencode, urlsplit

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from lxml import etree

from .errors import ConfigError
from .search import Topic
from .types import UTC, Source

__all__ = ["AGGREGATOR_NS", "export_opml", "parse_opml"]

# A name in the reserved ``.invalid`` domain (RFC 2606): it can never collide with
# someone else's namespace and nobody will ever try to dereference it.
AGGREGATOR_NS: Final = "https://aggregator.invalid/ns/opml"

_ID_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_SLUG_JUNK: Final = re.compile(r"[^a-z0-9]+")
_MAX_BYTES: Final = 5 * 1024 * 1024


def _agg(name: str) -> str:
    return f"{{{AGGREGATOR_NS}}}{name}"


def export_opml(
    sources: Iterable[Source],
    *,
    title: str = "aggregator sources",
    created: datetime | None = None,
    topics: Iterable[Topic] = (),
    base_url: str = "",
    token: str | None = None,
) -> bytes:
    """OPML 2.0 for ``sources`` and ``topics`` (whose feeds are under ``base_url``,
    their links with ``?token=`` when ``token`` is given); ``created`` (if given)
    becomes ``dateCreated``.

    The time is a parameter, not read from the clock, so the output is reproducible.
    """
    root = etree.Element("opml", {"version": "2.0"}, nsmap={"aggregator": AGGREGATOR_NS})
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    if created is not None:
        etree.SubElement(head, "dateCreated").text = format_datetime(
            created.astimezone(UTC), usegmt=True
        )
    etree.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = etree.SubElement(root, "body")
    for source in sources:
        outline = etree.SubElement(body, "outline")
        outline.set("type", "rss")
        outline.set("text", source.name)
        outline.set("title", source.name)
        outline.set("xmlUrl", source.url)
        outline.set(_agg("id"), source.id)
        outline.set(_agg("adapter"), source.adapter)
        outline.set(_agg("interval"), str(int(source.interval.total_seconds())))
        if not source.enabled:
            outline.set(_agg("enabled"), "false")
        if source.retention is not None:
            outline.set(_agg("retention"), str(int(source.retention.total_seconds())))
        if source.allow_private:
            outline.set(_agg("allow-private"), "true")
    _export_topics(body, list(topics), base_url.rstrip("/"), token)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True)


def _export_topics(
    body: etree._Element, topics: list[Topic], base_url: str, token: str | None
) -> None:
    if not topics:
        return
    folder = etree.SubElement(body, "outline", {"text": "Topics", "title": "Topics"})
    for topic in topics:
        outline = etree.SubElement(folder, "outline")
        outline.set("type", "rss")
        outline.set("text", topic.title)
        outline.set("title", topic.title)
        signed = [("token", token)] if token else []
        feed = f"{base_url}/topics/{topic.id}/feed.xml"
        outline.set("xmlUrl", f"{feed}?{urlencode(signed)}" if signed else feed)
        outline.set("htmlUrl", f"{base_url}/?{urlencode([('topic', topic.id), *signed])}")
        outline.set(_agg("topic"), topic.id)
        outline.set(_agg("query"), str(topic.query))
        if topic.sources:
            outline.set(_agg("sources"), " ".join(topic.sources))


def parse_opml(data: bytes, *, file: str | None = None) -> list[Source]:
    """Every feed outline in ``data`` (folders are flattened), as :class:`Source`.

    Outlines without our attributes get an id made from the title (or the feed's host
    when the title has no ASCII letters, e.g. Chinese names), made unique with ``-2``,
    ``-3``...; the same feed URL listed in two folders is imported once.

    Raises:
        ConfigError: the document is not OPML, uses a DTD/entities, or an outline has
            an unusable URL or setting (``key`` names the outline).
    """
    if len(data) > _MAX_BYTES:
        raise ConfigError(f"OPML file larger than {_MAX_BYTES} bytes", file=file)
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise ConfigError(f"refused OPML: {type(exc).__name__}", file=file) from exc
    except ET.ParseError as exc:
        raise ConfigError(f"not well-formed XML: {exc}", file=file) from exc
    if root.tag != "opml" or root.find("body") is None:
        raise ConfigError("not an OPML document (no <opml><body>)", file=file)

    sources: list[Source] = []
    # Explicit ids are reserved up front so a generated id never takes one of them.
    reserved = {o.get(_agg("id")) or "" for o in root.iter("outline")} - {""}
    ids: set[str] = set()
    urls: set[str] = set()
    for outline in root.iter("outline"):
        if outline.get(_agg("topic")) is not None:
            continue  # one of our topic feeds: polling it would feed us our own articles
        url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
        if not url:
            continue  # a folder or a plain text outline
        name = (outline.get("title") or outline.get("text") or "").strip() or url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"feed URL must be http(s): {url[:200]!r}", file=file, key=name)
        if url in urls:
            continue
        source_id = _source_id(outline, name, parts.hostname, ids, reserved, file)
        source = Source(
            id=source_id,
            name=name,
            url=url,
            adapter=outline.get(_agg("adapter")) or "generic",
            interval=_seconds(outline, "interval", file, name) or timedelta(minutes=30),
            enabled=outline.get(_agg("enabled"), "true").lower() != "false",
            retention=_seconds(outline, "retention", file, name),
            allow_private=outline.get(_agg("allow-private"), "false").lower() == "true",
        )
        urls.add(url)
        ids.add(source_id)
        sources.append(source)
    return sources


def _source_id(
    outline: ET.Element,
    name: str,
    host: str,
    taken: set[str],
    reserved: set[str],
    file: str | None,
) -> str:
    explicit = outline.get(_agg("id"))
    if explicit is not None:
        if not _ID_RE.fullmatch(explicit):
            raise ConfigError(f"invalid source id {explicit[:80]!r}", file=file, key=name)
        if explicit in taken:
            raise ConfigError(f"duplicate source id {explicit!r}", file=file, key=name)
        return explicit
    base = _SLUG_JUNK.sub("-", name.lower()).strip("-")[:48]
    if not re.search("[a-z]", base):
        base = _SLUG_JUNK.sub("-", host.lower().removeprefix("www.")).strip("-")[:48] or "feed"
    candidate, counter = base, 1
    while candidate in taken or candidate in reserved:
        counter += 1
        candidate = f"{base}-{counter}"
    return candidate


def _seconds(outline: ET.Element, attr: str, file: str | None, name: str) -> timedelta | None:
    raw = outline.get(_agg(attr))
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) <= 0:
        raise ConfigError(f"{attr} must be a positive number of seconds", file=file, key=name)
    return timedelta(seconds=int(raw))
