"""Adapters: one :class:`RawEntry` -> one normalized :class:`Article`.  Pure.

An adapter is any callable ``(entry, source, fetched_at) -> Article`` that raises
:class:`~aggregator.errors.AdapterError` for an entry it cannot use.  Most are a
:class:`~aggregator.adapters.generic.AdapterSpec` fed to the generic adapter;
``Source.adapter`` names one.  The built-in modules are imported on first lookup,
not at package import, so importing :mod:`aggregator.adapters` stays cheap.

Imports from the package: ``clean``, ``dates``, ``urls``, ``errors``, ``types`` (stages:
ARCHITECTURE.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from typing import Protocol, TypeVar

from aggregator.types import Article, RawEntry, Source

__all__ = ["Adapter", "UnknownAdapterError", "adapter_names", "get_adapter", "register"]

_BUILTIN_MODULES = ("generic", "zaobao", "rfi", "rfa", "voa")


class Adapter(Protocol):
    """Normalize one entry; raise ``AdapterError(source=, url=, guid=)`` if unusable."""

    def __call__(self, entry: RawEntry, source: Source, fetched_at: datetime) -> Article: ...


class UnknownAdapterError(KeyError):
    """No adapter of that name; the message lists the known ones (config typo aid)."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown adapter {self.name!r}; known adapters: {', '.join(self.known)}"


_REGISTRY: dict[str, Adapter] = {}
_loaded = False

A = TypeVar("A", bound=Adapter)


def register(name: str) -> Callable[[A], A]:
    """Decorator: make ``adapter`` available as ``name`` (a clash is a bug, so it raises)."""

    def decorator(adapter: A) -> A:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not adapter:
            raise ValueError(f"adapter {name!r} is already registered")
        _REGISTRY[name] = adapter
        return adapter

    return decorator


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(f"{__name__}.{module}")
        _loaded = True


def get_adapter(name: str) -> Adapter:
    """The adapter registered as ``name``; :class:`UnknownAdapterError` (a KeyError) if none."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownAdapterError(name, adapter_names()) from None


def adapter_names() -> list[str]:
    """Sorted names of every registered adapter."""
    _load_builtins()
    return sorted(_REGISTRY)
