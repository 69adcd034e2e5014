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
from datetime import timedelta
from typing import Annotated, Literal
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

__all__ = ["load_sources", "load_topics", "sources_to_toml"]


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
    path = settings.sources_file
    file = str(path)
    data = _read_toml(path)
    unknown = set(data) - {"source", "topic"}
    if unknown:
        raise ConfigError("unknown key (expected [[source]] tables)", file=file, key=min(unknown))
    tables = data.get("source", [])
    if not isinstance(tables, list):
        raise ConfigError("expected [[source]] tables", file=file, key="source")
    sources: list[Source] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables):
        where = f"source[{index}]"
        if isinstance(table, Mapping) and isinstance(table.get("id"), str):
            where = f"source[{index}] ({_short(table['id'], 70)})"
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


def load_topics(settings: Settings, known: Collection[str]) -> list[Topic]:
    """The ``[[topic]]`` tables of the sources file, each query parsed and each
    source checked against the ``known`` source ids."""
    file = str(settings.sources_file)
    tables = _read_toml(settings.sources_file).get("topic", [])
    if not isinstance(tables, list):
        raise ConfigError("expected [[topic]] tables", file=file, key="topic")
    topics: dict[str, Topic] = {}
    for index, table in enumerate(tables):
        where = f"topic[{index}]"
        try:
            config = TopicConfig.model_validate(table)
        except ValidationError as exc:
            raise _config_error(_problems(exc, lambda _field: file, prefix=where)) from exc
        if config.id in topics:
            raise ConfigError(f"duplicate topic id {config.id!r}", file=file, key=f"{where}.id")
        try:
            query = parse_query(config.query)
        except QueryError as exc:
            raise ConfigError(str(exc), file=file, key=f"{where}.query") from exc
        for source_id in config.sources or ():
            if source_id not in known:
                raise ConfigError(
                    f"unknown source {_short(source_id)!r}", file=file, key=f"{where}.sources"
                )
        chosen = tuple(sorted(set(config.sources))) if config.sources is not None else None
        topics[config.id] = Topic(config.id, config.title, query, chosen)
    return list(topics.values())


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
