"""The bounds of one fetch and the header values we send and read.

Every value a server sends is parsed *totally* here: ``Retry-After``,
``Content-Length``, ``ETag`` and ``Last-Modified`` of any length or bytes give a
number, a clamp or "no advice", never an exception, so a hostile header cannot fail a
poll (tests/hostile/README.md).

Imports from the package: ``netguard`` (``IPNetwork``) and the package's ``__version__``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from aggregator import __version__
from aggregator.netguard import IPNetwork

DEFAULT_USER_AGENT = f"aggregator/{__version__} (+https://github.com/aggregator/aggregator)"
# Feed types first; */* last so a server with odd content negotiation still answers.
ACCEPT = (
    "application/atom+xml, application/rss+xml, application/feed+json, "
    "application/rdf+xml;q=0.9, application/xml;q=0.9, text/xml;q=0.9, "
    "application/json;q=0.8, */*;q=0.5"
)
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
_VALIDATOR_MAX = 1024  # longer ETags / Last-Modified values are not sent back
RETRY_AFTER_MAX = 366 * 24 * 3600.0  # a longer Retry-After counts as a year


@dataclass(frozen=True)
class FetchLimits:
    """Bounds on one fetch.

    The defaults sit among those of established aggregators: timeouts between
    CommaFeed's 5/10/10 s and Miniflux's 20 s, a body cap near Miniflux's 15 MiB and
    tt-rss's 16 MiB, fewer redirects than Go's 10 (each hop is re-checked anyway).
    """

    connect_timeout: float = 5.0
    read_timeout: float = 15.0  # idle: the longest gap between two reads
    total_timeout: float = 30.0  # deadline for the whole fetch, redirects and body included
    max_bytes: int = 20 * 1024 * 1024  # after decompression
    max_redirects: int = 5
    user_agent: str = DEFAULT_USER_AGENT
    allow_private: bool = False  # every source may live on a private address (tests, intranets)
    allow_networks: tuple[IPNetwork, ...] = field(default=())  # exact private exceptions

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "total_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"FetchLimits.{name} must be positive")
        if self.max_bytes < 1 or self.max_redirects < 0:
            raise ValueError("FetchLimits.max_bytes must be >= 1 and max_redirects >= 0")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date.

    Garbage means "no advice" (``None``) rather than an error: the scheduler then
    falls back to its own backoff.  A date in the past means "now" (``0.0``).  Any
    number, however many digits, is clamped to :data:`RETRY_AFTER_MAX` (a server
    sent 400 nines, which ``float`` cannot hold); the backoff cap clamps further.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        if len(value) > len(str(int(RETRY_AFTER_MAX))):
            return RETRY_AFTER_MAX
        return min(float(value), RETRY_AFTER_MAX)
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000" parses naive; HTTP-dates are GMT by definition
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(0.0, seconds), RETRY_AFTER_MAX)


def _validator(value: str | None) -> str | None:
    """An ``ETag`` or ``Last-Modified`` worth sending back, else ``None``.

    Each is echoed in the next request's headers, which must be printable ASCII: a
    validator with other bytes (or a 60 KB one) would fail every later poll of the
    source, so it is dropped and the next fetch is simply unconditional.
    """
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _VALIDATOR_MAX or not (value.isascii() and value.isprintable()):
        return None
    return value


def _declared_length(value: str | None) -> int | None:
    """A ``Content-Length`` as a number; ``None`` when it is not plain ASCII digits.

    ``str.isdigit`` alone accepts "²" and "٣", which ``int`` then refuses or misreads,
    and ``int`` refuses more than 4,300 digits: so ASCII only, and any value longer
    than 19 digits counts as larger than any cap.
    """
    value = (value or "").strip()
    if not (value.isascii() and value.isdigit()):
        return None
    return int(value) if len(value) <= 19 else 10**19
