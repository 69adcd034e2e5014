"""The stages import only downwards: the contracts in pyproject.toml's [tool.importlinter].

A module that imports from a stage above its own (say ``store`` reaching into
``pipeline``) makes this fail with the import chain; a new module that belongs to no
declared layer fails too, so the order in ARCHITECTURE.md stays the one in force.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent


def test_no_module_imports_from_a_stage_above_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    status = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    report = capsys.readouterr().out
    assert status == 0, report
    assert "0 broken" in report
