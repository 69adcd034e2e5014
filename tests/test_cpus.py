"""CPUs from a container's cgroup quota, read from files laid out as the kernel does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aggregator.cpus import available_cpus

AFFINITY = len(os.sched_getaffinity(0))


def _write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="ascii")
    return root


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "100000 100000"}, 1),  # docker run --cpus 1 (v2)
        ({"cpu.max": "150000 100000"}, 2),  # 1.5 CPUs: round up, a pool of one would idle half
        ({"cpu.max": "max 100000"}, None),  # no limit
        ({"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000"}, 1),  # v1
        ({"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, None),
        ({"cpu.max": "garbage"}, None),
        ({}, None),  # no cgroup file system (not Linux, or not mounted)
    ],
)
def test_the_quota_caps_the_affinity(
    tmp_path: Path, files: dict[str, str], limit: int | None
) -> None:
    for name, text in files.items():
        _write(tmp_path, name, text)
    expected = AFFINITY if limit is None else min(AFFINITY, limit)
    assert available_cpus(tmp_path) == expected


def test_a_quota_above_the_affinity_does_not_raise_it(tmp_path: Path) -> None:
    _write(tmp_path, "cpu.max", f"{(AFFINITY + 8) * 100000} 100000")
    assert available_cpus(tmp_path) == AFFINITY
