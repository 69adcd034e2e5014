"""The corpus over HTTP/1.1 on loopback, from its own process, built not to be the bottleneck.

A bare asyncio protocol (no framework) answers from pre-built bytes: the gzip body
(or, for a client that does not accept gzip, the inflated body, made once), a strong
ETag and a Last-Modified per feed, and ``304 Not Modified`` for a matching
``If-None-Match`` (else ``If-Modified-Since``).  Keep-alive, pipelining-safe.
``GET /__stats`` reports the server's own CPU seconds and request count, so the
runner can show how much of a phase the server itself cost.  ``GET /page/<anything>``
answers an article page (the test suite's realistic page: article amid navigation,
ads, related links and comments), for the full-text figure.

Run: ``python -m bench.feedserver CORPUS_DIR`` -- prints ``PORT`` on stdout when ready.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import sys
from email.utils import parsedate_to_datetime
from pathlib import Path

_LAST_MODIFIED = "Sat, 01 Jun 2024 00:00:00 GMT"
_LAST_MODIFIED_TS = parsedate_to_datetime(_LAST_MODIFIED).timestamp()


class _Feed:
    __slots__ = ("etag", "gz", "head_gz", "head_plain", "not_modified", "plain")

    def __init__(self, gz: bytes) -> None:
        self.gz = gz
        self.plain: bytes | None = None
        self.etag = '"' + hashlib.sha1(gz).hexdigest()[:20] + '"'
        common = (
            f"ETag: {self.etag}\r\nLast-Modified: {_LAST_MODIFIED}\r\n"
            "Content-Type: application/rss+xml; charset=utf-8\r\n"
        )
        self.head_gz = (
            f"HTTP/1.1 200 OK\r\n{common}Content-Encoding: gzip\r\n"
            f"Vary: Accept-Encoding\r\nContent-Length: {len(gz)}\r\n\r\n"
        ).encode()
        self.head_plain = b""
        self.not_modified = (
            f"HTTP/1.1 304 Not Modified\r\nETag: {self.etag}\r\n"
            f"Last-Modified: {_LAST_MODIFIED}\r\n\r\n"
        ).encode()

    def plain_response(self) -> tuple[bytes, bytes]:
        if self.plain is None:
            self.plain = gzip.decompress(self.gz)
            head = self.head_gz.decode().replace("Content-Encoding: gzip\r\n", "")
            head = head.replace(
                f"Content-Length: {len(self.gz)}", f"Content-Length: {len(self.plain)}"
            )
            self.head_plain = head.encode()
        return self.head_plain, self.plain


def _page() -> bytes:
    """An article page as a full-text poll fetches it: the tests' page, filled in."""
    template = Path(__file__).parent.parent / "tests" / "fixtures" / "pages" / "article.html"
    text = template.read_text(encoding="utf-8")
    text = text.replace("{title}", "基准测试文章").replace("{n}", "1")
    body = text.replace("{lead}", "这是基准测试用的文章导语。").encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
        f'ETag: "page"\r\nContent-Length: {len(body)}\r\n\r\n'
    )
    return head.encode() + body


PAGE = _page()
FEEDS: dict[bytes, _Feed] = {}
STATS = {"requests": 0, "not_modified": 0, "bytes": 0}
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def _fresh(feed: _Feed, headers: dict[bytes, bytes]) -> bool:
    inm = headers.get(b"if-none-match")
    if inm is not None:
        return feed.etag.encode() in [tag.strip().removeprefix(b"W/") for tag in inm.split(b",")]
    ims = headers.get(b"if-modified-since")
    if ims is None:
        return False
    try:
        return parsedate_to_datetime(ims.decode()).timestamp() >= _LAST_MODIFIED_TS
    except (TypeError, ValueError, IndexError):
        return False


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            self._answer(head)

    def _answer(self, head: bytes) -> None:
        assert self.transport is not None
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        path = parts[1] if len(parts) > 1 else b"/"
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        STATS["requests"] += 1
        close = headers.get(b"connection", b"").lower() == b"close"
        if path == b"/__stats":
            usage = os.times()
            body = json.dumps({**STATS, "cpu": usage.user + usage.system}).encode()
            out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            out += b"Content-Length: %d\r\n\r\n" % len(body) + body
            self.transport.write(out)
        elif path.startswith(b"/page/"):
            STATS["bytes"] += len(PAGE)
            self.transport.write(PAGE)
        else:
            feed = FEEDS.get(path.split(b"?")[0])
            if feed is None:
                self.transport.write(_NOT_FOUND)
            elif _fresh(feed, headers):
                STATS["not_modified"] += 1
                self.transport.write(feed.not_modified)
            elif b"gzip" in headers.get(b"accept-encoding", b""):
                STATS["bytes"] += len(feed.gz)
                self.transport.writelines((feed.head_gz, feed.gz))
            else:
                head_plain, plain = feed.plain_response()
                STATS["bytes"] += len(plain)
                self.transport.writelines((head_plain, plain))
        if close:
            self.transport.close()


async def _serve(corpus: Path) -> None:
    for path in sorted(corpus.glob("*.xml.gz")):
        FEEDS[f"/rss/{path.name.removesuffix('.gz')}".encode()] = _Feed(path.read_bytes())
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Protocol, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    # Stop when the parent goes away (its end of our stdin closes).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


def main() -> None:
    asyncio.run(_serve(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
