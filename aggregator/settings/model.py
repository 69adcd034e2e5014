"""The daemon-wide settings: the pydantic model, and building it from file and environment.

Precedence: environment variables ``AGGREGATOR_<NAME>`` over the settings file
(``--config``, default ``config/aggregator.toml`` when present) over built-in
defaults.  Every problem is reported as ``file:key: problem`` and stops the start:
a daemon that silently ignores a typo in a poll interval runs wrong for months.

Imports from the package: its own ``files``, ``log`` (its formats), ``errors``
(stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import difflib
import os
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from aggregator.errors import ConfigError
from aggregator.log import LogFormat
from aggregator.settings.files import _config_error, _problems, _read_toml

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "Explained",
    "Settings",
    "explain_settings",
    "load_settings",
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
        "(affinity and container CPU quota), one fewer in the daemon; 0 none (a thread)",
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
