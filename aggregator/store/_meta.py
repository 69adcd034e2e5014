"""Facts about the database itself, written once when first needed and then kept.

The ``meta`` table maps a key to a text value.  A value is *adopted*, not set: the
first caller's proposal is stored and every later caller, in this process or in
another instance sharing the database, gets the stored one back, whatever it
proposes.  That is what keeps the item-id authority stable when ``base_url``
changes: the ids in subscribers' readers were built from the first one.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from aggregator.store._base import dialect_insert
from aggregator.store.tables import meta

__all__ = ["ID_AUTHORITY", "adopt"]

#: The ``HOST,YEAR`` of the ``tag:`` URIs that identify items in the served feeds.
ID_AUTHORITY = "id_authority"


def adopt(conn: Connection, key: str, proposed: str | None) -> str | None:
    """The stored value of ``key``; ``proposed`` is stored first when there is none.

    ``proposed=None`` only reads: the caller has nothing worth keeping yet.
    """
    if proposed is not None:
        statement = dialect_insert(conn, meta).values(key=key, value=proposed)
        conn.execute(statement.on_conflict_do_nothing())
    value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar_one_or_none()
    return None if value is None else str(value)
