"""``aggregator db`` (schema migrations) and ``opml`` (the source list as OPML)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from aggregator.cli._context import (
    CONTEXT,
    _link_token,
    _reported,
    _sources,
    _sources_file,
    console,
    db_app,
    opml_app,
    out,
)
from aggregator.cli._wiring import _base_url, _store
from aggregator.errors import ConfigError


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations (also done at daemon start)."""
    with _reported():
        settings = CONTEXT.settings()
        with _store(settings):
            pass
    out.print("database is up to date")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the database."""
    from aggregator.store import Store

    with _reported():
        settings = CONTEXT.settings()
        store = Store.open(settings.database_url, migrate=False)
        try:
            out.print(store.current_revision() or "empty (no migrations applied)")
        finally:
            store.close()


@opml_app.command("export")
def opml_export(
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="File; stdout without it.")
    ] = None,
    with_token: Annotated[
        bool,
        typer.Option("--with-token", help="Write feed_token into the topics' feed links."),
    ] = False,
) -> None:
    """Write the configured sources as OPML 2.0."""
    from aggregator import opml

    with _reported():
        settings = CONTEXT.settings()
        configured = _sources_file(settings)
        topics = configured.every_topic()
        payload = opml.export_opml(
            configured.sources,
            title=settings.feed_title,
            topics=topics,
            base_url=_base_url(settings),
            token=_link_token(settings, with_token) if topics else None,
        )
    if out_path is None:
        sys.stdout.buffer.write(payload)
    else:
        out_path.write_bytes(payload)


@opml_app.command("import")
def opml_import(
    path: Annotated[Path, typer.Argument(help="An OPML file.")],
) -> None:
    """Print the [[source]] tables for an OPML file's feeds, to append to the sources file."""
    from aggregator import opml
    from aggregator.settings import sources_to_toml

    with _reported():
        settings = CONTEXT.settings()
        known = {source.url for source in _sources(settings)}
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from exc
        imported = opml.parse_opml(data, file=str(path))
    fresh = [item for item in imported if item.url not in known]
    typer.echo(sources_to_toml(fresh), nl=False)
    console.print(f"{len(fresh)} new sources ({len(imported) - len(fresh)} already configured)")
