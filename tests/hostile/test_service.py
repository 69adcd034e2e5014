"""Bad requests to the HTTP service get a short 4xx, never a 500 or a stack trace.

Runs the real ASGI app (``create_app``) through starlette's TestClient against a
tiny in-file fake reader, so only parameter handling is under test.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from fakereader import LatestReader
from starlette.testclient import TestClient

from aggregator.serve import create_app
from aggregator.types import Article, Cursor, Provenance, SourceState, StoredArticle

NOW = datetime(2024, 1, 1, tzinfo=UTC)


class TinyReader(LatestReader):
    """Two articles, one source; enough for every endpoint to render."""

    def __init__(self) -> None:
        self.rows = [
            StoredArticle(
                id=index,
                article=Article(
                    "one", "One", f"t{index}", f"https://e.org/{index}", "<p>b</p>", NOW, NOW
                ),
                provenance=(Provenance("one", "One", f"https://e.org/{index}", None, NOW),),
                updated=NOW,
            )
            for index in (2, 1)
        ]

    def latest(
        self, *, sources: Sequence[str] | None = None, limit: int = 50, before: Cursor | None = None
    ) -> list[StoredArticle]:
        rows = [row for row in self.rows if before is None or row.cursor < before]
        return rows[:limit]

    def last_updated(self, sources: Sequence[str] | None = None) -> datetime | None:
        return NOW

    def article(self, article_id: int) -> StoredArticle | None:
        return next((row for row in self.rows if row.id == article_id), None)

    def ping(self) -> None:
        return None

    def states(self) -> list[SourceState]:
        return [SourceState(source_id="one", url="https://e.org/feed")]

    def article_counts(self) -> dict[str, int]:
        return {"one": 2}

    def search_backlog(self) -> int:
        return 0


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = create_app(
        TinyReader(), base_url="https://agg.example", sources={"one": "One"}, max_limit=500
    )
    return TestClient(app, raise_server_exceptions=False)


ENDPOINTS = ["/", "/feed.xml", "/atom.xml", "/feed.json"]
BAD_QUERIES = [
    "limit=-1",
    "limit=0",
    "limit=501",
    "limit=99999999999999999999999999",
    "limit=1e3",
    "limit=",
    "limit=%20%35",
    "limit=%EF%BC%95",  # full-width digit five
    "limit=5%00",
    "limit=0x10",
    "limit=1&limit=2",
    "source=nope",
    "source=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "source=" + "x" * 5000,
    "source=one%00",
    "before=garbage",
    "before=%FF%FE%FD",
    "before=%",
    "before=%zz",
    "before=%C0%AF",
    "before=" + "A" * 20_000,
    "before=a&before=b",
    "before=eyJ0IjoxfQ",  # base64 of a JSON object that is no cursor
    "before=MTIzNDU2Nzg5MDEyMzQ1Njc4OTA",  # base64 of digits
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("query", BAD_QUERIES, ids=[q[:40] for q in BAD_QUERIES])
def test_bad_parameters_are_short_4xx(client: TestClient, endpoint: str, query: str) -> None:
    response = client.get(f"{endpoint}?{query}")
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert len(response.text) < 500
    assert "Traceback" not in response.text and 'File "' not in response.text
    # The message may quote the (truncated) value, so it must never be rendered as HTML.
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_very_long_query_string(client: TestClient, endpoint: str) -> None:
    response = client.get(endpoint + "?" + "&".join(f"junk{i}=" + "y" * 100 for i in range(500)))
    assert response.status_code < 500
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "path", ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/%00", "/" + "a" * 10_000]
)
def test_odd_paths_are_404(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "Traceback" not in response.text


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_good_request_still_works(client: TestClient, endpoint: str) -> None:
    assert client.get(f"{endpoint}?limit=1&source=one").status_code == 200
