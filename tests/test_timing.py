"""Backoff and jitter are plain functions of (now, interval, failures, rng)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from aggregator.timing import after_failure, after_success
from aggregator.types import UTC

NOW = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def test_success_waits_one_interval_plus_bounded_jitter() -> None:
    rng = random.Random(1)
    delays = [after_success(NOW, HOUR, jitter=0.2, rng=rng) - NOW for _ in range(200)]
    assert all(HOUR <= delay <= HOUR * 1.2 for delay in delays)
    assert len(set(delays)) > 100  # really jittered


def test_no_jitter_is_exact() -> None:
    assert after_success(NOW, HOUR, jitter=0, rng=random.Random()) == NOW + HOUR


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(1, HOUR / 4), (2, HOUR / 2), (3, HOUR), (4, 2 * HOUR), (10, DAY), (1000, DAY)],
)
def test_failures_back_off_exponentially_up_to_the_cap(failures: int, expected: timedelta) -> None:
    moment = after_failure(NOW, HOUR, failures, cap=DAY, jitter=0, rng=random.Random())
    assert moment - NOW == expected


def test_jitter_never_exceeds_the_cap() -> None:
    rng = random.Random(7)
    for failures in range(1, 40):
        delay = after_failure(NOW, HOUR, failures, cap=DAY, jitter=1.0, rng=rng) - NOW
        assert delay <= DAY


def test_retry_after_is_a_floor_but_capped() -> None:
    rng = random.Random()
    assert (
        after_failure(NOW, HOUR, 1, cap=DAY, jitter=0, rng=rng, retry_after=7200) == NOW + 2 * HOUR
    )
    assert after_failure(NOW, HOUR, 1, cap=DAY, jitter=0, rng=rng, retry_after=10) == NOW + HOUR / 4
    assert after_failure(NOW, HOUR, 1, cap=DAY, jitter=0, rng=rng, retry_after=10**9) == NOW + DAY
