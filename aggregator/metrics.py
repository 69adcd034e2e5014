"""Prometheus metrics for the polling pipeline and the per-source state.

The metrics live in a private :class:`~prometheus_client.CollectorRegistry`, never the
process-global one: the global registry also collects whatever any imported library
registers, refuses a second registration of the same name (so two apps or two tests in
one process would collide), and cannot be reset.  ``Metrics()`` gives an isolated set;
:data:`DEFAULT` is the one the daemon shares between the pipeline and ``/metrics``.

Labels are source ids and short error kinds (:attr:`AggregatorError.kind`), both from
small closed sets, so cardinality stays bounded; article ids or URLs never become labels.

Imports from the package: ``types`` only (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from .types import SourceState

__all__ = ["CONTENT_TYPE", "DEFAULT", "Metrics"]

# The classic 0.0.4 text format: every Prometheus version and most other scrapers read
# it, and with plain ASCII metric names it is byte-identical to what 1.0.0 would send.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# Feed polls take from a few milliseconds (304) to the 30 s total deadline; the default
# prometheus buckets stop at 10 s and are too fine below 100 ms to be useful here.
_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)


@dataclass(frozen=True)
class _SourceSeries:
    new: Counter
    updated: Counter
    duration: Histogram


class Metrics:
    """One isolated set of aggregator metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._poll_children: dict[tuple[str, str], Counter] = {}
        self._source_children: dict[str, _SourceSeries] = {}
        reg = self.registry
        self.polls = Counter(
            "aggregator_polls",
            "Polls finished, by source and outcome.",
            ["source", "outcome"],
            registry=reg,
        )
        self.poll_failures = Counter(
            "aggregator_poll_failures",
            "Failed polls, by source and error kind.",
            ["source", "kind"],
            registry=reg,
        )
        self.articles_new = Counter(
            "aggregator_articles_new",
            "Articles stored for the first time.",
            ["source"],
            registry=reg,
        )
        self.articles_updated = Counter(
            "aggregator_articles_updated",
            "Stored articles whose content really changed.",
            ["source"],
            registry=reg,
        )
        self.poll_duration = Histogram(
            "aggregator_poll_duration_seconds",
            "Wall time of one poll: fetch, parse, adapt and store.",
            ["source"],
            buckets=_DURATION_BUCKETS,
            registry=reg,
        )
        self.last_success = Gauge(
            "aggregator_source_last_success_timestamp_seconds",
            "Unix time of the last successful poll (0: never).",
            ["source"],
            registry=reg,
        )
        self.consecutive_failures = Gauge(
            "aggregator_source_consecutive_failures",
            "Failed polls since the last success.",
            ["source"],
            registry=reg,
        )
        self.database_up = Gauge(
            "aggregator_database_up",
            "1 when the last scrape could read the database.",
            registry=reg,
        )
        self.search_backlog = Gauge(
            "aggregator_search_backlog",
            "Stored articles waiting for the search index (searches still find them; "
            "a backlog that stays high means the daemon never has a pause to index in).",
            registry=reg,
        )
        self.url_failures = Counter(
            "aggregator_source_url_failures",
            "Failed attempts of one URL of a source with mirrors, by error kind.",
            ["source", "url", "kind"],
            registry=reg,
        )
        self.url_up = Gauge(
            "aggregator_source_url_up",
            "For a source with mirrors: 1 when the URL's last attempt answered, 0 when it "
            "failed or is retired (HTTP 410).",
            ["source", "url"],
            registry=reg,
        )
        self.source_disabled = Gauge(
            "aggregator_source_disabled",
            "1 when polling of the source is stopped (e.g. HTTP 410).",
            ["source"],
            registry=reg,
        )

    def record_poll(
        self,
        source_id: str,
        outcome: str,
        *,
        new: int,
        updated: int,
        duration: float,
        error_kind: str | None = None,
    ) -> None:
        """Count one finished poll; ``error_kind`` is set exactly when it failed."""
        self._polls(source_id, outcome).inc()
        if error_kind is not None:
            self.poll_failures.labels(source=source_id, kind=error_kind).inc()
        per_source = self._per_source(source_id)
        # Touch the per-source series even at zero so a dashboard shows 0, not "no data".
        per_source.new.inc(max(new, 0))
        per_source.updated.inc(max(updated, 0))
        per_source.duration.observe(max(duration, 0.0))

    def record_url_failure(self, source_id: str, url: str, kind: str) -> None:
        """Count one failed attempt of one of a source's URLs (the configured URL)."""
        self.url_failures.labels(source=source_id, url=url, kind=kind).inc()

    # ``labels()`` validates and locks on every call, a noticeable share of a 304 poll's
    # CPU; the labelled children never change, so each is looked up once.

    def _polls(self, source_id: str, outcome: str) -> Counter:
        key = (source_id, outcome)
        child = self._poll_children.get(key)
        if child is None:
            child = self._poll_children[key] = self.polls.labels(source=source_id, outcome=outcome)
        return child

    def _per_source(self, source_id: str) -> _SourceSeries:
        series = self._source_children.get(source_id)
        if series is None:
            series = self._source_children[source_id] = _SourceSeries(
                new=self.articles_new.labels(source=source_id),
                updated=self.articles_updated.labels(source=source_id),
                duration=self.poll_duration.labels(source=source_id),
            )
        return series

    def observe_states(self, states: Iterable[SourceState]) -> None:
        """Refresh the per-source gauges from the durable state rows.

        Called at scrape time rather than by the pipeline, so the gauges are right
        after a restart too (the counters start again from zero; the state does not).
        """
        for state in states:
            source = state.source_id
            success = state.last_success.timestamp() if state.last_success else 0.0
            self.last_success.labels(source=source).set(success)
            self.consecutive_failures.labels(source=source).set(state.consecutive_failures)
            self.source_disabled.labels(source=source).set(1 if state.disabled_reason else 0)
            for record in state.url_states:
                up = record.gone is None and record.error is None and record.last_attempt
                self.url_up.labels(source=source, url=record.configured).set(1 if up else 0)

    def render(self) -> tuple[bytes, str]:
        """The text exposition payload and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE


DEFAULT = Metrics()
