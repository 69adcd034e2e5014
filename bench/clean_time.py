"""Time the cleaner alone over the real bodies of ``tests/fixtures/realdata``.

usage: python -m bench.clean_time [ROUNDS]

Each post goes through its source's clean spec as the adapter runs it (date line
split off first); the figure is the best of ROUNDS passes over all posts, so
another process's burst does not count.  Point ``PYTHONPATH`` at another
checkout's ``aggregator`` to time that one on the same bodies.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from aggregator.adapters import get_adapter
from aggregator.adapters.generic import GenericAdapter
from aggregator.clean import clean_html, extract_date_line

BODIES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "realdata" / "bodies"
_ADAPTERS = {"联合早报": "zaobao", "法广": "rfi", "美国之音": "voa", "自由亚洲电台": "rfa"}
_AUTHOR = re.compile(r"^author: \"?(.*?)\"?$", re.M)


def _jobs() -> list[tuple[str, GenericAdapter]]:
    jobs = []
    for path in sorted(BODIES.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        author = _AUTHOR.search(text)
        adapter = get_adapter(_ADAPTERS.get(author.group(1) if author else "", "generic"))
        assert isinstance(adapter, GenericAdapter)
        body = (
            text.split("\n------\n", 1)[-1] if "\n------\n" in text else text.split("---\n", 2)[2]
        )
        jobs.append((body, adapter))
    return jobs


def _best(jobs: list[tuple[str, GenericAdapter]], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for body, adapter in jobs:
            if adapter.spec.body_date_line:
                _date, body = extract_date_line(body.lstrip())
            clean_html(body, base_url="https://www.example.org/a", spec=adapter.spec.clean)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    every = _jobs()
    # Bodies with the feedx footer are where a cleaner that drops the article wrapper
    # has far less left to clean: they are timed apart from the rest.
    plain = [job for job in every if "获取更多RSS" not in job[0]]
    for label, jobs in (("all", every), ("without the feedx footer", plain)):
        best = _best(jobs, rounds)
        print(
            f"{label}: {len(jobs)} bodies, best of {rounds}: {best:.3f} s CPU, "
            f"{best / len(jobs) * 1e3:.3f} ms per body"
        )


if __name__ == "__main__":
    main()
