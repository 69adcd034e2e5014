from __future__ import annotations

import re
from urllib.parse import urljoin

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from aggregator.urls import (
    _PATH_SAFE,
    _PATH_WORK,
    _QUERY_SAFE,
    _QUERY_WORK,
    _UNRESERVED,
    _host,
    _normalise_percent,
    canonical_url,
    is_http_url,
    unproxy_image,
)

RFI_ENCODED = "https://www.rfi.fr/cn/%E5%9B%BD%E9%99%85/20240131-%E4%B8%AD%E5%9B%BD"


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("https://www.zaobao.com//realtime/china/story20221205-1340446",
         "https://www.zaobao.com/realtime/china/story20221205-1340446"),
        ("HTTPS://WWW.Example.COM:443/a?utm_source=x&id=3&fbclid=y#frag",
         "https://www.example.com/a?id=3"),
        ("http://example.com:80", "http://example.com/"),
        ("http://example.com:8080/x", "http://example.com:8080/x"),
        ("https://www.zaobao.com.sg/keywords/x?ref=article-inline", "https://www.zaobao.com.sg/keywords/x"),
        ("https://example.com/search?ref=main", "https://example.com/search?ref=main"),
        ("https://www.rfi.fr/cn/国际/20240131-中国", RFI_ENCODED),
        (RFI_ENCODED.lower().replace("https", "https"), RFI_ENCODED),
        ("https://example.com/%7Euser/a%2Fb", "https://example.com/~user/a%2Fb"),
        ("https://example.com/a b", "https://example.com/a%20b"),
        ("mailto:x@example.com", "mailto:x@example.com"),
        ("//pagead2.googlesyndication.com/x.js", "https://pagead2.googlesyndication.com/x.js"),
        ("https://example.com/a?gclid=1&utm_medium=2", "https://example.com/a"),
    ],
)  # fmt: skip
def test_canonical_url(url: str, want: str) -> None:
    assert canonical_url(url) == want


def test_relative_against_base_and_host_aliases() -> None:
    base = "https://www.zaobao.com//realtime/china/story20221205-1340446"
    assert canonical_url("/news/china/story1", base) == "https://www.zaobao.com/news/china/story1"
    assert canonical_url("//cdn.example/x.jpg", "http://a.example/") == "http://cdn.example/x.jpg"
    aliases = {"zaobao.com": "www.zaobao.com"}
    assert canonical_url("https://zaobao.com/x", host_aliases=aliases) == "https://www.zaobao.com/x"
    assert (
        canonical_url("https://zaobao.com.sg/x", host_aliases=aliases) == "https://zaobao.com.sg/x"
    )


def test_unproxy_image() -> None:
    assert (
        unproxy_image("https://images.weserv.nl?url=gdb.voanews.com/a63e_r1_s_w900.jpg")
        == "https://gdb.voanews.com/a63e_r1_s_w900.jpg"
    )
    assert (
        unproxy_image("https://wsrv.nl/?url=https://x.example/a.jpg&w=5")
        == "https://x.example/a.jpg"
    )
    assert unproxy_image("https://images.weserv.nl/?w=5") == "https://images.weserv.nl/?w=5"
    assert unproxy_image("https://example.com/?url=x.jpg") == "https://example.com/?url=x.jpg"


def test_is_http_url() -> None:
    assert is_http_url(" https://example.com/a ")
    assert not is_http_url("0a29ee59-eeca-444a-a2e1-68450d752612")
    assert not is_http_url(None)


segment = st.text(alphabet=st.sampled_from("ab~-_.中国%2Fé &="), min_size=0, max_size=8)


@settings(max_examples=80, deadline=None)
@given(st.lists(segment, max_size=4), st.sampled_from(["", "?a=1", "?utm_x=2&b=中"]))
def test_canonical_is_idempotent_and_raw_encoded_agree(parts: list[str], query: str) -> None:
    url = "https://Example.com/" + "/".join(parts) + query
    once = canonical_url(url)
    assert canonical_url(once) == once
    assert once.isascii()


_SCHEME = st.sampled_from(["", "http:", "https:", "HTTP:", "hTTps:", "ftp:", "mailto:"])
_NETLOC = st.sampled_from(
    ["", "//example.com", "//EXAMPLE.com:80", "//a.b:8080", "//u:p@h.org", "//h:99999", "//h:x"]
)
_PATH = st.text(alphabet=st.sampled_from("ab/.;%2F中 "), max_size=8)
_TAIL = st.sampled_from(["", "?", "?a=1", "?utm_source=x&b=2", "#", "#f", "?a=1#f"])
_BASE = st.sampled_from(
    ["https://www.e.org/a/b", "http://e.org//x/", "HTTPS://E.org", " https://e.org ", "http://[::1"]
)


@settings(max_examples=300, deadline=None)
@given(st.builds(lambda *parts: "".join(parts), _SCHEME, _NETLOC, _PATH, _TAIL), _BASE)
def test_resolving_against_a_base_is_urljoin_first(url: str, base: str) -> None:
    """Links that are already absolute skip urljoin; the outcome must not show it."""
    try:
        joined = urljoin(base.strip(), url.strip())
    except ValueError:
        want = url.strip()  # unparseable: returned as sent
    else:
        assume(joined == joined.strip())  # canonical_url(joined) would strip it first
        want = canonical_url(joined)
    assert canonical_url(url, base) == want


def _normalise_by_character(component: str, safe: frozenset[str]) -> str:
    """The percent normalisation spelled out one character at a time (the reference)."""
    out: list[str] = []
    index = 0
    while index < len(component):
        char = component[index]
        escape = re.match(r"%([0-9A-Fa-f]{2})", component[index:])
        if escape:
            decoded = chr(int(escape.group(1), 16))
            out.append(decoded if decoded in _UNRESERVED else escape.group().upper())
            index += 3
            continue
        if char == "%":
            out.append("%25")
        elif char in safe:
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
        index += 1
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("aZ09-._~!$&'()*+,;=:@/?%2fFeE #[]中é😀\ud800\x7f")))
@example("中%41 %7e%e4%b8%ad%")  # an escape right after characters that get encoded
def test_percent_normalisation_matches_the_character_by_character_rule(component: str) -> None:
    assert _normalise_percent(component, _PATH_WORK) == _normalise_by_character(
        component, _PATH_SAFE
    )
    assert _normalise_percent(component, _QUERY_WORK) == _normalise_by_character(
        component, _QUERY_SAFE
    )


@pytest.mark.parametrize(
    "hostname", ["Example.COM", "a..b", "x" * 64 + ".org", "ex.org.", "", ".", "bücher.de"]
)
def test_host_is_idna_with_the_name_kept_where_idna_refuses(hostname: str) -> None:
    host = hostname.lower().rstrip(".")
    try:
        want = host.encode("idna").decode("ascii")
    except UnicodeError:
        want = host
    assert _host(hostname) == want


def test_cached_results_are_per_alias_map() -> None:
    url = "https://zaobao.com/x"
    assert canonical_url(url, host_aliases={"zaobao.com": "www.zaobao.com"}) == (
        "https://www.zaobao.com/x"
    )
    assert canonical_url(url, host_aliases={"zaobao.com": "m.zaobao.com"}) == (
        "https://m.zaobao.com/x"
    )
    assert canonical_url(url) == url
