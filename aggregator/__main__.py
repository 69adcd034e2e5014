"""`python -m aggregator` runs the CLI.

Imports from the package: the CLI package, nothing else (stages: ARCHITECTURE.md).
"""

from aggregator.cli import main

main()
