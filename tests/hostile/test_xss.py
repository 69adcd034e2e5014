"""Content safety: a corpus of XSS vectors through the sanitizer, clean_html and every adapter.

Defence: :func:`aggregator.clean.sanitize` (nh3/ammonia allowlist) runs last in
:func:`clean_html`, which every adapter uses for bodies.  These tests check the
*output structure* (parsed back by two HTML parsers), not the absence of words: a
text node saying "javascript:" is harmless, an ``href`` starting with it is not.
Property tests over generated HTML (idempotence, no text lost) are in
tests/test_clean.py; here they are widened to hostile attributes and URLs.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.adapters import adapter_names, get_adapter
from aggregator.clean import clean_html, sanitize
from aggregator.errors import AdapterError
from aggregator.types import RawEntry, Source

VECTORS_FILE = Path(__file__).parent.parent / "fixtures" / "hostile" / "xss-vectors.txt"
_ESCAPES = {
    "\\x00": "\x00",
    "\\t": "\t",
    "\\n": "\n",
    "\\r": "\r",
    "\\x0b": "\x0b",
    "\\x0c": "\x0c",
}


def load_vectors() -> list[str]:
    vectors = []
    for line in VECTORS_FILE.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("# "):
            continue
        for token, char in _ESCAPES.items():
            line = line.replace(token, char)
        vectors.append(line)
    return vectors


VECTORS = load_vectors()
FORBIDDEN_TAGS = {
    "script", "style", "iframe", "object", "embed", "form", "input", "button", "textarea",
    "base", "meta", "link", "svg", "math", "frame", "frameset", "applet", "template",
    "noscript", "xmp", "isindex", "marquee", "bgsound", "select", "option", "title", "body",
    "html", "head",
}  # fmt: skip
URL_ATTRIBUTES = {"href", "src", "poster", "cite", "action", "formaction", "background", "data"}
SAFE_SCHEMES = ("http", "https", "mailto")
RAW_FORBIDDEN = re.compile(r"<\s*/?\s*(?:" + "|".join(sorted(FORBIDDEN_TAGS)) + r")\b", re.I)
# How a browser (WHATWG URL parser) finds a scheme: strip leading/trailing C0 controls
# and spaces, drop tabs and newlines anywhere, then an ASCII letter and [a-z0-9+.-]*.
_URL_EDGES = re.compile(r"^[\x00-\x20]+|[\x00-\x20]+$")
_URL_TABS = re.compile(r"[\t\n\r]")
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):", re.I)


def url_scheme(value: str) -> str | None:
    """The scheme a browser would see in an attribute value, or None if it is relative."""
    url = _URL_TABS.sub("", _URL_EDGES.sub("", html.unescape(value)))
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else None


NOW = datetime(2024, 1, 1, tzinfo=UTC)


def assert_safe(out: str) -> None:
    """The invariants every sanitized body must hold (the issue's list, checked structurally)."""
    assert "\x00" not in out
    assert not RAW_FORBIDDEN.search(out), out
    for parser in ("lxml", "html.parser"):
        root = BeautifulSoup(f"<div>{out}</div>", parser).find("div")
        assert root is not None
        for tag in root.find_all(True):
            assert tag.name not in FORBIDDEN_TAGS, (parser, out)
            for name, value in tag.attrs.items():
                text = " ".join(value) if isinstance(value, list) else str(value)
                assert not name.lower().startswith("on"), (parser, name, out)
                assert name.lower() not in ("style", "srcdoc", "xlink:href"), (parser, name, out)
                assert "expression(" not in text.lower()
                if name.lower() in URL_ATTRIBUTES:
                    scheme = url_scheme(text)
                    assert scheme in (None, *SAFE_SCHEMES), (parser, name, text, out)


@pytest.mark.parametrize("vector", VECTORS)
def test_sanitize_neutralises_vector(vector: str) -> None:
    once = sanitize(vector)
    assert_safe(once)
    assert sanitize(once) == once


@pytest.mark.parametrize("vector", VECTORS)
def test_clean_html_neutralises_vector(vector: str) -> None:
    out = clean_html(vector, base_url="https://example.org/article/1")
    assert_safe(out)
    assert sanitize(out) == out


def test_corpus_is_large_enough() -> None:
    assert len(VECTORS) >= 80


@pytest.mark.parametrize("name", adapter_names())
def test_every_adapter_neutralises_every_vector(name: str) -> None:
    adapter = get_adapter(name)
    source = Source(id="s", name="S", url="https://example.org/feed", adapter=name)
    for vector in VECTORS:
        entry = RawEntry(link="https://example.org/a/1", title="t", content=vector)
        article = adapter(entry, source, NOW)
        assert_safe(article.body)
        # The vector as a title: plain text comes out (or the entry is rejected).
        try:
            titled = adapter(RawEntry(link="https://example.org/a/2", title=vector), source, NOW)
        except AdapterError:
            continue
        assert "\x00" not in titled.title


@pytest.mark.parametrize("name", adapter_names())
@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(1)",
        " JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
    ],
)
def test_adapters_refuse_non_http_article_links(name: str, link: str) -> None:
    """The article link is exported as an href (feeds, archive, web page): http(s) only."""
    adapter = get_adapter(name)
    source = Source(id="s", name="S", url="https://example.org/feed", adapter=name)
    with pytest.raises(AdapterError):
        adapter(RawEntry(link=link, guid=link, title="t", content="<p>x</p>"), source, NOW)


# -- properties over generated hostile HTML ------------------------------------------------

_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12
).map(lambda t: html.escape(t, quote=False))
_TAGS = ["p", "div", "a", "img", "b", "script", "style", "iframe", "svg", "math", "form", "object"]
_ATTRS = [
    "",
    ' onclick="x()"',
    " ONERROR=alert(1)",
    ' href="javascript:x"',
    ' href=" jav&#x61;script:x"',
    ' src="data:text/html,x"',
    ' style="x:expression(alert(1))"',
    ' href="https://ok.example/"',
    ' srcdoc="<script>x</script>"',
]


def _hostile_html(depth: int = 3) -> st.SearchStrategy[str]:
    if depth == 0:
        return _TEXT
    inner = st.lists(_hostile_html(depth - 1), max_size=3).map("".join)
    element = st.tuples(st.sampled_from(_TAGS), st.sampled_from(_ATTRS), inner, st.booleans()).map(
        lambda t: f"<{t[0]}{t[1]}>{t[2]}" + (f"</{t[0]}>" if t[3] else "")
    )
    return st.one_of(_TEXT, element)


def _visible_text(markup: str) -> str:
    soup = BeautifulSoup(markup, "lxml")
    for tag in soup.find_all(
        ["script", "style", "template", "noscript", "xmp", "textarea", "title"]
    ):
        tag.decompose()
    return re.sub(r"\s+", "", soup.get_text())


@settings(max_examples=200, deadline=None)
@given(_hostile_html())
def test_sanitize_is_safe_and_idempotent_on_generated_html(markup: str) -> None:
    once = sanitize(markup)
    assert_safe(once)
    assert sanitize(once) == once


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["p", "b", "i", "div", "a", "span"]), _TEXT), max_size=6))
def test_sanitize_never_loses_text(parts: list[tuple[str, str]]) -> None:
    markup = "".join(f'<{tag} onclick="x()" style="a:b">{text}</{tag}>' for tag, text in parts)
    assert _visible_text(sanitize(markup)) == _visible_text(markup)
