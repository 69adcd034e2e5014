"""The operations endpoints: ``/healthz`` (JSON) and ``/metrics`` (Prometheus).

Both answer while the database is down (503 and ``database_up 0``), since that is
when they are read.

Imports from the package: ``health``, ``errors``, ``types`` and :mod:`.site`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import health
from ..errors import StorageError
from ..types import SourceState, UrlState
from .site import ArticleReader, _Site

logger = logging.getLogger(__name__)


def _state_json(state: SourceState, name: str | None) -> dict[str, object]:
    return {
        "name": name,
        "last_success": _iso(state.last_success),
        "last_attempt": _iso(state.last_attempt),
        "next_poll": _iso(state.next_poll),
        "consecutive_failures": state.consecutive_failures,
        "last_error_kind": state.last_error_kind,
        "last_error": state.last_error,
        "failing_since": _iso(state.failing_since),
        "disabled": state.disabled_reason,
        **(
            {"urls": [_url_json(record) for record in state.url_states]} if state.url_states else {}
        ),
    }


def _url_json(record: UrlState) -> dict[str, object]:
    """One URL of a source with mirrors; its error text stays in the log and the CLI,
    like the source's own, but the kind says which URL failed how."""
    return {
        "url": record.configured,
        "last_success": record.last_success.isoformat() if record.last_success else None,
        "last_attempt": record.last_attempt.isoformat() if record.last_attempt else None,
        "error_kind": record.error_kind,
        "retired": record.gone is not None,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _failing_json(problem: health.Failing) -> dict[str, object]:
    return {
        "source": problem.source_id,
        "message": problem.message,
        "kind": problem.kind,
        "since": _iso(problem.since),
        "next_retry": _iso(problem.next_retry),
        "consecutive_failures": problem.failures,
    }


def _healthz_endpoint(reader: ArticleReader, site: _Site) -> Route:
    def endpoint(request: Request) -> Response:
        try:
            reader.ping()
            states = reader.states()
            backlog = reader.search_backlog()
        except StorageError as exc:
            # The reason goes to the log only: it may name the database URL.
            logger.warning("health check: database unreachable: %s", exc)
            down = {"status": "unavailable", "database": "unreachable"}
            return JSONResponse(down, status_code=503, headers={"Cache-Control": "no-store"})
        sources = {s.source_id: _state_json(s, site.sources.get(s.source_id)) for s in states}
        problems = health.failing(states, site.catalog.enabled)
        # A feed outage is "degraded" with 200, never 503: a health check that fails
        # on it would get the container restarted, which mends no feed.
        body: dict[str, object] = {
            "status": "degraded" if problems else "ok",
            "database": "ok",
            "failing": [_failing_json(problem) for problem in problems],
            "search_backlog": backlog,
            "sources": sources,
        }
        return _json(body, headers={"Cache-Control": "no-store"})

    return Route("/healthz", endpoint, methods=["GET"], name="healthz")


def _json(body: object, headers: Mapping[str, str]) -> Response:
    payload = json.dumps(body, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return Response(payload, media_type="application/json", headers=dict(headers))


def _metrics_endpoint(reader: ArticleReader, site: _Site) -> Route:
    def endpoint(request: Request) -> Response:
        try:
            site.metrics.observe_states(reader.states())
            site.metrics.search_backlog.set(reader.search_backlog())
            site.metrics.database_up.set(1)
        except StorageError as exc:
            # A scrape must still succeed when the database is down: that is when the
            # counters and database_up=0 matter most.
            logger.warning("metrics: cannot read source states: %s", exc)
            site.metrics.database_up.set(0)
        payload, content_type = site.metrics.render()
        return Response(payload, headers={"Content-Type": content_type})

    return Route("/metrics", endpoint, methods=["GET"], name="metrics")
