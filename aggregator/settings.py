"""Settings and the source list: read once, at start, by the CLI; passed down explicitly.

Precedence: environment variables ``AGGREGATOR_<NAME>`` over the settings file
(``--config``, default ``config/aggregator.toml`` when present) over built-in
defaults.  Every problem is reported as ``file:key: problem`` and stops the start:
a daemon that silently ignores a typo in a poll interval runs wrong for months.

Imports from the package: ``log`` (its formats), ``errors``, ``types`` (stages:
ARCHITECTURE.md).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from aggregator.errors import ConfigError, QueryError
from aggregator.log import LogFormat
from aggregator.search import Topic, parse_query
from aggregator.types import Source

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "Explained",
    "Settings",
    "explain_settings",
    "load_settings",
    "load_sources",
    "sources_to_toml",
    "unknown_environment",
]

DEFAULT_CONFIG_FILE = Path("config/aggregator.toml")
ENV_PREFIX = "AGGREGATOR_"
# Read by the project's own tooling, not by Settings: the --config option and the tests.
_OTHER_ENV = frozenset({"AGGREGATOR_CONFIG", "AGGREGATOR_TEST_DATABASE_URL"})

DAY = 86400.0
# Every duration is bounded on both sides: a zero interval is a hot loop, an infinite
# timeout switches a defence off, and both used to slip through as "valid floats".
Seconds = Annotated[float, Field(ge=0.05, le=30 * DAY)]
Timeout = Annotated[float, Field(ge=0.1, le=3600)]


class Settings(BaseSettings):
    """Daemon-wide settings.  Field docs are shown by ``aggregator config``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, allow_inf_nan=False
    )

    database_url: str = Field(
        "sqlite:///data/aggregator.db",
        description="SQLAlchemy URL: sqlite:///PATH (default) or postgresql+psycopg://...",
    )
    sources_file: Path = Field(Path("config/sources.toml"), description="the source list")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: LogFormat = Field(
        "text", description="text (one line per event) or json (one object per line)"
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    base_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/?#]+[^\s]*$",
        max_length=500,
        description="public URL of the HTTP service, for self links in feeds",
    )
    feed_title: str = "aggregator"
    feed_limit: int = Field(50, ge=1, le=1000, description="items per feed page by default")
    feed_max_limit: int = Field(500, ge=1, le=5000, description="cap on ?limit=")
    display_timezone: str = Field(
        "UTC", description="IANA time zone the pages show times in (e.g. Asia/Shanghai)"
    )
    feed_token: SecretStr | None = Field(
        None,
        min_length=16,
        max_length=200,
        description="when set, feeds, pages and /metrics need ?token= or an "
        "Authorization: Bearer header with it (/healthz stays open)",
    )

    @field_validator("display_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a known IANA time zone") from None
        return value

    default_interval: Seconds = Field(1800, ge=1, description="poll interval, seconds")
    jitter: float = Field(0.1, ge=0, le=1, description="random extra delay, fraction of interval")
    tick_seconds: Seconds = Field(
        5, description="how often the daemon looks for due sources (the scheduling resolution)"
    )
    max_concurrent_polls: int = Field(8, ge=1, le=256)
    max_polls_per_host: int = Field(
        2,
        ge=1,
        le=256,
        description="polls of sources on the same host at once: feed servers (feedx "
        "serves all four default sources) rate-limit or ban clients that open many",
    )
    max_entries_per_poll: int = Field(500, ge=1, le=100_000)
    max_entry_bytes: int = Field(
        1024 * 1024,
        ge=16 * 1024,
        le=64 * 1024 * 1024,
        description="UTF-8 bytes one entry's body may carry; a longer body is cut before a "
        "tag, the article kept and the cut said in the feed's problems",
    )
    max_title_bytes: int = Field(
        2048,
        ge=64,
        le=64 * 1024,
        description="UTF-8 bytes of an entry's title as plain text, as parsed and after "
        "cleaning; a longer title is cut and the cut said in the feed's problems",
    )
    parse_processes: int = Field(
        -1,
        ge=-1,
        le=64,
        description="processes that parse and clean fetched feeds: -1 one per usable CPU "
        "(affinity and container CPU quota; when there are several), 0 none (a thread)",
    )
    connect_timeout: Timeout = 5.0
    read_timeout: Timeout = 15.0
    total_timeout: Timeout = 30.0
    max_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, le=1024**3, description="response cap, decompressed"
    )
    max_redirects: int = Field(5, ge=0, le=20)
    allow_private_addresses: bool = Field(
        False, description="allow sources on private, loopback or link-local addresses"
    )
    backoff_cap: Seconds = Field(86400, ge=1, description="longest delay after failures")
    mirror_retry: Seconds = Field(
        86400,
        ge=60,
        description="for a source with mirrors: how long a failed primary URL is skipped "
        "before it is tried first again",
    )
    fulltext_pages_per_poll: int = Field(
        20,
        ge=1,
        le=1000,
        description="article pages one poll of a full-text source may fetch; the rest "
        "wait for the next poll",
    )
    retention_days: float | None = Field(
        None,
        ge=0,
        le=36500,
        description="delete articles this many days after they were first stored; "
        "unset or 0 keeps every article",
    )
    prune_interval: Seconds = Field(3600 * 6, ge=1, description="how often retention runs")
    lease_seconds: Seconds = Field(
        300, description="how long an instance's claim on a source lasts (multi-instance)"
    )
    shutdown_grace: Timeout = Field(20, description="wait for in-flight polls on stop")

    @property
    def retention(self) -> timedelta | None:
        """The default retention; ``None`` (the default) keeps every article."""
        return timedelta(days=self.retention_days) if self.retention_days else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The settings file arrives as init kwargs; the environment must win over it.
        return (env_settings, init_settings)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason})", file=str(path)) from exc
    except RecursionError as exc:
        raise ConfigError("not valid TOML: nested too deeply", file=str(path)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from exc


def _short(text: str, limit: int = 80) -> str:
    """Enough of a hostile value to recognise it, never a 100 kB echo."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


Problem = tuple[str, str, str]  # (file or origin, key, what is wrong)


def _problems(
    exc: ValidationError, origin: Callable[[str], str], *, prefix: str = ""
) -> list[Problem]:
    """Every problem pydantic found, as ``(origin, key, problem)``."""
    found = []
    for error in exc.errors():
        problem = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            problem = "unknown key"
        elif "input" in error and error["type"] != "missing":
            problem = f"{problem} (got {_short(repr(error['input']))})"
        loc = [str(part) for part in error["loc"]]
        key = ".".join([prefix, *loc] if prefix else loc)
        found.append((origin(loc[0] if loc else ""), key or "?", problem))
    return found


def _config_error(problems: Sequence[Problem]) -> ConfigError:
    """One error naming every problem, one ``file:key: problem`` per line.

    ``file`` and ``key`` are the first problem's; fixing a file one complaint per
    start (the old "(and 2 more problems)") takes as many starts as there are typos.
    """
    (file, key, problem), *rest = problems
    message = "\n".join([problem, *(f"{where}:{name}: {what}" for where, name, what in rest)])
    return ConfigError(message, file=file, key=key)


@dataclass(frozen=True)
class Explained:
    """Settings with where each value came from: ``default``, ``file PATH`` or ``environment``."""

    settings: Settings
    origins: Mapping[str, str]


def _environment_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def explain_settings(config_file: Path | None = None) -> Explained:
    """Build :class:`Settings` from the file (explicit, else the default if present) and env."""
    path = config_file
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    if config_file is not None and not config_file.is_file():
        raise ConfigError("settings file not found", file=str(config_file))
    values = _read_toml(path) if path is not None else {}
    environment = {name.upper() for name in os.environ}

    def origin(field: str) -> str:
        if _environment_name(field) in environment:
            return f"environment ${_environment_name(field)}"
        return str(path) if path is not None else "built-in defaults"

    try:
        settings = Settings(**values)
    except ValidationError as exc:
        raise _config_error(_problems(exc, origin)) from exc
    origins = {
        field: f"environment {_environment_name(field)}"
        if _environment_name(field) in environment
        else (f"file {path}" if field in values else "default")
        for field in Settings.model_fields
    }
    return Explained(settings, origins)


def load_settings(config_file: Path | None = None) -> Settings:
    """Build :class:`Settings` from the file (explicit, else the default if present) and env."""
    return explain_settings(config_file).settings


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """``AGGREGATOR_*`` variables no setting reads, each with a guess at the one meant.

    pydantic-settings ignores them silently, so ``AGGREGATOR_DATABSE_URL`` would leave
    the daemon on its default database with nothing said.
    """
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | _OTHER_ENV
    unknown = []
    for name in sorted(environ):
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known:
            close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.8)
            unknown.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return unknown


# --------------------------------------------------------------------------- sources


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
