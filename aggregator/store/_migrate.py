"""The schema upgrade in a process of its own, run by :meth:`Store.migrate
<aggregator.store.Store.migrate>` when one is due: ``python -m aggregator.store._migrate``
with the database URL on stdin.

Alembic, mako and pygments are imported here, and leave with this process instead
of staying in the daemon.  An :class:`~aggregator.errors.AggregatorError` (the
store's ``StorageError``: a failed upgrade, a database newer than this code) goes
back pickled on stdout with its message, context and one-line cause, beside its
traceback in this process (the caller's ``__cause__``, as a process pool does), and
the exit status is 1.
"""

from __future__ import annotations

import pickle
import sys
import traceback

from aggregator.errors import AggregatorError
from aggregator.store import Store


def main() -> None:
    url = sys.stdin.read()
    try:
        with Store.open(url, migrate=False) as store:
            store.migrate_in_process()
    except AggregatorError as exc:
        sys.stdout.buffer.write(pickle.dumps((exc, "".join(traceback.format_exception(exc)))))
        sys.exit(1)


if __name__ == "__main__":
    main()
