"""The default adapter, driven entirely by a declarative :class:`AdapterSpec`.

Every source-specific adapter is this adapter with a different spec (miniflux's
"rewrite rules as data").  Rules shared by several sources live here once
(:data:`COMMON_CLEAN`, :data:`FEEDX_CLEAN`) and are extended, never copied.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from aggregator.adapters import register
from aggregator.clean import CleanSpec, clean_html, extract_date_line, text_content
from aggregator.dates import DatePolicy, resolve_published
from aggregator.errors import AdapterError
from aggregator.types import Article, RawEntry, Source
from aggregator.urls import canonical_url, is_http_url

__all__ = [
    "COMMON_CLEAN",
    "FEEDX_CLEAN",
    "AdapterSpec",
    "GenericAdapter",
    "generic",
    "normalize_title",
]

#: An image with neither a ``src`` nor a lazy-load attribute to promote into one
#: (RFI's ``<img alt="RFI Studio"/>``): an empty box on every reader.
_IMAGE_WITHOUT_SOURCE = "img" + "".join(
    f":not([{attr}])" for attr in ("src", *CleanSpec().lazy_attrs)
)

#: Ads, paywall promos and share widgets seen across all four sources.
COMMON_CLEAN = CleanSpec(
    drop=(
        _IMAGE_WITHOUT_SOURCE,
        # ad slots
        "section#imu",
        "[id^=dfp-ad-]",
        "#innity-in-post",
        "[id^=innity-]",
        "[class*=innity-]",
        "ins.adsbygoogle",
        # paywall / subscribe promos
        ".cx_paywall_placeholder",
        "a[href*='subscribe.sph.com.sg']",
        "img[src*='freemium_images/paywall_']",
        "img[data-src*='freemium_images/paywall_']",
        ".overlay-microtransaction",
        # share bars
        "a[href^='whatsapp:']",
        "a[href*='web.whatsapp.com/send']",
        "a[href*='api.whatsapp.com/send']",
        "a[href*='x.com/intent/']",
        "a[href*='twitter.com/intent/']",
        "a[href*='facebook.com/dialog/share']",
        "a[href*='facebook.com/sharer']",
        "share-button",
        "share-modal",
        "[data-root-share]",
        ".share-button",
        # newsletter / app promos
        "[data-selfpromo-newsletter]",
        "[data-selfpromo-app]",
        ".o-self-promo",
        ".read-on-app-cover",
        # hit counters
        "img[src*='/plus/count.php']",
    ),
    # feedx.net's promo footer; harmless to look for in any feed, and any feed may
    # be a feedx re-publication.
    cut_markers=("获取更多RSS",),
)

#: What feedx adds on top (the footer is already common); kept as a name so
#: feedx-specific rules have one home.
FEEDX_CLEAN = COMMON_CLEAN


@dataclass(frozen=True)
class AdapterSpec:
    """Everything that makes one source different, as data.

    ``clean``: body junk rules.  ``dates``: timezone, skew repair and fallbacks.
    ``host_aliases``: mirror host -> canonical host for the article link (the
    body's links use ``clean.host_aliases``).  ``body_date_line``: the body may
    start with a feedx date line to strip and use as a date fallback.
    ``site_hosts``: the publisher's own hosts, so an archived article whose file
    does not name its source (the bare layout) can still be given to its adapter.
    ``title_site_names``: names of the site that feeds append to titles after a
    dash or bar (RFI's `` – 法国国际广播电台 - RFI``); they are the site's, not the
    article's, and only make titles longer and file names noisier.
    ``content_selector``: CSS selectors of the article body on the publisher's pages
    (full text); the first that matches wins over the generic extraction.
    """

    clean: CleanSpec = COMMON_CLEAN
    dates: DatePolicy = DatePolicy()
    host_aliases: Mapping[str, str] = field(default_factory=dict)
    body_date_line: bool = False
    site_hosts: tuple[str, ...] = ()
    title_site_names: tuple[str, ...] = ()
    content_selector: tuple[str, ...] = ()


_SPACE = re.compile(r"\s+")


def _decode_entities(text: str) -> str:
    """Decode entities until none is left.

    Feeds double-escape titles (``&amp;#22338;`` reaches us as ``&#22338;`` after
    XML parsing), so one decoding is not always enough; and a title that still held
    an entity would decode once more each time an export is imported again.  Each
    decoding that changes the text shortens it, so the loop ends.
    """
    decoded = html.unescape(text)
    while decoded != text:
        text, decoded = decoded, html.unescape(decoded)
    return text


def normalize_title(raw: str | None) -> str:
    """Plain, tag-free, single-spaced title with no entity left to decode ('' if none)."""
    if not raw:
        return ""
    # Tags are stripped before entities are decoded, so an escaped "&lt;tag&gt;" in a
    # title survives as text instead of being parsed away as markup.
    text = _decode_entities(text_content(raw) if "<" in raw else raw)
    return _SPACE.sub(" ", text.replace("\u3000", " ")).strip()


def _site_suffix(names: tuple[str, ...]) -> re.Pattern[str] | None:
    """A pattern for any run of `` – name`` / `` - name`` / `` | name`` at a title's end."""
    if not names:
        return None
    alternatives = "|".join(re.escape(name) for name in names)
    return re.compile(rf"(?:\s+[-–—|]\s+(?:{alternatives}))+$")


class GenericAdapter:
    """Normalize entries by an :class:`AdapterSpec`; stateless, so one instance is shared."""

    def __init__(self, spec: AdapterSpec | None = None) -> None:
        self.spec = spec or AdapterSpec()
        self._site_suffix = _site_suffix(self.spec.title_site_names)

    def __repr__(self) -> str:
        return f"GenericAdapter({self.spec!r})"

    def handles(self, link: str) -> bool:
        """Is ``link`` on one of this publisher's own hosts?"""
        host = (urlsplit(link).hostname or "").lower()
        return any(host == site or host.endswith("." + site) for site in self.spec.site_hosts)

    def title(self, raw: str | None) -> str:
        """The normalized title without the site's name; kept whole if that is all it says."""
        title = normalize_title(raw)
        if self._site_suffix is None:
            return title
        return self._site_suffix.sub("", title) or title

    def link(self, entry: RawEntry, source: Source) -> str | None:
        """The canonical http(s) article link; a URL guid stands in for a missing one.

        Only http(s) survives: the link is exported as an ``href`` (feeds, archive,
        web page), so a ``javascript:`` or ``data:`` link is treated as no link at all.
        """
        for raw in (entry.link, entry.guid if is_http_url(entry.guid) else None):
            if raw and raw.strip():
                link = canonical_url(raw, source.url, host_aliases=self.spec.host_aliases)
                if is_http_url(link):
                    return link
        return None

    def __call__(self, entry: RawEntry, source: Source, fetched_at: datetime) -> Article:
        link = self.link(entry, source)
        if link is None:
            raise AdapterError(
                "entry has neither an http(s) link nor a URL guid",
                source=source.id,
                url=source.url,
                guid=entry.guid,
            )
        raw_body = entry.content or entry.summary or ""
        date_line: str | None = None
        if self.spec.body_date_line:
            date_line, raw_body = extract_date_line(raw_body.lstrip())
        body = clean_html(raw_body, base_url=link, spec=self.spec.clean)
        title = self.title(entry.title)
        if not title:
            # Normalized like a feed title, so feeding this article back changes nothing.
            title = normalize_title(html.escape(text_content(body)[:80], quote=False))
        if not title:
            raise AdapterError(
                "entry has no title and no text", source=source.id, url=link, guid=entry.guid
            )
        published, date_source = resolve_published(
            feed_dates=(entry.published, entry.updated),
            fetched_at=fetched_at,
            policy=self.spec.dates,
            body_date=date_line,
            url=link,
        )
        return Article(
            source_id=source.id,
            source_name=source.name,
            title=title,
            link=link,
            body=body,
            published=published,
            fetched=fetched_at,
            tags=(source.name,),
            categories=(source.name,),
            guid=entry.guid,
            date_source=date_source,
        )


generic = register("generic")(GenericAdapter())
