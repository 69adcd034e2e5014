"""Alembic migrations, configured in code so no ``alembic.ini`` is needed at run time.

To write a new revision against a scratch database::

    from sqlalchemy import create_engine
    from alembic import command
    from aggregator.migrations import alembic_config

    with create_engine("sqlite:///scratch.db").begin() as connection:
        command.upgrade(alembic_config(connection), "head")
        command.revision(alembic_config(connection), "what changed", autogenerate=True)

Imports from the package: nothing of the application; ``env.py``, which alembic runs by
path, reads the store's tables (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, Connection, MetaData, PrimaryKeyConstraint, String, Table

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["MIGRATIONS", "alembic_config", "head_revisions", "stamp_head", "upgrade"]

MIGRATIONS = Path(__file__).resolve().parent

# ``revision: str = "0005"`` and ``down_revision: ... = "0004"`` (or a tuple, or None).
_REVISION = re.compile(r"^revision\b[^=\n]*=\s*['\"](?P<id>[^'\"]+)['\"]", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\b[^=\n]*=(?P<value>.*)$", re.MULTILINE)
_QUOTED = re.compile(r"['\"]([^'\"]+)['\"]")


#: The table in which alembic keeps a database's revisions, as alembic creates it.
_VERSIONS = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def alembic_config(connection: Connection) -> Config:
    """A config whose ``env.py`` runs on ``connection`` (and inside its transaction)."""
    from alembic.config import Config

    config = Config()
    # ConfigParser interpolates '%', which a checkout path may contain.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


@functools.cache
def head_revisions() -> frozenset[str]:
    """The newest revisions, read from the revision files' ``revision`` and
    ``down_revision`` lines: a glance at the database can then tell that no migration
    is due without importing alembic, which was a third of the daemon's start-up."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        if (revision := _REVISION.search(text)) is not None:
            revisions.add(revision["id"])
        if (down := _DOWN_REVISION.search(text)) is not None:
            parents.update(_QUOTED.findall(down["value"]))
    return frozenset(revisions - parents)


def stamp_head(connection: Connection) -> None:
    """Record the newest revisions in a database whose schema was created at them
    directly, as ``alembic stamp head`` would, without importing alembic."""
    _VERSIONS.create(connection)
    connection.execute(
        _VERSIONS.insert(), [{"version_num": revision} for revision in sorted(head_revisions())]
    )
