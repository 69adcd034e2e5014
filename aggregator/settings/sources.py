"""The source list and the topics: the ``[[source]]`` and ``[[topic]]`` tables of the
sources file, validated strictly, and the tables written back (OPML import).

Strict because TOML values are typed: ``enabled = 'yes'`` is a mistake to report,
not to coerce.  A URL that would forge a log line or leak credentials into every log
line is refused here, before any stage sees it.

Imports from the package: its own ``model`` (the settings a source falls back on) and
``files``, ``search`` (topic queries), ``errors``, ``types`` (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from aggregator.errors import ConfigError, QueryError
from aggregator.search import Topic, parse_query
from aggregator.settings.files import Problem, _config_error, _problems, _read_toml, _short
from aggregator.settings.model import DAY, Settings
from aggregator.types import Source

__all__ = ["BadTopic", "SourcesFile", "load_sources", "read_sources_file", "sources_to_toml"]


def _parse_interval(value: object) -> object:
    """Accept seconds, or a string like ``90s``, ``30m``, ``2h``, ``1d``.

    Anything else is passed on unchanged for the field's own validation to refuse
    (a bool is not a number here, whatever Python says).
    """
    if isinstance(value, str):
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        text = value.strip().lower()
        if text and text[-1] in units:
            try:
                return float(text[:-1]) * units[text[-1]]
            except ValueError:
                return value
    return value


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _check_url(value: str) -> str:
    """An absolute http(s) URL with a host, a valid port, no credentials, nothing invisible.

    Credentials are refused because a feed URL appears in every log line, error
    and ``aggregator sources`` row; control and bidi characters because they forge
    log lines or spoof what an operator sees.
    """
    if _CONTROL.search(value) or any(char.isspace() for char in value):
        raise ValueError("URL contains whitespace or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError("URL must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL are not supported (they would be logged)")
    try:
        parts.port  # noqa: B018 -- raises ValueError for a port outside 0..65535
    except ValueError as exc:
        raise ValueError("URL has an invalid port") from exc
    return value


def _check_name(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("name contains control characters")
    if not value.strip():
        raise ValueError("name is blank")
    return value


URL = Annotated[str, AfterValidator(_check_url), Field(max_length=2000)]
_MAX_URLS = 10


class SourceConfig(BaseModel):
    """One ``[[source]]`` table of the sources file.

    Strict: TOML values are typed, so ``enabled = 'yes'`` or ``interval = true`` is a
    mistake to report, not something to coerce.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    name: Annotated[str, AfterValidator(_check_name)] = Field(min_length=1, max_length=200)
    url: URL | None = None
    urls: list[URL] | None = Field(None, min_length=1, max_length=_MAX_URLS)
    mirrors: list[URL] = Field(default_factory=list, max_length=_MAX_URLS - 1)
    fulltext: bool | Literal["auto"] = False
    adapter: str = Field("generic", max_length=64)
    interval: float | None = Field(None, ge=1, le=30 * DAY, description="seconds, or '30m', '2h'")
    enabled: bool = True
    retention_days: float | None = Field(None, ge=0.01, le=36500)
    allow_private: bool = False

    _interval = field_validator("interval", mode="before")(_parse_interval)

    @field_validator("fulltext", mode="before")
    @classmethod
    def _fulltext(cls, value: object) -> object:
        # One message instead of pydantic's two (one per member of the union).
        if not isinstance(value, bool) and value != "auto":
            raise ValueError('expected true, false or "auto"')
        return value

    @model_validator(mode="after")
    def _one_url_list(self) -> SourceConfig:
        """``url`` (with optional ``mirrors``) or ``urls``: exactly one way, no repeats."""
        if (self.url is None) == (self.urls is None):
            raise ValueError("give either url (and optionally mirrors) or urls")
        if self.urls is not None and self.mirrors:
            raise ValueError("mirrors go with url; with urls, list every URL there")
        urls = self.all_urls
        if len(set(urls)) != len(urls):
            raise ValueError("a URL is listed twice")
        return self

    @property
    def all_urls(self) -> list[str]:
        return self.urls if self.urls is not None else [self.url or "", *self.mirrors]

    def to_source(self, settings: Settings) -> Source:
        primary, *mirrors = self.all_urls
        return Source(
            id=self.id,
            name=self.name,
            url=primary,
            mirrors=tuple(mirrors),
            fulltext=self.fulltext,
            adapter=self.adapter,
            interval=timedelta(seconds=self.interval or settings.default_interval),
            enabled=self.enabled,
            retention=timedelta(days=self.retention_days) if self.retention_days else None,
            allow_private=self.allow_private or settings.allow_private_addresses,
        )


def load_sources(settings: Settings, *, adapters: Sequence[str]) -> list[Source]:
    """Read and validate the source list; ``adapters`` are the registered adapter names."""
    return _sources_of(_read_toml(settings.sources_file), settings, adapters)


def _where(kind: str, index: int, table: object) -> str:
    """How a problem names a table: its place in the file, and its id when it has one."""
    if isinstance(table, Mapping) and isinstance(table.get("id"), str):
        return f"{kind}[{index}] ({_short(table['id'], 70)})"
    return f"{kind}[{index}]"


def _sources_of(
    data: Mapping[str, Any], settings: Settings, adapters: Sequence[str]
) -> list[Source]:
    file = str(settings.sources_file)
    unknown = set(data) - {"source", "topic"}
    if unknown:
        raise ConfigError("unknown key (expected [[source]] tables)", file=file, key=min(unknown))
    tables = data.get("source", [])
    if not isinstance(tables, list):
        raise ConfigError("expected [[source]] tables", file=file, key="source")
    if not isinstance(data.get("topic", []), list):
        raise ConfigError("expected [[topic]] tables", file=file, key="topic")
    sources: list[Source] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables):
        where = _where("source", index, table)
        try:
            config = SourceConfig.model_validate(table)
        except ValidationError as exc:
            problems += _problems(exc, lambda _field: file, prefix=where)
            continue
        if config.id in seen:
            problems.append(
                (
                    file,
                    f"{where}.id",
                    f"duplicate source id {config.id!r} (first at source[{seen[config.id]}])",
                )
            )
            continue
        if config.adapter not in adapters:
            known = ", ".join(sorted(adapters))
            problems.append(
                (file, f"{where}.adapter", f"unknown adapter {config.adapter!r} (known: {known})")
            )
            continue
        seen[config.id] = index
        sources.append(config.to_source(settings))
    if problems:
        raise _config_error(problems)
    return sources


class TopicConfig(BaseModel):
    """One ``[[topic]]`` table: a saved search served as feeds of its own."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    title: Annotated[str, AfterValidator(_check_name)] = Field(min_length=1, max_length=200)
    query: str = Field(min_length=1, max_length=500)
    sources: list[str] | None = None


@dataclass(frozen=True)
class BadTopic:
    """A ``[[topic]]`` table that does not validate: its id when it names one, and
    every problem with it."""

    id: str | None
    problems: tuple[Problem, ...]

    def __str__(self) -> str:
        """One line, ``file:key: problem; key: problem``: a reload logs a line per topic."""
        (file, key, problem), *rest = self.problems
        return "; ".join([f"{file}:{key}: {problem}", *(f"{k}: {p}" for _, k, p in rest)])


@dataclass(frozen=True)
class SourcesFile:
    """What the sources file configures, read from one version of the file.

    A bad source makes the whole file bad (:func:`read_sources_file` raises), since
    polling a half-read list would drop sources silently.  Topics are checked one by
    one instead: a bad topic is in ``bad_topics`` and the others are good, so a
    reload can serve them while the bad one is reported.
    """

    sources: list[Source]
    topics: list[Topic]
    bad_topics: list[BadTopic]

    def every_topic(self) -> list[Topic]:
        """The topics; :class:`ConfigError` naming every problem when one is bad (the
        daemon's start and commands that use them all)."""
        if self.bad_topics:
            raise _config_error([problem for bad in self.bad_topics for problem in bad.problems])
        return self.topics

    def topic(self, topic_id: str) -> Topic:
        """One topic; :class:`ConfigError` when it is bad or missing (the others may be bad)."""
        for topic in self.topics:
            if topic.id == topic_id:
                return topic
        for bad in self.bad_topics:
            if bad.id == topic_id:
                raise _config_error(bad.problems)
        raise ConfigError(f"no [[topic]] with id {_short(topic_id)!r}", key="--topic")


def read_sources_file(settings: Settings, *, adapters: Sequence[str]) -> SourcesFile:
    """The sources and topics of the sources file, read once; raises
    :class:`ConfigError` with every problem of the file or its sources."""
    data = _read_toml(settings.sources_file)
    sources = _sources_of(data, settings, adapters)
    topics: dict[str, Topic] = {}
    bad: list[BadTopic] = []
    for index, table in enumerate(data.get("topic", [])):
        found = _topic_of(table, _where("topic", index, table), settings, sources, topics)
        if isinstance(found, Topic):
            topics[found.id] = found
        else:
            bad.append(found)
    return SourcesFile(sources, list(topics.values()), bad)


def _topic_of(
    table: object,
    where: str,
    settings: Settings,
    sources: Collection[Source],
    seen: Collection[str],
) -> Topic | BadTopic:
    """One ``[[topic]]`` table as a topic, or what is wrong with it."""
    file = str(settings.sources_file)
    named = table.get("id") if isinstance(table, Mapping) else None
    topic_id = named if isinstance(named, str) else None
    try:
        config = TopicConfig.model_validate(table)
    except ValidationError as exc:
        return BadTopic(topic_id, tuple(_problems(exc, lambda _field: file, prefix=where)))
    problems: list[Problem] = []
    if config.id in seen:
        problems.append((file, f"{where}.id", f"duplicate topic id {config.id!r}"))
    try:
        query = parse_query(config.query)
    except QueryError as exc:
        problems.append((file, f"{where}.query", exc.message))
    known = {source.id for source in sources}
    for source_id in config.sources or ():
        if source_id not in known:
            problems.append((file, f"{where}.sources", f"unknown source {_short(source_id)!r}"))
    if problems:
        return BadTopic(topic_id, tuple(problems))
    chosen = tuple(sorted(set(config.sources))) if config.sources is not None else None
    return Topic(config.id, config.title, query, chosen)


def sources_to_toml(sources: Sequence[Source]) -> str:
    """``[[source]]`` tables that :func:`load_sources` reads back (OPML import writes these).

    Strings are written as JSON strings, which are valid TOML basic strings.
    """
    blocks = []
    for source in sources:
        lines = [
            "[[source]]",
            f"id = {json.dumps(source.id, ensure_ascii=False)}",
            f"name = {json.dumps(source.name, ensure_ascii=False)}",
            f"url = {json.dumps(source.url, ensure_ascii=False)}",
            f"adapter = {json.dumps(source.adapter)}",
            f"interval = {int(source.interval.total_seconds())}",
        ]
        if source.mirrors:
            lines.append(f"mirrors = {json.dumps(list(source.mirrors), ensure_ascii=False)}")
        if source.fulltext:
            lines.append(f"fulltext = {json.dumps(source.fulltext)}")
        if not source.enabled:
            lines.append("enabled = false")
        if source.retention is not None:
            lines.append(f"retention_days = {source.retention.total_seconds() / 86400:g}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)
