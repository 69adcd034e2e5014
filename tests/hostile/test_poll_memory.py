"""Peak memory of a whole ``aggregator poll`` of the 20 MiB worst cases stays under 250 MB.

One 19 MB item of 860k tiny tags took a poll to 1,174 MB, a 19 MB title to 514 MB.
Here each worst case is served from the loopback server and polled by the CLI in its
own process, with the default parse pool and with none; the figure is the sum of the
peak RSS of the process and of each parse worker (``bench.hostile`` measures it the
same way for the benchmark's table).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from feedserver import FeedServer, static

from bench.hostile import TARGET_MB, poll_peak_mb, worst_cases

CASES = worst_cases()


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        for name, document in CASES.items():
            running.route(f"/{name}", static(document))
        yield running


@pytest.mark.slow
@pytest.mark.parametrize("parse_processes", [-1, 0], ids=["pool", "no-pool"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_poll_of_a_worst_case_stays_under_250_mb(
    server: FeedServer, tmp_path: Path, case: str, parse_processes: int
) -> None:
    code, peak_mb = poll_peak_mb(
        server.url(f"/{case}"), parse_processes=parse_processes, folder=tmp_path
    )
    assert code == 0
    assert 30 < peak_mb < TARGET_MB, peak_mb  # 30: the process was seen at all
