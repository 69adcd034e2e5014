"""Shared helpers for the hostile-input suite.

``tests/`` is put on ``sys.path`` so ``from feedserver import ...`` works when this
folder is run on its own (pytest's default import mode only adds ``tests/hostile``),
and the repository root, so the memory test measures with the benchmark's own code.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
for folder in (TESTS, TESTS.parent):  # the repository root too: ``bench.hostile``
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
