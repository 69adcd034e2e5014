"""The CLI's shared parts: the typer apps, the global options and settings, the
consoles, source selection, and the one place our errors become an exit code:
a configuration problem exits 2 with ``file:key: problem``, any other of our
errors exits 1 with its one-line message; tracebacks are for bugs only.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from aggregator import __version__
from aggregator.errors import AggregatorError, ConfigError

# What a command needs is imported in the command, here and in every command module:
# `--help` and `sources` would otherwise load SQLAlchemy, alembic, httpx, uvicorn, the
# parser and rich, a second of start-up and 90 MB (tests/test_lazy_imports.py keeps it so).
if TYPE_CHECKING:
    from rich.console import Console

    from aggregator.settings import Explained, Settings, SourcesFile
    from aggregator.types import Source

logger = logging.getLogger(__package__)  # "aggregator.cli", one name for every command


class _LazyConsole:
    """A rich console made on first use: importing rich cost every command, ``--help`` too."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def get(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


console = _LazyConsole(stderr=True)

# Tables and counts only; text meant to be copied or parsed goes through typer.echo,
# which neither reads markup nor wraps long lines.
out = _LazyConsole(highlight=False, markup=False)

app = typer.Typer(
    help="Poll news feeds, normalize and deduplicate their articles, serve merged feeds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Help texts are plain: rich markup would eat "[[source]]" and "[a-z0-9_-]".
    rich_markup_mode=None,
)

db_app = typer.Typer(
    help="Database schema migrations.", no_args_is_help=True, rich_markup_mode=None
)

opml_app = typer.Typer(
    help="Export or import the source list as OPML.", no_args_is_help=True, rich_markup_mode=None
)

app.add_typer(db_app, name="db")

app.add_typer(opml_app, name="opml")


class LogLevel(StrEnum):
    """The levels ``--log-level`` accepts; any other value is a usage error, not a crash."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class _Context:
    """Settings are loaded lazily so `--help` works even with a broken config."""

    config_file: Path | None = None
    log_level: LogLevel | None = None

    def explained(self) -> Explained:
        from aggregator import log
        from aggregator.settings import Explained, explain_settings, unknown_environment

        explained = explain_settings(self.config_file)
        settings = explained.settings
        if self.log_level:
            settings = settings.model_copy(update={"log_level": self.log_level.value})
            origins = {**explained.origins, "log_level": "command line --log-level"}
            explained = Explained(settings, origins)
        log.setup(settings.log_level, settings.log_format)
        for name in unknown_environment(os.environ):
            logger.warning("unknown environment variable %s is ignored", name)
        return explained

    def settings(self) -> Settings:
        return self.explained().settings


CONTEXT = _Context()

SourceOption = Annotated[
    list[str] | None,
    typer.Option("--source", "-s", help="Only this source (repeatable; default: all)."),
]


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"aggregator {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Settings file (TOML). Default: config/aggregator.toml when present.",
            envvar="AGGREGATOR_CONFIG",
        ),
    ] = None,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(case_sensitive=False, help="Overrides the log_level setting."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    CONTEXT.config_file = config
    CONTEXT.log_level = log_level


def _sources(settings: Settings) -> list[Source]:
    from aggregator.adapters import adapter_names
    from aggregator.settings import load_sources

    return load_sources(settings, adapters=adapter_names())


def _sources_file(settings: Settings) -> SourcesFile:
    """The sources and topics, from one read of the sources file."""
    from aggregator.adapters import adapter_names
    from aggregator.settings import read_sources_file

    return read_sources_file(settings, adapters=adapter_names())


def _pick(sources: Sequence[Source], wanted: Sequence[str] | None) -> list[Source]:
    if not wanted:
        return list(sources)
    known = {source.id: source for source in sources}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(
            f"unknown source {', '.join(map(repr, unknown))} (known: {', '.join(known)})",
            key="--source",
        )
    return [known[name] for name in wanted]


def _link_token(settings: Settings, asked: bool) -> str | None:
    """The feed token for the links of a written file, when ``--with-token`` asked for it.

    A file is read by a feed reader on its own, as the service's pages are by one that
    came with ``?token=``: without the token its links to the service are refused.  But
    whoever holds such a file can read the feeds, so the token goes in only when asked;
    when it is set and not asked for, the user is told once why the links will fail.
    """
    token = settings.feed_token.get_secret_value() if settings.feed_token else None
    if asked and token is None:
        raise ConfigError("no feed_token is set, so there is none to write", key="--with-token")
    if token is not None and not asked:
        console.print(
            "feed_token is set: this file's links to the service will be refused without "
            "it; --with-token writes it into them (whoever has the file can then read "
            "the feeds)"
        )
    return token if asked else None


def _fail(error: AggregatorError) -> NoReturn:
    from rich.text import Text

    # The message is text, not markup: a title or URL with brackets keeps them.
    console.print(
        Text.assemble(("error:", "bold red"), f" {error}"), highlight=False, soft_wrap=True
    )
    raise typer.Exit(2 if isinstance(error, ConfigError) else 1)


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """Our errors become one line and an exit code; other exceptions are bugs: traceback."""
    try:
        yield
    except AggregatorError as error:
        _fail(error)
