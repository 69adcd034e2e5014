"""The hostile-input suite, a package so its modules (``hostile.fuzzing``) cannot clash
by name with those of ``tests/``: pytest then puts ``tests/`` on ``sys.path`` for it,
as it does for the rest, and mypy checks both folders from the one path."""
