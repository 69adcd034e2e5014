"""Reading the settings and sources files, and reporting what is wrong in them.

Shared by the settings (:mod:`.model`) and the source list (:mod:`.sources`) so both
say every problem the same way, ``file:key: problem``, all of them at once, and never
echo more than a recognisable piece of a hostile value.

Imports from the package: ``errors`` only (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from aggregator.errors import ConfigError


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason})", file=str(path)) from exc
    except RecursionError as exc:
        raise ConfigError("not valid TOML: nested too deeply", file=str(path)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from exc


def _short(text: str, limit: int = 80) -> str:
    """Enough of a hostile value to recognise it, never a 100 kB echo."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


Problem = tuple[str, str, str]  # (file or origin, key, what is wrong)


def _problems(
    exc: ValidationError, origin: Callable[[str], str], *, prefix: str = ""
) -> list[Problem]:
    """Every problem pydantic found, as ``(origin, key, problem)``."""
    found = []
    for error in exc.errors():
        problem = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            problem = "unknown key"
        elif "input" in error and error["type"] != "missing":
            problem = f"{problem} (got {_short(repr(error['input']))})"
        loc = [str(part) for part in error["loc"]]
        key = ".".join([prefix, *loc] if prefix else loc)
        found.append((origin(loc[0] if loc else ""), key or "?", problem))
    return found


def _config_error(problems: Sequence[Problem]) -> ConfigError:
    """One error naming every problem, one ``file:key: problem`` per line.

    ``file`` and ``key`` are the first problem's; fixing a file one complaint per
    start (the old "(and 2 more problems)") takes as many starts as there are typos.
    """
    (file, key, problem), *rest = problems
    message = "\n".join([problem, *(f"{where}:{name}: {what}" for where, name, what in rest)])
    return ConfigError(message, file=file, key=key)
