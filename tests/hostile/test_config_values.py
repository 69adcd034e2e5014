"""Hostile values in the settings and sources files.

Contract (settings/): every problem stops the start with ``file:key: problem``.
tests/test_settings.py covers unknown keys, wrong types, duplicate ids and unknown
adapters.  Here: NaN/inf/huge numbers, non-UTF-8 bytes, very long ids, URLs with
credentials, spaces and control characters.

The cases below the second rule were defects this suite found in settings.py
(overflows, coerced types, credentials and control characters in URLs, settings
that switch a defence off); they are fixed and stay here as regressions.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aggregator.errors import ConfigError
from aggregator.settings import Settings, load_settings, load_sources

ADAPTERS = ["generic", "zaobao", "rfi", "rfa", "voa"]
GOOD = '[[source]]\nid = "one"\nname = "One"\nurl = "https://example.com/feed.xml"\n'


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AGGREGATOR_"):
            monkeypatch.delenv(name)


def _load_sources(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "sources.toml"
    path.write_bytes(data)
    load_sources(Settings(sources_file=path), adapters=ADAPTERS)


def _refused_naming(tmp_path: Path, data: bytes, key: str | None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        _load_sources(tmp_path, data)
    assert caught.value.file == str(tmp_path / "sources.toml")
    if key is not None:
        assert caught.value.key == key
    assert len(str(caught.value)) < 600  # a huge value is not echoed in full
    return caught.value


def _source(line: str = "", **replace: str) -> bytes:
    text = GOOD
    for old, new in replace.items():
        text = text.replace(old, new)
    return (text + line + "\n").encode()


KEY = "source[0] (one)"

# -- refused today, as they should be ------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (_source("interval = nan"), f"{KEY}.interval"),
        (_source("interval = -inf"), f"{KEY}.interval"),
        (_source("interval = 'nanh'"), f"{KEY}.interval"),
        (_source("retention_days = nan"), f"{KEY}.retention_days"),
        (_source(one="a" * 65), f"source[0] ({'a' * 65}).id"),
        (_source(one="ONE"), "source[0] (ONE).id"),
        (_source(**{"feed.xml": "fe ed.xml"}), f"{KEY}.url"),
        (_source(**{"feed.xml": "feed.xml\\r\\nX-Injected: 1"}), f"{KEY}.url"),
        (_source(**{"https://": "file://"}), f"{KEY}.url"),
        (_source(**{"https://": "javascript://"}), f"{KEY}.url"),
        (_source(**{'"One"': '"' + "n" * 201 + '"'}), f"{KEY}.name"),
        (_source("adapter = '../../etc/passwd'"), f"{KEY}.adapter"),
        (b"\xef\xbb\xbf" + GOOD.encode(), None),  # a BOM is not TOML
    ],
    ids=[
        "interval-nan",
        "interval-minus-inf",
        "interval-nan-hours",
        "retention-nan",
        "id-65-chars",
        "id-upper-case",
        "url-space",
        "url-crlf",
        "url-file-scheme",
        "url-javascript-scheme",
        "name-201-chars",
        "adapter-path",
        "utf8-bom",
    ],
)
def test_hostile_source_values_are_refused(tmp_path: Path, data: bytes, key: str | None) -> None:
    _refused_naming(tmp_path, data, key)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("connect_timeout = nan", "connect_timeout"),
        ("jitter = nan", "jitter"),
        ("http_port = 70000", "http_port"),
    ],
)
def test_hostile_settings_values_are_refused(tmp_path: Path, line: str, key: str) -> None:
    path = tmp_path / "aggregator.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert (caught.value.file, caught.value.key) == (str(path), key)


# -- found by this suite, fixed: overflow, coercion, invisible characters, defences off ---


def test_very_long_values_are_refused(tmp_path: Path) -> None:
    for data in (_source(one="a" * 100_000), _source(**{"feed.xml": "a" * 100_000})):
        with pytest.raises(ConfigError):
            _load_sources(tmp_path, data)


@pytest.mark.parametrize("field", ["id", "url"])
def test_very_long_values_are_not_echoed_in_full(tmp_path: Path, field: str) -> None:
    data = _source(one="a" * 100_000) if field == "id" else _source(**{"feed.xml": "a" * 100_000})
    _refused_naming(tmp_path, data, None)


@pytest.mark.parametrize(
    "line",
    [
        "interval = inf",
        "interval = 1e308",
        "interval = '1e400s'",
        "interval = 99999999999999999999999",
        "retention_days = inf",
        "retention_days = 1e300",
    ],
)
def test_overflowing_numbers_are_config_errors(tmp_path: Path, line: str) -> None:
    _refused_naming(tmp_path, _source(line), f"{KEY}.{line.split()[0]}")


def test_interval_that_rounds_to_zero_is_refused(tmp_path: Path) -> None:
    _refused_naming(tmp_path, _source("interval = 1e-300"), f"{KEY}.interval")


@pytest.mark.parametrize("line", ["interval = true", "enabled = 'yes'", "enabled = 1"])
def test_wrong_types_are_not_coerced(tmp_path: Path, line: str) -> None:
    _refused_naming(tmp_path, _source(line), f"{KEY}.{line.split()[0]}")


@pytest.mark.parametrize("target", ["settings", "sources"])
def test_non_utf8_bytes_are_config_errors(tmp_path: Path, target: str) -> None:
    if target == "sources":
        _refused_naming(tmp_path, GOOD.encode().replace(b"One", b"\xff\xfeOne"), None)
    else:
        path = tmp_path / "aggregator.toml"
        path.write_bytes(b"feed_title = '\xff'\n")
        with pytest.raises(ConfigError):
            load_settings(path)


def test_deeply_nested_toml_is_a_config_error(tmp_path: Path) -> None:
    _refused_naming(tmp_path, ("x = " + "[" * 5000 + "]" * 5000 + "\n").encode(), None)


@pytest.mark.parametrize(
    "url",
    [
        "https://user:secret@example.com/feed.xml",  # credentials land in every log line
        "https://example.com/fe\\u0000ed.xml",
        "https://example.com/fe\\u007fed.xml",
        "https://exa\\u0001mple.com/feed.xml",
        "https://example.com/fe\\u202eed.xml",  # bidi override: spoofs logs and the UI
        "https://example.com:99999/feed.xml",
        "https://:80/feed.xml",
    ],
)
def test_bad_urls_are_refused_at_start(tmp_path: Path, url: str) -> None:
    _refused_naming(tmp_path, _source(**{"https://example.com/feed.xml": url}), f"{KEY}.url")


@pytest.mark.parametrize("name", ["One\\nFAKE LOG LINE", "One\\u0000", "   "])
def test_names_with_control_characters_or_blank_are_refused(tmp_path: Path, name: str) -> None:
    _refused_naming(tmp_path, _source(**{'"One"': f'"{name}"'}), f"{KEY}.name")


@pytest.mark.parametrize(
    "line",
    [
        "total_timeout = inf",  # disables the total fetch deadline
        "read_timeout = inf",
        "default_interval = inf",  # then load_sources crashes with OverflowError
        "backoff_cap = inf",
        "retention_days = inf",
        "max_bytes = 99999999999999999999999999",  # disables the size cap
        "base_url = 'javascript:alert(1)'",  # used for self links in feeds and the page
    ],
)
def test_settings_that_disable_a_defence_are_refused(tmp_path: Path, line: str) -> None:
    path = tmp_path / "aggregator.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.key == line.split()[0]
