"""Fuzzing the parse-and-adapt path, and replaying every crash it ever found.

The generator (fuzzing.py) builds feed documents with random structure, entities,
DTDs, encodings, truncation and byte flips.  ``HOSTILE_FUZZ_EXAMPLES`` scales the run
(default ~20 s on one core); a crash is written to tests/fixtures/hostile/ by the
target before the test fails, and ``test_replay_saved_crashes`` keeps it fixed.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile.fuzzing import FIXTURES, HEADERS, feed_documents, run_target

EXAMPLES = int(os.environ.get("HOSTILE_FUZZ_EXAMPLES", "600"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(feed_documents(), HEADERS)
def test_fuzz_parse_and_adapt(document: bytes, headers: dict[str, str] | None) -> None:
    run_target(document, headers)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048), HEADERS)
def test_arbitrary_bytes_only_raise_parse_or_adapter_errors(
    content: bytes, headers: dict[str, str] | None
) -> None:
    run_target(content, headers)


SAVED = sorted(FIXTURES.glob("fuzz-*.bin"))


@pytest.mark.parametrize("path", SAVED, ids=[path.name for path in SAVED])
def test_replay_saved_crashes(path: os.PathLike[str]) -> None:
    from pathlib import Path

    run_target(Path(path).read_bytes())
