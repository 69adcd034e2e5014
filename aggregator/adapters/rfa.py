"""RFA 自由亚洲电台 (native Plone RSS 1.0/2.0, or feedx): a pure spec.

Dates: RSS 1.0 has only ``dc:date``; when nothing usable is sent, the Plone URL's
trailing ``MMDDYYYYHHMMSS`` is the item's creation time in US Eastern -- a lower
bound on the publish time, far better than none.  Arc-era URLs carry
``/YYYY/MM/DD/``.
"""

from __future__ import annotations

from aggregator.adapters import register
from aggregator.adapters.generic import FEEDX_CLEAN, AdapterSpec, GenericAdapter
from aggregator.dates import DatePolicy, UrlDatePattern

__all__ = ["SPEC", "rfa"]

SPEC = AdapterSpec(
    site_hosts=("rfa.org",),
    clean=FEEDX_CLEAN.extended(
        drop=(
            # lead-image zoom chrome (the caption and credit are content and stay)
            "a#single_image",
            "a.single_image",
            "img[src*='icon-zoom.png']",
            # the related-stories list placed right after the lede: every item a link
            "p:first-of-type + ul:not(:has(> li:not(:has(a))))",
        ),
        host_aliases={"rfa.org": "www.rfa.org"},
    ),
    dates=DatePolicy(
        url_patterns=(
            UrlDatePattern(
                r"-(?P<month>\d{2})(?P<day>\d{2})(?P<year>\d{4})"
                r"(?P<hour>\d{2})(?P<minute>\d{2})(?P<second>\d{2})\.html",
                "America/New_York",
            ),
            UrlDatePattern(
                r"/(?P<year>20\d{2})/(?P<month>\d{2})/(?P<day>\d{2})/", "America/New_York"
            ),
        ),
    ),
    host_aliases={"rfa.org": "www.rfa.org"},
)

rfa = register("rfa")(GenericAdapter(SPEC))
