"""The stages import only downwards: the contracts in pyproject.toml's [tool.importlinter].

A module that imports from a stage above its own (say ``store`` reaching into
``pipeline``) makes this fail with the import chain; a new module that belongs to no
declared layer fails too, so the order in ARCHITECTURE.md stays the one in force.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# In a process of its own: import-linter configures logging (dictConfig), which would
# silence the loggers of every later test in this one.
LINT = (
    "import sys; from importlinter.cli import lint_imports; "
    "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True))"
)


def test_no_module_imports_from_a_stage_above_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LINT], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
