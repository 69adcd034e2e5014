"""Logging setup.  Only the CLI calls :func:`setup`; library modules just log.

Lines are one-per-event text with the source and URL inside the message, so
``grep source='voa'`` finds everything about one feed.  Noisy libraries are
held at WARNING: their per-request INFO lines would drown ours.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["setup"]

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
QUIET_LIBRARIES = ("httpx2", "httpcore2", "apscheduler", "uvicorn.access", "alembic")


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
