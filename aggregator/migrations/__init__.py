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

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

__all__ = ["MIGRATIONS", "alembic_config", "upgrade"]

MIGRATIONS = Path(__file__).resolve().parent


def alembic_config(connection: Connection) -> Config:
    """A config whose ``env.py`` runs on ``connection`` (and inside its transaction)."""
    config = Config()
    # ConfigParser interpolates '%', which a checkout path may contain.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection, revision: str = "head") -> None:
    command.upgrade(alembic_config(connection), revision)
