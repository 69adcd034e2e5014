"""Our exception hierarchy.

Every error says *which* thing failed and *why*, so one log line is enough::

    AggregatorError
    ├── ConfigError (also ValueError)       file, key, problem
    ├── ArchiveError (also ValueError)      file, line, what was expected
    ├── StorageError                        the database failed or refused
    ├── QueryError (also ValueError)        a search query that cannot be run
    ├── ServiceError                        the HTTP service cannot start (port in use)
    └── SourceError                         source id + URL
        ├── FetchError                      the network leg
        │   ├── HTTPStatusError             a non-2xx/304 answer (status)
        │   │   └── GoneError               410: the source is disabled
        │   ├── RateLimitedError            429/503 with Retry-After (retry_after seconds)
        │   ├── FetchTimeoutError           connect/read idle timeout or total deadline
        │   ├── ResponseTooLargeError       body over the cap, counted after decompression
        │   └── BlockedURLError             scheme or address refused (SSRF guard)
        ├── ParseError                      not a feed we can read at all
        └── AdapterError                    one entry could not be normalized (entry guid)

``str(error)`` renders as ``message: key=value ...: CauseType: cause`` (after
reader's ``_FancyExceptionBase``); ``kind`` is the short stable name stored in the
source state and used as a metrics label.  Both survive pickling: an error raised in
a parse-pool worker reaches the daemon with its class, context and one-line cause,
never the pool's remote traceback.

Imports from the package: nothing of the package (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


class AggregatorError(Exception):
    """Root of everything this package raises on purpose."""

    default_message: ClassVar[str] = "aggregator error"
    kind: ClassVar[str] = "error"

    def __init__(self, message: str | None = None, **context: object) -> None:
        self.message = message or self.default_message
        self.context = {key: value for key, value in context.items() if value is not None}
        self._pickled_cause: str | None = None
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.render()

    def render(self, known: Mapping[str, object] | None = None) -> str:
        """The one line, leaving out context that ``known`` already names with the same
        value: a log line bound to a source (:func:`aggregator.log.bound`) starts with
        ``source=ID url=URL``, and the error need not say it again."""
        parts = [self.message]
        shown = {
            key: value
            for key, value in self.context.items()
            if known is None or known.get(key) != value
        }
        if shown:
            parts.append(" ".join(f"{key}={_value(value)}" for key, value in shown.items()))
        cause = self._cause()
        if cause is not None:
            parts.append(cause)
        return ": ".join(parts)

    def _cause(self) -> str | None:
        # After unpickling, ``__cause__`` is whatever the receiver attached (a process
        # pool puts the worker's whole traceback there): the sender's one line wins.
        if self._pickled_cause is not None:
            return self._pickled_cause
        cause = self.__cause__
        return None if cause is None else f"{type(cause).__name__}: {cause}"

    def __reduce__(self) -> tuple[object, ...]:
        # Every attribute as it is (subclasses' constructors differ, so none is re-run),
        # and the cause as its one line: the cause object itself may not pickle.
        state = dict(self.__dict__, _pickled_cause=self._cause())
        return (_rebuild, (type(self), self.args), state)


def _value(value: object) -> str:
    """``source=voa``, as log lines spell it; quoted only where a value holds a space or
    a quote (a guid, a title), so the line still splits into ``key=value`` pairs."""
    text = str(value)
    if text and not any(char.isspace() or char in "'\"" for char in text):
        return text
    return repr(text)


def _rebuild(cls: type[AggregatorError], args: tuple[object, ...]) -> AggregatorError:
    return cls.__new__(cls, *args)


class ConfigError(AggregatorError, ValueError):
    default_message = "invalid configuration"
    kind = "config"

    def __init__(self, problem: str, *, file: str | None = None, key: str | None = None) -> None:
        super().__init__(problem, file=file, key=key)
        self.file = file
        self.key = key

    def __str__(self) -> str:
        where = ":".join(part for part in (self.file, self.key) if part)
        return f"{where}: {self.message}" if where else self.message


class ArchiveError(AggregatorError, ValueError):
    default_message = "malformed archive file"
    kind = "archive"

    def __init__(self, problem: str, *, file: str | None = None, line: int | None = None) -> None:
        super().__init__(problem, file=file, line=line)
        self.file = file
        self.line = line

    def __str__(self) -> str:
        where = f"{self.file or '<text>'}:{self.line}" if self.line else (self.file or "<text>")
        return f"{where}: {self.message}"


class StorageError(AggregatorError):
    default_message = "storage failed"
    kind = "storage"


class ServiceError(AggregatorError):
    default_message = "the HTTP service cannot start"
    kind = "service"


class SourceError(AggregatorError):
    """Something went wrong with one source; the others carry on."""

    default_message = "source failed"
    kind = "source"

    def __init__(
        self,
        message: str | None = None,
        *,
        source: str | None = None,
        url: str | None = None,
        **context: object,
    ) -> None:
        super().__init__(message, source=source, url=url, **context)
        self.source = source
        self.url = url


class FetchError(SourceError):
    default_message = "fetch failed"
    kind = "fetch"


class HTTPStatusError(FetchError):
    default_message = "unexpected HTTP status"
    kind = "http"

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int,
        source: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message or f"HTTP {status}", source=source, url=url, status=status)
        self.status = status


class GoneError(HTTPStatusError):
    default_message = "feed is gone (HTTP 410); source disabled"
    kind = "gone"

    def __init__(
        self, message: str | None = None, *, source: str | None = None, url: str | None = None
    ) -> None:
        super().__init__(message or self.default_message, status=410, source=source, url=url)


class RateLimitedError(FetchError):
    default_message = "rate limited"
    kind = "rate-limited"

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        source: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message, source=source, url=url, retry_after=retry_after)
        self.retry_after = retry_after


class FetchTimeoutError(FetchError):
    default_message = "timed out"
    kind = "timeout"


class ResponseTooLargeError(FetchError):
    default_message = "response too large"
    kind = "too-large"


class BlockedURLError(FetchError):
    default_message = "URL refused"
    kind = "blocked"


class MirrorsFailedError(SourceError):
    """Every URL of a source with mirrors failed in one poll; each URL's own error is
    in the source's state."""

    default_message = "every URL failed"
    kind = "mirrors"


class ParseError(SourceError):
    default_message = "not a readable feed"
    kind = "parse"


class AdapterError(SourceError):
    default_message = "entry could not be normalized"
    kind = "adapter"


class QueryError(AggregatorError, ValueError):
    """A search query that cannot be run (nothing to look for, a dangling OR)."""

    default_message = "invalid search query"
    kind = "query"
