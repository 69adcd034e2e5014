"""The container image installs ``requirements.lock`` with ``--no-deps``: a package
the project needs and the lock lacks is simply missing from the image (the lock once
lacked charset-normalizer, OpenCC and trafilatura, so the image could not even parse a
feed).  So the lock must hold the whole dependency closure of ``aggregator[postgres]``
as installed here, and nothing the project no longer needs."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK = Path(__file__).resolve().parent.parent / "requirements.lock"


def _locked() -> set[str]:
    names: set[str] = set()
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            names.add(canonicalize_name(Requirement(line).name))
    return names


def _closure(name: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """``name`` and every distribution it requires (with ``extras``), as installed."""
    seen: set[str] = set()
    pending = [(name, extras)]
    while pending:
        current, wanted = pending.pop()
        try:
            requires = distribution(current).requires or []
        except PackageNotFoundError:
            continue  # an optional dependency of a dependency, not installed
        for text in requires:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is not None and not any(
                marker.evaluate({"extra": extra}) for extra in (wanted or {""})
            ):
                continue
            key = canonicalize_name(requirement.name)
            if key == "aggregator" or key in seen:
                continue
            seen.add(key)
            pending.append((key, frozenset(requirement.extras)))
    return seen


def test_the_lock_holds_every_package_the_image_needs() -> None:
    needed = _closure("aggregator", frozenset({"postgres"}))
    assert "charset-normalizer" in needed  # the closure is really computed
    assert sorted(needed - _locked()) == []


def test_the_lock_holds_nothing_the_project_does_not_need() -> None:
    needed = _closure("aggregator", frozenset({"postgres"}))
    assert sorted(_locked() - needed) == []
