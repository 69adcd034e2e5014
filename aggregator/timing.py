"""When to poll next: pure decisions, given ``now`` and a random source.

Kept apart from the scheduler so that backoff and jitter can be tested as plain
functions, and so the same rules apply whether the poll ran in this process or
in another instance sharing the database.

Imports from the package: nothing of the package (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

__all__ = ["after_failure", "after_success"]


def _jittered(delay: timedelta, jitter: float, rng: random.Random) -> timedelta:
    """Add up to ``jitter`` x ``delay`` so that sources do not fall into lock-step."""
    return delay + delay * (jitter * rng.random())


def after_success(
    now: datetime, interval: timedelta, *, jitter: float, rng: random.Random
) -> datetime:
    """The normal cadence: one interval, plus jitter."""
    return now + _jittered(interval, jitter, rng)


def after_failure(
    now: datetime,
    interval: timedelta,
    failures: int,
    *,
    cap: timedelta,
    jitter: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> datetime:
    """Exponential backoff from the normal interval, capped, never sooner than Retry-After.

    The first failure retries after a quarter of the interval (a blip should not
    cost a whole interval); each further one doubles the delay, up to ``cap``.
    """
    exponent = min(max(failures, 1) - 1, 32)
    delay = min(interval / 4 * (2**exponent), cap)
    delay = min(_jittered(delay, jitter, rng), cap)
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=min(retry_after, cap.total_seconds())))
    return now + delay
