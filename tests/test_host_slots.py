"""The per-host limit shared by the daemon and the one-shot poll."""

from __future__ import annotations

import asyncio
from collections import Counter

from aggregator.scheduler import HostSlots


def test_hold_never_lets_more_than_the_limit_talk_to_one_host() -> None:
    slots = HostSlots(2)
    running: Counter[str] = Counter()
    most: Counter[str] = Counter()
    order: list[str] = []

    async def poll(url: str, host: str) -> None:
        async with slots.hold(url):
            running[host] += 1
            most[host] = max(most[host], running[host])
            order.append(url)
            await asyncio.sleep(0.01)
            running[host] -= 1

    async def main() -> None:
        busy = [poll(f"https://busy.example/{n}", "busy") for n in range(5)]
        await asyncio.gather(*busy, poll("https://quiet.example/", "quiet"))

    asyncio.run(main())
    assert most == {"busy": 2, "quiet": 1}
    assert len(order) == 6
    # The other host did not wait behind the busy one's queue.
    assert order.index("https://quiet.example/") < 3


def test_try_take_and_give_back_count_by_host_name_not_url() -> None:
    slots = HostSlots(1)
    host = slots.try_take("https://Example.org/a")
    assert host == "example.org"
    assert slots.try_take("http://example.org/b") is None
    assert slots.try_take("https://other.org/") == "other.org"
    slots.give_back(host)
    assert slots.try_take("http://example.org/b") == "example.org"
