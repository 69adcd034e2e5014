"""Property-based tests on the pure core: normalization is stable.

Normalizing an already normalized article changes nothing: an adapter's output,
fed back as a raw entry the way our own exported feeds carry it (the title as
escaped text, the body as HTML), comes out with the same title, body and link.
This is what lets ``renormalize`` re-run adapters over stored entries and lets
dedupe compare fingerprints across re-fetches.  (The "never raises anything but
ParseError/AdapterError" property over arbitrary bytes is in test_fuzz.py.)
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.adapters import adapter_names, get_adapter
from aggregator.clean import clean_html, sanitize
from aggregator.errors import AdapterError
from aggregator.types import RawEntry, Source

NOW = datetime(2024, 1, 1, tzinfo=UTC)
_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)  # not encodable as UTF-8
_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=_SURROGATES), max_size=15)
_BLOCKS = ["p", "div", "ul", "li", "table", "td", "section", "h2", "blockquote", "pre",
           "object", "script", "iframe", "button", "marquee"]  # fmt: skip
_INLINES = ["span", "a", "b", "i", "font"]
_VOIDS = ["img", "br"]
_ATTRS = ["", ' href="/x?utm_source=a"', ' src="//cdn.example/i.png"', ' onclick="x()"',
          ' style="a:b"', ' data-src="https://e.org/l.png"', ' href="javascript:x"']  # fmt: skip


def _html(depth: int = 3, *, inline: bool = False) -> st.SearchStrategy[str]:
    """Closed, sensibly nested markup: inline elements hold only text and inline elements.

    Mis-nested or unclosed markup (``<b><p>``, ``<p><section>x``) is where lxml (the
    cleaner's parser) and html5ever (the sanitizer's) build different trees, so
    clean_html is not always a fixed point on it; that limitation is reported, and
    its safety is covered by the sanitizer tests, which do use unclosed tags.
    """
    text = _TEXT.map(lambda t: html.escape(t, quote=False))
    if depth == 0:
        return text
    tags = _INLINES if inline else _BLOCKS + _INLINES
    element = (
        st.sampled_from(tags)
        .flatmap(
            lambda tag: st.tuples(
                st.just(tag),
                st.sampled_from(_ATTRS),
                st.lists(_html(depth - 1, inline=tag in _INLINES), max_size=3).map("".join),
            )
        )
        .map(lambda t: f"<{t[0]}{t[1]}>{t[2]}</{t[0]}>")
    )
    void = st.tuples(st.sampled_from(_VOIDS), st.sampled_from(_ATTRS)).map(
        lambda t: f"<{t[0]}{t[1]}>"
    )
    return st.one_of(text, element, void)


_TITLES = st.one_of(_TEXT, _html(1), _TEXT.map(html.escape))
_LINKS = st.sampled_from(
    [
        "https://www.zaobao.com//realtime/china/story20221205-1340446?utm_source=rss",
        "https://rfa.org/mandarin/a-06192019193257.html",
        "https://m.voachinese.com/a/x-20230703/7165432.html",
        "https://www.rfi.fr/cn/中国/20240131-x",
        "/relative/1.html",
        "HTTPS://Example.ORG:443/a/%7euser/",
    ]
)


@pytest.mark.parametrize("name", adapter_names())
def test_adapter_output_fed_back_is_unchanged(name: str) -> None:
    adapter = get_adapter(name)
    source = Source(id="s", name="S", url="https://example.org/feed.xml", adapter=name)

    @settings(max_examples=60, deadline=None)
    @given(title=_TITLES, body=_html(), link=_LINKS)
    def check(title: str, body: str, link: str) -> None:
        try:
            first = adapter(RawEntry(link=link, title=title, content=body), source, NOW)
        except AdapterError:
            return
        again = adapter(
            RawEntry(link=first.link, title=html.escape(first.title), content=first.body),
            source,
            NOW,
        )
        assert (again.title, again.body, again.link) == (first.title, first.body, first.link)

    check()


@settings(max_examples=200, deadline=None)
@given(_html())
def test_clean_html_is_a_fixed_point(markup: str) -> None:
    once = clean_html(markup, base_url="https://example.org/a/1")
    assert clean_html(once, base_url="https://example.org/a/1") == once
    assert sanitize(once) == once


_UNCLOSED = st.lists(
    st.one_of(
        _TEXT.map(lambda t: html.escape(t, quote=False)),
        st.sampled_from([f"<{t}>" for t in _BLOCKS + _INLINES + _VOIDS]),
        st.sampled_from([f"</{t}>" for t in _BLOCKS + _INLINES]),
    ),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_html(), _UNCLOSED))
def test_sanitize_twice_changes_nothing(markup: str) -> None:
    once = sanitize(markup)
    assert sanitize(once) == once


def test_sanitize_fixed_point_regression() -> None:
    """Found by this suite: one nh3 pass turned this into ``<p><p></p></p>``, not stable."""
    for markup in ("<p><object></p>", "<p><marquee></p>", "<p><object><p><object></p></p>"):
        once = sanitize(markup)
        assert sanitize(once) == once
