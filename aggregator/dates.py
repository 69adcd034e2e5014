"""Date parsing and repair.  Pure: the reference time is always an argument.

Feeds send dates in many dialects (RFC 822 with stray spaces, ISO 8601, Chinese
localised strings, feedx's ``DD/MM/YYYY - HH:MM`` body lines) and some lie about
their offset (Zaobao's Singapore wall-clock time labelled UTC).  Everything is
converted to aware UTC here, once, together with a :class:`DateSource` saying which
fallback produced it, so no repair is ever silent and no article is ever NaN.

Imports from the package: ``types`` only (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from email.utils import parsedate_tz
from functools import cache
from zoneinfo import ZoneInfo

from aggregator.types import DateSource

__all__ = [
    "FUTURE_TOLERANCE",
    "DatePolicy",
    "ParsedDate",
    "UrlDatePattern",
    "date_from_url",
    "parse_date",
    "resolve_published",
    "zone",
]

#: How far after the fetch a date may lie before we call it wrong (clock skew slack).
FUTURE_TOLERANCE = timedelta(hours=1)


@cache
def zone(name: str) -> ZoneInfo:
    """A cached :class:`ZoneInfo`; raises ``ZoneInfoNotFoundError`` for a bad name."""
    return ZoneInfo(name)


@dataclass(frozen=True)
class ParsedDate:
    """A parsed date and whether the text carried its own UTC offset.

    ``explicit`` matters for repair: a time with no offset was *guessed* into a zone
    and may be re-read in the source's zone; one with an offset is trusted unless
    it is impossible (in the future).
    """

    moment: datetime
    explicit: bool


@dataclass(frozen=True)
class UrlDatePattern:
    """A regex over an article URL whose named groups give a date (and maybe a time).

    Groups: ``year``, ``month``, ``day`` (required), ``hour``, ``minute``, ``second``
    (optional).  Without a time the date is a day-precision fallback.  ``timezone``
    is the zone the site's CMS writes the timestamp in.
    """

    regex: str
    timezone: str = "UTC"


@dataclass(frozen=True)
class DatePolicy:
    """Per-source date rules (adapter data).

    ``timezone``: the zone of times without a trustworthy offset; also used to
    re-read a future time as local wall-clock mislabelled UTC (Zaobao's 8 h bug).
    ``body_timezone``: the zone of a feedx body date line that carries no offset
    (RFI's ``31/01/2024 - 19:33`` is Paris time).
    ``url_patterns``: URL date fallbacks, most precise first.
    ``story_date``: a URL date the published time must fall on, in the pattern's
    zone (Zaobao's ``storyYYYYMMDD``).  It is a witness for each item, where a time
    in the future of the fetch is one only while the fetch follows publication
    within hours: a feed time off its story date is re-read as local wall-clock
    (with ``repair_future_skew``) and else left for the URL's day.
    """

    timezone: str | None = None
    repair_future_skew: bool = False
    body_timezone: str | None = None
    url_patterns: tuple[UrlDatePattern, ...] = ()
    story_date: UrlDatePattern | None = None


_SPACES = re.compile(r"\s+")
_ISO = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2}|[+-]\d{2})?$",
    re.IGNORECASE,
)
# 星期六，2025年2月1日23:05:24 -0500  /  2021年11月24日 09:15
_CJK = re.compile(
    r"^(?:星期.|周.)?[，,\s]*(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日"
    r"\s*(?:(?:星期.|周.)[，,\s]*)?(?:(上午|下午)?\s*(\d{1,2})\s*[:：时]\s*(\d{1,2})"
    r"(?:\s*[:：分]\s*(\d{1,2})\s*秒?)?)?\s*(?:(GMT|UTC|Z)?\s*([+-]\d{2}:?\d{2}))?$"
)
# feedx RFI body line: 31/01/2024 - 19:33 (day first: RFI is a French site).
_DMY = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:\s*-?\s*(\d{1,2})[:h](\d{2})(?::(\d{2}))?)?$")


def _offset(text: str | None) -> tzinfo | None:
    if not text:
        return None
    if text.upper() in ("Z", "GMT", "UTC"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(text)
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _build(
    fields: Sequence[int], offset: tzinfo | None, default_tz: tzinfo | None
) -> ParsedDate | None:
    try:
        f = [*fields, 0, 0, 0, 0][:7]
        naive = datetime(f[0], f[1], f[2], f[3], f[4], f[5], f[6])
    except (ValueError, OverflowError):
        return None
    if offset is not None:
        return ParsedDate(naive.replace(tzinfo=offset).astimezone(UTC), True)
    local = naive.replace(tzinfo=default_tz or UTC)
    return ParsedDate(local.astimezone(UTC), False)


def _rfc822(text: str, default_tz: tzinfo | None) -> ParsedDate | None:
    parsed = parsedate_tz(text)
    if parsed is None:
        return None
    fields = [int(part) for part in parsed[:6]]
    if fields[0] < 100:  # two-digit years: RFC 2822 says 00-49 -> 20xx
        fields[0] += 2000 if fields[0] < 50 else 1900
    tz_seconds = parsed[9]
    # parsedate_tz gives 0 both for "+0000" and for no zone at all; tell them apart.
    has_zone = tz_seconds not in (None, 0) or bool(
        re.search(r"(?:[+-]\d{4}|\b(?:GMT|UT|UTC|Z|[ECMP][SD]T)\b)\s*$", text, re.IGNORECASE)
    )
    if has_zone:
        offset: tzinfo | None = timezone(timedelta(seconds=tz_seconds or 0))
    else:
        offset = None
    return _build(fields, offset, default_tz)


def _iso(text: str, default_tz: tzinfo | None) -> ParsedDate | None:
    match = _ISO.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, tz_text = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    fields = [int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)]
    try:
        offset = _offset(tz_text)
    except ValueError:
        return None
    return _build([*fields, micro], offset, default_tz)


def _cjk(text: str, default_tz: tzinfo | None) -> ParsedDate | None:
    match = _CJK.match(text)
    if not match:
        return None
    year, month, day, meridiem, hour, minute, second, _zone_name, tz_text = match.groups()
    hour_value = int(hour or 0)
    if meridiem == "下午" and hour_value < 12:
        hour_value += 12
    elif meridiem == "上午" and hour_value == 12:
        hour_value = 0
    fields = [int(year), int(month), int(day), hour_value, int(minute or 0), int(second or 0)]
    try:
        offset = _offset(tz_text) or (UTC if _zone_name else None)
    except ValueError:
        return None
    return _build(fields, offset, default_tz)


def _dmy(text: str, default_tz: tzinfo | None) -> ParsedDate | None:
    match = _DMY.match(text)
    if not match:
        return None
    day, month, year, hour, minute, second = match.groups()
    fields = [int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)]
    return _build(fields, None, default_tz)


def parse_date(text: str | None, *, default_tz: tzinfo | None = None) -> ParsedDate | None:
    """Parse one date string in any dialect we have seen; ``None`` if unusable.

    Times without an offset are read in ``default_tz`` (UTC if not given) and marked
    not ``explicit``.  Never raises on bad input: a feed's date is data, not code.
    """
    if not text:
        return None
    cleaned = _SPACES.sub(" ", text.replace("\u3000", " ")).strip()
    if not cleaned:
        return None
    for parser in (_iso, _rfc822, _cjk, _dmy):
        try:
            result = parser(cleaned, default_tz)
        except (ValueError, OverflowError, IndexError):
            result = None
        if result is not None:
            return result
    return None


def date_from_url(url: str | None, patterns: Iterable[UrlDatePattern]) -> datetime | None:
    """The first date a pattern finds in ``url``, as aware UTC, else ``None``."""
    if not url:
        return None
    for pattern in patterns:
        for match in re.finditer(pattern.regex, url):
            groups = match.groupdict()
            try:
                naive = datetime(
                    int(groups["year"]),
                    int(groups["month"]),
                    int(groups["day"]),
                    int(groups.get("hour") or 0),
                    int(groups.get("minute") or 0),
                    int(groups.get("second") or 0),
                )
            except (ValueError, TypeError, KeyError):
                continue
            return naive.replace(tzinfo=zone(pattern.timezone)).astimezone(UTC)
    return None


def _relabelled(moment: datetime, policy: DatePolicy) -> datetime | None:
    """``moment``'s UTC wall-clock read in the source's zone: Zaobao's 8-hour repair."""
    if not (policy.repair_future_skew and policy.timezone):
        return None
    wall = moment.replace(tzinfo=None)
    return wall.replace(tzinfo=zone(policy.timezone)).astimezone(UTC)


def _repair(parsed: ParsedDate, policy: DatePolicy, fetched_at: datetime) -> ParsedDate | None:
    """Apply the Zaobao-style skew repair; ``None`` if the date stays impossible.

    A time more than :data:`FUTURE_TOLERANCE` after the fetch cannot be a publish
    time.  When the source has a zone, the likeliest story is local wall-clock
    mislabelled UTC, so the wall-clock is re-read in that zone.
    """
    limit = fetched_at + FUTURE_TOLERANCE
    if parsed.moment <= limit:
        return parsed
    relabelled = _relabelled(parsed.moment, policy)
    if relabelled is not None and relabelled <= limit:
        return ParsedDate(relabelled, False)
    return None


def _story_day(url: str | None, policy: DatePolicy) -> tuple[date, tzinfo] | None:
    """The day ``policy.story_date`` finds in ``url``, and the zone it is a day in."""
    if policy.story_date is None:
        return None
    found = date_from_url(url, (policy.story_date,))
    if found is None:
        return None
    where = zone(policy.story_date.timezone)
    return found.astimezone(where).date(), where


def _on_story_day(
    parsed: ParsedDate,
    policy: DatePolicy,
    story: tuple[date, tzinfo],
    fetched_at: datetime,
) -> tuple[datetime, DateSource] | None:
    """The feed time as read, else relabelled, whichever falls on the story day.

    Never later than the fetch: a time within :data:`FUTURE_TOLERANCE` after it is
    clock skew and is brought back to it.  ``None`` when neither reading fits.
    """
    day, where = story
    read_as = (
        DateSource.FEED if parsed.explicit or policy.timezone is None else DateSource.FEED_LOCAL
    )
    candidates = [(parsed.moment, read_as)]
    relabelled = _relabelled(parsed.moment, policy)
    if relabelled is not None:
        candidates.append((relabelled, DateSource.FEED_LOCAL))
    for moment, source in candidates:
        if moment <= fetched_at + FUTURE_TOLERANCE and moment.astimezone(where).date() == day:
            return min(moment, fetched_at), source
    return None


def resolve_published(
    *,
    feed_dates: Sequence[str | None],
    fetched_at: datetime,
    policy: DatePolicy = DatePolicy(),
    body_date: str | None = None,
    url: str | None = None,
) -> tuple[datetime, DateSource]:
    """Pick the published time from every clue, best first, and say which won.

    Order: the entry's own dates (``feed_dates``: published, then updated), a feedx
    body date line, URL timestamps (policy order), and finally ``fetched_at``
    flagged :attr:`DateSource.FETCHED`.  Dates more than an hour in the future are
    repaired or skipped.  A day-only URL date is capped at ``fetched_at`` so a
    fallback never invents a future article.
    """
    if fetched_at.tzinfo is None:
        raise ValueError("fetched_at must be timezone-aware")
    fetched_at = fetched_at.astimezone(UTC)
    local = zone(policy.timezone) if policy.timezone else None
    story = _story_day(url, policy)
    for text in feed_dates:
        parsed = parse_date(text, default_tz=local)
        if parsed is None:
            continue
        if story is not None:
            witnessed = _on_story_day(parsed, policy, story, fetched_at)
            if witnessed is not None:
                return witnessed
            continue
        repaired = _repair(parsed, policy, fetched_at)
        if repaired is None:
            continue
        trusted = repaired.explicit or local is None
        return repaired.moment, DateSource.FEED if trusted else DateSource.FEED_LOCAL
    if body_date:
        body_tz = zone(policy.body_timezone) if policy.body_timezone else local
        parsed = parse_date(body_date, default_tz=body_tz)
        if parsed is not None and parsed.moment <= fetched_at + FUTURE_TOLERANCE:
            return parsed.moment, DateSource.BODY
    from_url = date_from_url(url, policy.url_patterns)
    if from_url is not None and from_url <= fetched_at + timedelta(days=1):
        return min(from_url, fetched_at), DateSource.URL
    return fetched_at, DateSource.FETCHED
