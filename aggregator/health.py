"""Which sources are failing, and why, in words an operator reads first.

``/healthz``, the HTML page and ``aggregator sources`` all show the same verdict
from the stored source states, so the three never disagree.  A source is
*failing* when it is configured, enabled, and its last poll failed (or the server
disabled it with a 410); a source never polled, or one whose feed had a minor
problem but was read, is not.

Imports from the package: ``types`` only (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from aggregator.types import SourceState

__all__ = ["Failing", "cause_first", "failing"]

# The type name ``AggregatorError.__str__`` puts before a cause's own message.
_CAUSE_TYPE = re.compile(r"[A-Z][A-Za-z0-9_]*(?:Error|Exception|Timeout|Refused): ")


@dataclass(frozen=True)
class Failing:
    source_id: str
    message: str
    kind: str | None
    since: datetime | None
    next_retry: datetime | None  # None: disabled, no retry until the configuration changes
    failures: int


def failing(states: Iterable[SourceState], enabled: Collection[str]) -> list[Failing]:
    """The failing sources among ``enabled``, in source id order."""
    found = []
    for state in sorted(states, key=lambda state: state.source_id):
        if state.source_id not in enabled:
            continue
        if not (state.disabled_reason or state.consecutive_failures):
            continue
        message = state.disabled_reason or state.last_error or state.last_error_kind or "failed"
        found.append(
            Failing(
                source_id=state.source_id,
                message=cause_first(message, state),
                kind=state.last_error_kind,
                since=state.failing_since or state.last_attempt,
                next_retry=None if state.disabled_reason else state.next_poll,
                failures=state.consecutive_failures,
            )
        )
    return found


def cause_first(message: str, state: SourceState) -> str:
    """A stored error message as a person reads it: the underlying cause first.

    Stored messages read ``what failed: source=id url=…: CauseType: cause`` (quoted,
    ``source='id'``, when stored by an earlier version).
    Where the source's id and URL are shown anyway, they only push the cause out of
    sight, so they are dropped; the cause (``DNS lookup of 'feedx.net' failed``) then
    leads, and our summary (``network error``) follows in parentheses.
    """
    shown = re.compile(
        "|".join(
            rf"(?<!\S){key}=(?:{re.escape(value)}|{re.escape(repr(value))})(?!\S)"
            for key, value in (("source", state.source_id), ("url", state.url))
        )
    )
    parts = []
    for part in message.split(": "):
        part = shown.sub("", part)
        if part.strip():
            parts.append(" ".join(part.split()))
    summary, rest = (parts[0], ": ".join(parts[1:])) if parts else (message, "")
    found = _CAUSE_TYPE.match(rest)
    if found is None:
        return ": ".join(parts)
    return f"{rest[found.end() :]} ({summary})"
