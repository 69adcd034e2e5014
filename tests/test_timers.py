"""The daemon's timers (``scheduler._every``): a steady beat, runs that overlap never,
missed runs merged, and a run that raises does not stop the beat."""

from __future__ import annotations

import asyncio
import logging

import pytest

from aggregator.scheduler import _every


def _beats(seconds: float, work: float, *, first: float, duration: float) -> list[float]:
    """Start times (loop clock, from the timer's start) of ``_every`` runs taking ``work`` s."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        runs: list[float] = []
        running = 0

        async def job() -> None:
            nonlocal running
            running += 1
            assert running == 1, "two runs at once"
            runs.append(loop.time() - started)
            await asyncio.sleep(work)
            running -= 1

        timer = asyncio.create_task(_every(seconds, job, first=first))
        await asyncio.sleep(duration)
        timer.cancel()
        return runs

    return asyncio.run(main())


def test_runs_first_after_its_delay_then_on_the_beat() -> None:
    runs = _beats(0.2, 0.0, first=0.1, duration=0.85)
    assert len(runs) == 4
    for index, at in enumerate(runs):
        assert at == pytest.approx(0.1 + index * 0.2, abs=0.08)


def test_a_run_longer_than_the_interval_merges_the_missed_runs() -> None:
    # Runs take 0.5 s on a 0.2 s beat: each next run starts on the first beat after
    # the last one ended (0.6, 1.2), never twice at once and never to catch up.
    runs = _beats(0.2, 0.5, first=0.0, duration=1.5)
    assert len(runs) == 3
    assert runs[1] == pytest.approx(0.6, abs=0.08)
    assert runs[2] == pytest.approx(1.2, abs=0.08)


def test_a_failing_run_is_logged_and_the_beat_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk on fire")

    async def main() -> None:
        timer = asyncio.create_task(_every(0.05, flaky, first=0))
        await asyncio.sleep(0.18)
        timer.cancel()

    with caplog.at_level(logging.ERROR, logger="aggregator.scheduler"):
        asyncio.run(main())
    assert calls >= 3
    [record] = caplog.records
    assert record.getMessage() == "flaky failed; it runs again in 0.05 s"
    assert record.exc_info is not None and "disk on fire" in str(record.exc_info[1])
