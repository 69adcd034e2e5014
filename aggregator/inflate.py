"""gzip and deflate inflated by us, each step's output bounded.

httpx2's own decoders inflate a whole network chunk at once, which is unbounded; with
``zlib.decompressobj(max_length=...)`` a decompression bomb never allocates much more
than the cap.  A feed's body is inflated where it is parsed, in a parse worker when
the daemon has them (:func:`decoded`); the fetcher inflates what it reads itself
(an article page) as it arrives (:class:`Body`).

Imports from the package: :mod:`aggregator.errors` (the worker imports this module,
so it stays free of the HTTP client).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterable, Iterator, Sequence

from aggregator.errors import FetchError, ResponseTooLargeError

_INFLATE_CHUNK = 64 * 1024  # the most zlib may hand back per call


class _Inflater:
    """Incremental gzip/deflate decoder whose output per step is bounded.

    Handles multi-member gzip (concatenated members, as ``cat a.gz b.gz`` makes),
    both flavours of "deflate" (zlib-wrapped, as the RFC says, and raw, as some
    servers send), and ignores trailing garbage after a complete stream, like
    browsers do.
    """

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding in ("gzip", "x-gzip")
        self._obj: zlib._Decompress | None = None
        self._head = b""  # input held back until we can see which stream starts
        self._streams = 0
        self._trailing = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data and not self._trailing:
            if self._obj is None:
                data, self._head = self._head + data, b""
                if len(data) < 2:
                    self._head = data
                    return
                self._obj = self._start(data[:2])
                if self._obj is None:
                    self._trailing = True
                    return
            obj = self._obj
            while True:
                out = obj.decompress(data, _INFLATE_CHUNK)
                data = obj.unconsumed_tail
                if out:
                    yield out
                if obj.eof or (not data and len(out) < _INFLATE_CHUNK):
                    break
            if obj.eof:
                self._streams += 1
                self._obj = None
                data = obj.unused_data

    def _start(self, magic: bytes) -> zlib._Decompress | None:
        if self._gzip:
            if magic == b"\x1f\x8b":
                return zlib.decompressobj(16 + zlib.MAX_WBITS)
            if self._streams:
                return None
            raise zlib.error("not a gzip stream")
        if self._streams:
            return None
        zlib_wrapped = magic[0] & 0x0F == 8 and (magic[0] << 8 | magic[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)

    def finish(self) -> None:
        """Refuse a body that ended in the middle of a compressed stream."""
        if self._obj is not None or (self._head and not self._streams):
            raise zlib.error("compressed body is truncated")


def _inflate(inflaters: list[_Inflater], data: bytes) -> Iterator[bytes]:
    """Run ``data`` through the decoders lazily, so each stage stays bounded."""
    pieces: Iterable[bytes] = (data,)
    for inflater in inflaters:
        pieces = _chain(inflater, pieces)
    yield from pieces


def _chain(inflater: _Inflater, pieces: Iterable[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield from inflater.feed(piece)


class Body:
    """A response body as it arrives, its content codings undone, held to ``cap``
    bytes after decoding.

    Raises:
        ResponseTooLargeError: the decoded body passed ``cap``.
        FetchError: a compressed stream is corrupt or ends early.
    """

    def __init__(self, encodings: Sequence[str], cap: int, *, source: str, url: str) -> None:
        # The codings as the header lists them, in the order they were applied.
        self._inflaters = [_Inflater(name) for name in reversed(encodings)]
        self._cap = cap
        self._context = {"source": source, "url": url}
        self._body = bytearray()

    def feed(self, chunk: bytes) -> None:
        with self._corrupt():
            for piece in _inflate(self._inflaters, chunk):
                self._body += piece
                if len(self._body) > self._cap:
                    raise ResponseTooLargeError(
                        f"body is over the {self._cap} byte cap after decompression",
                        **self._context,
                    )

    def finish(self) -> bytes:
        with self._corrupt():
            for inflater in self._inflaters:
                inflater.finish()
        return bytes(self._body)

    @contextlib.contextmanager
    def _corrupt(self) -> Iterator[None]:
        """zlib's error as ours, naming the source and URL."""
        try:
            yield
        except zlib.error as exc:
            raise FetchError("corrupt compressed body", **self._context) from exc


def decoded(content: bytes, encodings: Sequence[str], cap: int, *, source: str, url: str) -> bytes:
    """``content`` with its content codings undone (itself when it has none), held to
    ``cap`` bytes as :class:`Body` holds a body that arrives."""
    if not encodings:
        return content
    body = Body(encodings, cap, source=source, url=url)
    body.feed(content)
    return body.finish()
