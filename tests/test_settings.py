"""Settings and sources: precedence, and errors that name the file, the key and the problem."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from aggregator.errors import ConfigError
from aggregator.settings import Settings, load_settings, load_sources

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = ["generic", "zaobao", "rfi", "rfa", "voa"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("AGGREGATOR_"):
            monkeypatch.delenv(name)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_loads() -> None:
    settings = load_settings(ROOT / "config" / "aggregator.toml")
    sources = load_sources(
        settings.model_copy(update={"sources_file": ROOT / "config" / "sources.toml"}),
        adapters=ADAPTERS,
    )
    assert [source.id for source in sources] == ["zaobao", "rfi", "rfa", "voa"]
    assert {source.adapter for source in sources} == {"zaobao", "rfi", "rfa", "voa"}
    assert sources[0].name == "联合早报"
    assert sources[2].name == "自由亚洲电台"
    assert all(source.interval == timedelta(minutes=30) for source in sources)
    assert all(source.url.startswith("https://feedx.net/rss/") for source in sources)


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _write(tmp_path, "a.toml", 'database_url = "sqlite:///file.db"\nhttp_port = 9000\n')
    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", "sqlite:///env.db")
    settings = load_settings(config)
    assert settings.database_url == "sqlite:///env.db"
    assert settings.http_port == 9000


def test_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings == Settings()
    assert settings.http_host == "127.0.0.1" and settings.http_port == 8080


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("http_port = 70000\n", "http_port", "less than or equal to 65535"),
        ("jitter = 'lots'\n", "jitter", "valid number"),
        ("databse_url = 'x'\n", "databse_url", "unknown key"),
        ("log_level = 'LOUD'\n", "log_level", "'DEBUG'"),
        ("http_port = \n", None, "not valid TOML"),
    ],
)
def test_bad_setting_names_file_key_and_problem(
    tmp_path: Path, text: str, key: str | None, words: str
) -> None:
    config = _write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert message.startswith(str(config))
    if key:
        assert caught.value.key == key
        assert f":{key}:" in message
    assert words in message


def test_bad_environment_value_is_attributed_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGGREGATOR_HTTP_PORT", "eighty")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "AGGREGATOR_HTTP_PORT" in str(caught.value)
    assert caught.value.key == "http_port"


def test_missing_settings_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


GOOD = """
[[source]]
id = "one"
name = "One"
url = "https://example.com/feed.xml"
"""


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (GOOD + "colour = 'red'\n", "source[0] (one).colour", "unknown key"),
        (GOOD + "interval = 'often'\n", "source[0] (one).interval", "valid number"),
        (GOOD + "interval = -5\n", "source[0] (one).interval", "greater than or equal to 1"),
        (GOOD + "adapter = 'nope'\n", "source[0] (one).adapter", "unknown adapter 'nope'"),
        (GOOD + GOOD, "source[1] (one).id", "duplicate source id 'one'"),
        (GOOD.replace("https://", "file://"), "source[0] (one).url", "http:// or https://"),
        (GOOD.replace('id = "one"', 'id = "../x"'), "source[0] (../x).id", "pattern"),
        (GOOD + "\n[extra]\n", "extra", "unknown key"),
    ],
)
def test_bad_source_names_file_key_and_problem(
    tmp_path: Path, text: str, key: str, words: str
) -> None:
    sources_file = _write(tmp_path, "sources.toml", text)
    settings = Settings(sources_file=sources_file)
    with pytest.raises(ConfigError) as caught:
        load_sources(settings, adapters=ADAPTERS)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{sources_file}:{key}: ")
    assert words in str(caught.value)


def test_source_options(tmp_path: Path) -> None:
    text = GOOD + "interval = '2h'\nretention_days = 7\nenabled = false\n"
    settings = Settings(sources_file=_write(tmp_path, "s.toml", text), allow_private_addresses=True)
    (source,) = load_sources(settings, adapters=ADAPTERS)
    assert source.interval == timedelta(hours=2)
    assert source.retention == timedelta(days=7)
    assert source.enabled is False
    assert source.allow_private is True


def test_mirrors_after_url_or_a_urls_list(tmp_path: Path) -> None:
    text = (
        GOOD + "mirrors = ['https://b.example/f', 'https://c.example/f']\nfulltext = 'auto'\n"
        "[[source]]\nid = 'two'\nname = 'Two'\n"
        "urls = ['https://x.example/f', 'https://y.example/f']\nfulltext = true\n"
    )
    settings = Settings(sources_file=_write(tmp_path, "s.toml", text))
    one, two = load_sources(settings, adapters=ADAPTERS)
    assert one.urls[1:] == ("https://b.example/f", "https://c.example/f")
    assert one.url == one.urls[0] and one.fulltext == "auto"
    assert (two.url, two.mirrors, two.fulltext) == (
        "https://x.example/f",
        ("https://y.example/f",),
        True,
    )


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("urls = ['https://x.example/f']\n", "either url"),
        ("mirrors = ['https://example.com/feed.xml']\n", "listed twice"),
        ("mirrors = ['ftp://example.org/feed']\n", "http"),
        ("fulltext = 'yes'\n", "auto"),
    ],
)
def test_bad_mirror_or_fulltext_options(tmp_path: Path, extra: str, words: str) -> None:
    settings = Settings(sources_file=_write(tmp_path, "s.toml", GOOD + extra))
    with pytest.raises(ConfigError) as caught:
        load_sources(settings, adapters=ADAPTERS)
    assert words in str(caught.value)
