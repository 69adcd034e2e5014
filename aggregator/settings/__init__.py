"""Settings and the source list: read once, at start, by the CLI; passed down explicitly.

:mod:`.model` holds the pydantic :class:`Settings` and builds it from the settings
file and the environment; :mod:`.sources` reads the ``[[source]]`` and ``[[topic]]``
tables of the sources file; both read their files and report every problem in them
through :mod:`.files` (the ``settings`` contract in ``pyproject.toml``: sources on
model on files).  Importers take every name from here.

Imports from the package: ``log`` (its formats), ``search`` (topic queries),
``errors``, ``types`` (stages: ARCHITECTURE.md).
"""

from aggregator.settings.model import (
    DEFAULT_CONFIG_FILE,
    Explained,
    Settings,
    explain_settings,
    load_settings,
    unknown_environment,
)
from aggregator.settings.sources import load_sources, load_topics, sources_to_toml

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "Explained",
    "Settings",
    "explain_settings",
    "load_settings",
    "load_sources",
    "load_topics",
    "sources_to_toml",
    "unknown_environment",
]
