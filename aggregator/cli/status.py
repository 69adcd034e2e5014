"""``aggregator sources`` and ``config``: what is configured and how it is doing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from aggregator.cli._context import CONTEXT, _reported, _sources, app, out
from aggregator.cli._wiring import _store

# Imported where used, as everywhere in the CLI (see _context).
if TYPE_CHECKING:
    from aggregator import health
    from aggregator.types import Source, SourceState, UrlState


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = int((now - moment).total_seconds())
    suffix = "ago" if seconds >= 0 else "from now"
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} {suffix}"
    return f"{seconds}s {suffix}"


@app.command()
def sources(
    wide: Annotated[
        bool, typer.Option("--wide", help="Every column on one line per source, unwrapped.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
) -> None:
    """List every source with its polling state, article count and what is wrong.

    Fits 80 columns (the problem wraps); --wide adds name, URL and failure count.
    """
    from rich.console import Console
    from rich.table import Table

    from aggregator import health

    with _reported():
        settings = CONTEXT.settings()
        configured = _sources(settings)
        with _store(settings) as store:
            states = {state.source_id: state for state in store.states()}
            counts = store.article_counts()
    enabled = {source.id for source in configured if source.enabled}
    problems = {item.source_id: item for item in health.failing(states.values(), enabled)}
    now = datetime.now(UTC)
    if as_json:
        rows = [
            _source_json(source, states.get(source.id), problems.get(source.id), counts)
            for source in configured
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("source", "articles", "last success", "next poll", "problem")
    if wide:
        table = Table(
            "source", "name", "url", "articles", "last success", "next poll", "failures", "problem"
        )
    for source in configured:
        state = states.get(source.id)
        problem = problems.get(source.id)
        if not source.enabled:
            note = "not polled (enabled = false)"
        elif problem is not None:
            when = f"failing since {_ago(problem.since, now)}" if problem.since else "failing"
            note = f"{when}: {problem.message}"
        else:
            note = ""
        row = [
            str(counts.get(source.id, 0)),
            _ago(state.last_success if state else None, now),
            _ago(state.next_poll if state else None, now) if source.enabled else "-",
        ]
        if wide:
            failures = str(state.consecutive_failures if state else 0)
            table.add_row(source.id, source.name, source.url, *row, failures, note)
        else:
            table.add_row(source.id, *row, note)
        for record in state.url_states if state else ():
            # One row per URL of a source with mirrors: which answered, which failed, why.
            cells = [_ago(record.last_success, now), "", _url_status(record)]
            if wide:
                table.add_row("", "", f"  {record.url}", "", *cells[:2], "", cells[2])
            else:
                table.add_row(f"  {record.url}", "", *cells)
    (Console(highlight=False, markup=False, width=10_000) if wide else out).print(table)


def _source_json(
    source: Source,
    state: SourceState | None,
    problem: health.Failing | None,
    counts: Mapping[str, int],
) -> dict[str, object]:
    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "id": source.id,
        "name": source.name,
        "url": source.url,
        "enabled": source.enabled,
        "articles": counts.get(source.id, 0),
        "last_success": iso(state.last_success if state else None),
        "next_poll": iso(state.next_poll if state else None),
        "consecutive_failures": state.consecutive_failures if state else 0,
        "failing": problem is not None,
        "failing_since": iso(problem.since if problem else None),
        "problem": problem.message if problem else None,
        "error_kind": problem.kind if problem else None,
        "disabled": state.disabled_reason if state else None,
        "urls": [
            {
                "url": record.url,
                "last_success": iso(record.last_success),
                "status": _url_status(record),
            }
            for record in (state.url_states if state else ())
        ],
    }


def _url_status(record: UrlState) -> str:
    if record.gone:
        return f"retired: {record.gone}"
    if record.error:
        return f"{record.error_kind}: {record.error}"
    return "ok" if record.last_success else "not tried"


@app.command("config")
def show_config() -> None:
    """Print the effective settings as TOML, each with where it came from.

    The output is a valid settings file (secrets masked); a setting left unset
    is a comment.
    """
    import tomli_w

    with _reported():
        explained = CONTEXT.explained()
    values = explained.settings.model_dump(mode="json")
    values["database_url"] = _masked_database_url(values["database_url"])
    for name, value in values.items():
        origin = explained.origins[name]
        if value is None:
            typer.echo(f"# {name} is not set  # {origin}")
        else:
            typer.echo(f"{tomli_w.dumps({name: value}).rstrip()}  # {origin}")


def _masked_database_url(url: str) -> str:
    """The database URL with its password as ``***`` (it goes to terminals and tickets)."""
    from sqlalchemy.exc import ArgumentError

    from aggregator.store.engine import parse_url

    try:
        return parse_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "***"  # not a URL SQLAlchemy reads; it may still hold a secret
