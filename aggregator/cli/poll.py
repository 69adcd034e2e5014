"""``aggregator poll``: one poll of the chosen sources, now, and a summary table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from aggregator.cli._context import CONTEXT, SourceOption, _pick, _reported, _sources, app, out
from aggregator.cli._wiring import (
    _index_stored,
    _limits,
    _poller,
    _store,
    _use_database_threads,
)
from aggregator.errors import RateLimitedError

# Imported where used, as everywhere in the CLI (see _context).
if TYPE_CHECKING:
    from aggregator.pipeline import PollOutcome
    from aggregator.settings import Settings
    from aggregator.store import Store
    from aggregator.types import Source, SourceState


async def _poll_once(
    settings: Settings, sources: Sequence[Source], store: Store
) -> list[PollOutcome]:
    import asyncio

    from aggregator.fetch import Fetcher
    from aggregator.scheduler import HostSlots, sync_sources
    from aggregator.workers import expect_polls, parse_pool

    _use_database_threads(store)
    await sync_sources(store, sources)
    limit = asyncio.Semaphore(settings.max_concurrent_polls)
    hosts = HostSlots(settings.max_polls_per_host)
    # The pool starts for a long list of sources, or once the polls bring enough
    # entries to be worth it.
    with parse_pool(settings, batch=True) as executor:
        expect_polls(executor, len(sources))
        async with Fetcher(_limits(settings)) as fetcher:
            poller = _poller(settings, store, fetcher, executor)

            async def one(source: Source) -> PollOutcome:
                # The host's slot first: waiting for it must not hold one of `limit`.
                async with hosts.hold(source.url), limit:
                    return await poller.poll(source)

            outcomes = list(await asyncio.gather(*(one(source) for source in sources)))
            # Full-text pages are fetched after their feed's articles are stored; a
            # one-shot poll gives them up to one fetch deadline more before exiting.
            await poller.wait_for_pages(settings.total_timeout)
        # Still inside the pool (unless it broke): it makes the index's tokens too.
        await asyncio.to_thread(_index_stored, store, poller.executor)
        return outcomes


@app.command()
def poll(
    source: SourceOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Also poll sources a server asked to wait (Retry-After), disabled by "
            "HTTP 410, or with enabled = false.",
        ),
    ] = False,
    due: Annotated[
        bool,
        typer.Option("--due", help="Only sources whose next poll time has come (for cron)."),
    ] = False,
) -> None:
    """Poll once, now, and print a summary.

    Sources a server asked to wait (Retry-After) or disabled (HTTP 410) are skipped
    unless --force.  Exits non-zero only when every polled source failed; a skipped
    source is not a failure.
    """
    import asyncio

    from rich.table import Table

    from aggregator import health
    from aggregator.scheduler import sync_sources
    from aggregator.types import SourceState

    now = datetime.now(UTC)
    with _reported():
        settings = CONTEXT.settings()
        chosen = _pick(_sources(settings), source)
        with _store(settings) as store:
            # First: a source whose URL was edited starts afresh, not skipped as disabled.
            asyncio.run(sync_sources(store, chosen))
            states = {state.source_id: state for state in store.states()}
            skipped = {
                item.id: reason
                for item in chosen
                if (reason := _why_not_poll(item, states.get(item.id), now, force=force, due=due))
            }
            polled = [item for item in chosen if item.id not in skipped]
            if force:
                _lift_disabled(store, [states[item.id] for item in polled if item.id in states])
            outcomes = asyncio.run(_poll_once(settings, polled, store)) if polled else []
    table = Table("source", "status", "new", "updated", "unchanged", "time", "problem")
    by_id = {outcome.source_id: outcome for outcome in outcomes}
    for item in chosen:
        outcome = by_id.get(item.id)
        if outcome is None:
            table.add_row(item.id, "skipped", "", "", "", "", skipped.get(item.id, ""))
            continue
        counts = outcome.counts
        state = states.get(item.id) or SourceState.fresh(item)
        problem = health.cause_first(str(outcome.error), state) if outcome.error else ""
        table.add_row(
            item.id,
            outcome.status,
            str(counts.new),
            str(counts.updated),
            str(counts.unchanged + counts.merged),
            f"{outcome.duration:.2f}s",
            problem,
        )
    out.print(table)
    if outcomes and all(outcome.failed for outcome in outcomes):
        raise typer.Exit(1)


def _why_not_poll(
    source: Source, state: SourceState | None, now: datetime, *, force: bool, due: bool
) -> str | None:
    """Why a one-shot poll leaves ``source`` alone (``None``: poll it).

    The daemon honours a server's Retry-After and a 410 through the stored next poll
    time and disabled flag; a cron-driven ``poll`` must too, or it hammers a server
    that asked it to wait.
    """
    next_poll = state.next_poll if state is not None else None
    until = f"{next_poll:%Y-%m-%d %H:%M} UTC" if next_poll is not None and next_poll > now else None
    if not force:
        if not source.enabled:
            return "enabled = false (--force polls it)"
        if state is not None and state.disabled_reason:
            return f"disabled: {state.disabled_reason} (--force polls it)"
        if until and state is not None and state.last_error_kind == RateLimitedError.kind:
            return f"server asked to wait until {until} (Retry-After)"
    if due and until:
        return f"not due until {until}"
    return None


def _lift_disabled(store: Store, states: Sequence[SourceState]) -> None:
    """A forced poll of a source disabled by a 410 tries it again; a success re-enables it."""
    store.finish_polls(
        [(replace(state, disabled_reason=None), None) for state in states if state.disabled_reason]
    )
