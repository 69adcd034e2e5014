"""RFI 法广 (feedx full text or native): a pure spec.

feedx puts a Paris-time ``DD/MM/YYYY - HH:MM`` line at the top of the body (a
date fallback) and a share bar at the end; links carry a ``/YYYYMMDD-`` token.
"""

from __future__ import annotations

from aggregator.adapters import register
from aggregator.adapters.generic import FEEDX_CLEAN, AdapterSpec, GenericAdapter
from aggregator.dates import DatePolicy, UrlDatePattern

__all__ = ["SPEC", "rfi"]

SPEC = AdapterSpec(
    site_hosts=("rfi.fr", "rfi.my"),
    # "… – 法国国际广播电台 - RFI" on 140 of 350 archived titles
    title_site_names=("法国国际广播电台", "法國國際廣播電台", "RFI"),
    clean=FEEDX_CLEAN.extended(
        drop=(
            "div:-soup-contains-own('分享 :')",
            ".m-interstitial",
            ".m-em-quote svg",
            "aside[data-org-type]",
        ),
        host_aliases={"rfi.fr": "www.rfi.fr"},
    ),
    dates=DatePolicy(
        body_timezone="Europe/Paris",
        url_patterns=(
            UrlDatePattern(r"/(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})-", "Europe/Paris"),
        ),
    ),
    host_aliases={"rfi.fr": "www.rfi.fr"},
    body_date_line=True,
)

rfi = register("rfi")(GenericAdapter(SPEC))
