"""The glibc heap tuning: applied where glibc is, a no-op elsewhere."""

from __future__ import annotations

import platform

import pytest

from aggregator import heap

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")


@glibc
def test_glibc_takes_the_arena_cap_and_trims() -> None:
    assert heap.limit_arenas(heap.ARENAS)
    heap.trim()


def test_without_glibc_both_do_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_glibc", lambda: None)
    assert not heap.limit_arenas()
    heap.trim()
