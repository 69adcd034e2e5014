"""The command line: the composition root that builds settings, store, fetcher and server.

Nothing imports this package but ``__main__``.  Errors are mapped to exit codes in one place:
a configuration problem exits 2 with ``file:key: problem``, any other of our
errors exits 1 with its one-line message; tracebacks are for bugs only.

One module per group of commands (``run``, ``poll``, ``status``, ``io``, ``admin``),
on the shared ``_context`` (app, options, errors) and ``_wiring`` (parts built from the
settings).  Importing this package registers every command on :data:`app`.

Imports from the package: anything below it; the command modules not from each other
(stages: ARCHITECTURE.md).
"""

from __future__ import annotations

from aggregator.cli._context import app

# isort: off
# Each module registers its commands on ``app`` when imported: --help lists them in
# this order.
from aggregator.cli import run, poll, status, io, admin  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    app()
