"""How many CPUs this process may really use: affinity, and a container's CPU quota.

``os.cpu_count()`` is the host's count.  A container limited to two CPUs on a
64-core host (``docker run --cpus 2``, a Kubernetes CPU limit) still sees 64, and
a parse pool of 64 processes there spends its quota on switching between them,
each with its own memory.  The limit lives in the cgroup: ``cpu.max`` (v2,
``"QUOTA PERIOD"`` or ``"max PERIOD"``) or ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``
(v1, quota ``-1`` for none).  ``sched_getaffinity`` covers ``--cpuset-cpus`` and
``taskset``.

Imports from the package: nothing of the package (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["available_cpus"]

CGROUP = Path("/sys/fs/cgroup")


def available_cpus(cgroup: Path = CGROUP) -> int:
    """The CPUs we may use: the smaller of the affinity mask and the cgroup quota, >= 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    quota = _quota(cgroup)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def _quota(cgroup: Path) -> float | None:
    """CPUs' worth of time per period the cgroup allows; ``None`` for no limit."""
    v2 = _read(cgroup / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return _ratio(quota, period)
    for folder in (cgroup / "cpu", cgroup / "cpu,cpuacct", cgroup):
        quota_us = _read(folder / "cpu.cfs_quota_us")
        if quota_us is not None:
            return _ratio(quota_us, _read(folder / "cpu.cfs_period_us") or "")
    return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        share = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):  # "max", "-1", or unreadable: no limit
        return None
    return share if share > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
