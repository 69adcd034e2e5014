"""Re-reading the sources file while the daemon runs: on SIGHUP, and when it changes.

A change is seen by the file's ``st_mtime_ns``, size and inode, checked every
scheduler tick: nanoseconds because two saves within one second are common (an
editor's save, then a fix), and the inode because editors and ``kubectl``/Docker
config mounts replace a file by renaming a new one over it, which can keep both
the size and, on coarse file systems, the time.  A ``stat`` per tick costs
microseconds; a file-system watcher would add a dependency and miss bind mounts.

A file that does not validate is not applied: every problem is logged, one line
each, and the sources in use stay, so a typo never stops the polling of the
others.  Topics are applied one by one (:func:`topics_to_serve`): a bad one is
logged in one line and keeps its previous definition, if it had one, while the
others change as the file says.

Imports from the package: ``settings``, ``search``, ``errors`` and ``types``; only the
CLI imports it (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Generic, TypeVar

from aggregator.errors import ConfigError
from aggregator.search import Topic
from aggregator.settings import SourcesFile

__all__ = ["SourcesReloader", "topics_to_serve"]

logger = logging.getLogger(__name__)

Signature = tuple[int, int, int] | None  # (st_mtime_ns, st_size, st_ino); None: unreadable
Loaded = TypeVar("Loaded")


def _signature(path: Path) -> Signature:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class SourcesReloader(Generic[Loaded]):
    """Watches ``path``; on a change or :meth:`request`, loads and applies what it
    configures (the CLI's ``load`` reads the sources and topics)."""

    def __init__(
        self,
        path: Path,
        load: Callable[[], Loaded],
        apply: Callable[[Loaded], Awaitable[None]],
    ) -> None:
        self.path = path
        self._load = load
        self._apply = apply
        self._seen = _signature(path)
        self._asked = asyncio.Event()

    def request(self) -> None:
        """Reload at once (the SIGHUP handler), whether or not the file looks changed."""
        self._asked.set()

    async def watch(self, stop: asyncio.Event, every: float) -> None:
        """Check every ``every`` seconds, or at once when asked, until ``stop`` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._asked.wait(), every)
            asked = self._asked.is_set()
            self._asked.clear()
            if stop.is_set():
                return
            if asked:
                await self.reload("SIGHUP")
            elif _signature(self.path) != self._seen:
                await self.reload("the file changed")

    async def reload(self, why: str) -> bool:
        """Load, validate and apply the file; ``False`` (and the old sources kept) if bad."""
        # Noted before reading: an edit made during the read is seen at the next check.
        self._seen = _signature(self.path)
        try:
            loaded = await asyncio.to_thread(self._load)
        except ConfigError as exc:
            problems = str(exc).splitlines()
            logger.error(
                "sources file %s not reloaded (%s): %d problem%s; the sources in use stay",
                self.path,
                why,
                len(problems),
                "" if len(problems) == 1 else "s",
            )
            for problem in problems:
                logger.error("sources file problem: %s", problem)
            return False
        logger.info("reloading sources from %s (%s)", self.path, why)
        await self._apply(loaded)
        return True


def topics_to_serve(in_use: Mapping[str, Topic], loaded: SourcesFile) -> list[Topic]:
    """The topics to serve after a reload: the file's good ones, and each bad one's
    previous definition if it had one (as the sources in use stay when the file is bad:
    a typo must not take a feed away from its subscribers).  Each bad topic is logged
    in one line naming the file, the topic and what is wrong; the change in one line.
    """
    served = {topic.id: topic for topic in loaded.topics}
    for bad in loaded.bad_topics:
        previous = in_use.get(bad.id) if bad.id is not None else None
        if previous is not None and previous.id not in served:
            served[previous.id] = previous
            logger.error("topic not reloaded: %s; the topic stays as it was", bad)
        else:
            logger.error("topic not served: %s", bad)
    added = sorted(served.keys() - in_use.keys())
    removed = sorted(in_use.keys() - served.keys())
    changed = sorted(key for key in served.keys() & in_use.keys() if served[key] != in_use[key])
    logger.info(
        "topics reloaded: %d served; added %s; removed %s; changed %s",
        len(served),
        ", ".join(added) or "none",
        ", ".join(removed) or "none",
        ", ".join(changed) or "none",
    )
    return list(served.values())
