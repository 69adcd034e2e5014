"""VOA 美国之音 (feedx full text or native Pangea): a pure spec.

feedx puts a GMT date line at the top of the body (a date fallback) and proxies
images through images.weserv.nl (unwrapped by :mod:`aggregator.clean` for every
source); article slugs end ``-YYYYMMDD/<id>.html``.
"""

from __future__ import annotations

from aggregator.adapters import register
from aggregator.adapters.generic import FEEDX_CLEAN, AdapterSpec, GenericAdapter
from aggregator.dates import DatePolicy, UrlDatePattern

__all__ = ["SPEC", "voa"]

_ALIASES = {"m.voachinese.com": "www.voachinese.com", "voachinese.com": "www.voachinese.com"}

SPEC = AdapterSpec(
    site_hosts=("voachinese.com", "voanews.com"),
    clean=FEEDX_CLEAN.extended(
        drop=(".wsw__embed", "ul.author-hlight", ".comments-pangea"),
        host_aliases=_ALIASES,
    ),
    dates=DatePolicy(
        url_patterns=(
            UrlDatePattern(
                r"-(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})/\d+\.html", "America/New_York"
            ),
        ),
    ),
    host_aliases=_ALIASES,
    body_date_line=True,
)

voa = register("voa")(GenericAdapter(SPEC))
