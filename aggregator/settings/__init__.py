"""Settings and the source list, read by the CLI and passed down explicitly: the
settings at start only, the sources file again on each reload of a running daemon.

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
from aggregator.settings.sources import (
    BadTopic,
    SourcesFile,
    load_sources,
    read_sources_file,
    sources_to_toml,
)

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "BadTopic",
    "Explained",
    "Settings",
    "SourcesFile",
    "explain_settings",
    "load_settings",
    "load_sources",
    "read_sources_file",
    "sources_to_toml",
    "unknown_environment",
]
