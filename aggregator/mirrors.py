"""Which of a source's URLs to try, in what order, and what each attempt leaves behind.

Pure functions over :class:`~aggregator.types.UrlState` records; the pipeline does
the fetching.  The rules:

* the URL that answered last is tried first (a dead primary is not paid for on
  every poll), except that the primary is tried first again once its last attempt
  is ``retry`` old, so the source returns to it when it comes back;
* then every other URL in configured order, skipping those retired by a 410;
* each URL keeps its own validators, redirect target and last error.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from aggregator.errors import GoneError, SourceError
from aggregator.types import FetchResult, Source, SourceState, UrlState

__all__ = ["answered", "attempt_order", "failed", "reconcile", "with_record"]


def reconcile(source: Source, state: SourceState) -> tuple[UrlState, ...]:
    """One record per configured URL, in configured order: stored ones kept, new
    URLs fresh, records of URLs no longer configured dropped.

    A state made before the source had mirrors seeds its primary's record from the
    state's own URL and validators, so adding mirrors costs no unconditional GET.
    """
    stored = {record.configured: record for record in state.url_states}
    if not stored and state.configured_url in (None, source.url):
        stored[source.url] = UrlState(
            source.url, state.url, etag=state.etag, last_modified=state.last_modified
        )
    return tuple(stored.get(url) or UrlState.fresh(url) for url in source.urls)


def attempt_order(
    records: tuple[UrlState, ...], *, now: datetime, retry: timedelta
) -> list[UrlState]:
    """The records to try this poll, first choice first (retired URLs left out)."""
    live = [record for record in records if record.gone is None]
    if not live:
        return []
    primary = records[0]
    primary_due = primary.gone is None and (
        primary.last_attempt is None or now - primary.last_attempt >= retry
    )
    succeeded = [record for record in live if record.last_success is not None]
    first = (
        primary
        if primary_due or not succeeded
        else max(succeeded, key=lambda record: record.last_success or now)
    )
    return [first, *(record for record in live if record is not first)]


def answered(record: UrlState, result: FetchResult, now: datetime) -> UrlState:
    """``record`` after a good answer: moved by a permanent redirect, new validators."""
    return dataclasses.replace(
        record,
        url=result.permanent_url or record.url,
        etag=result.etag or record.etag,
        last_modified=result.last_modified or record.last_modified,
        last_attempt=now,
        last_success=now,
        error_kind=None,
        error=None,
    )


def failed(record: UrlState, error: SourceError, now: datetime) -> UrlState:
    """``record`` after ``error``; a 410 retires this URL (only this one)."""
    return dataclasses.replace(
        record,
        last_attempt=now,
        error_kind=error.kind,
        error=str(error)[:500],
        gone=str(error)[:500] if isinstance(error, GoneError) else None,
    )


def with_record(state: SourceState, record: UrlState) -> SourceState:
    """``state`` with the record of ``record.configured`` replaced."""
    records = tuple(
        record if old.configured == record.configured else old for old in state.url_states
    )
    return dataclasses.replace(state, url_states=records)
