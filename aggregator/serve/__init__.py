"""The HTTP service: merged and per-source feeds, an HTML index, health and metrics.

It only *reads* (through :class:`ArticleReader`, which the store satisfies) and never
fetches.  Every URL the service prints is built from the configured ``base_url``, never
from the request's ``Host`` header, so a forged header cannot plant foreign links in a
feed that proxies and readers cache.

One module per job, each importing only those below it (the ``serve`` contract in
``pyproject.toml``): :mod:`.app` builds the app from the endpoints of :mod:`.feeds`,
:mod:`.page` and :mod:`.status`, which share :mod:`.site`; :mod:`.server` runs it.

Imports from the package: ``export``, ``health``, ``metrics``, ``search``,
``httpguard``, ``errors``, ``types``; never ``store`` nor the poll (stages:
ARCHITECTURE.md).
"""

from __future__ import annotations

from ..export.site import FEED_PATHS
from .app import MAX_PAGE_BYTES, create_app
from .feeds import _ResponseCache as _ResponseCache  # for its test
from .server import EmbeddedServer, build_server, listen
from .site import ArticleReader, SourceCatalog, TopicCatalog

__all__ = [
    "FEED_PATHS",
    "MAX_PAGE_BYTES",
    "ArticleReader",
    "EmbeddedServer",
    "SourceCatalog",
    "TopicCatalog",
    "build_server",
    "create_app",
    "listen",
]
