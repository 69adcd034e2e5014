"""Real bodies through the real adapters: junk goes, article text never does.

The fixtures are posts of a public archive (``fixtures/realdata/README.md``): the
four main sources and other outlets read by the generic adapter, with the feedx
footer inside the post's wrapper ``<div>``, ads, share bars, paywall links and
``src``-less images among them.  The property tests move that junk in and out of
the wrappers and nesting that archives and feeds put around a body.
"""

from __future__ import annotations

import collections
import re

import pytest
from clean_invariant import (
    Post,
    adapter_of,
    article_sentences,
    clean,
    images_without_src,
    junk_left,
    load_posts,
    lost_sentences,
    removing_rule,
    repeating,
    visible_text,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.clean import clean_html, extract_date_line

POSTS = load_posts()
SOURCES = sorted({post.adapter for post in POSTS})
#: Share of a source's article sentences a cleaning may lose (the issue's bound).
MAX_LOST = 0.002
#: Every sentence the cleaning loses today, ``(file, start of sentence) -> rule``.
#: Empty: a loss is a regression unless it is listed here with the rule to blame.
KNOWN_LOSSES: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def cleaned() -> dict[str, str]:
    return {post.name: clean(post) for post in POSTS}


def test_fixtures_cover_every_source_and_the_junk() -> None:
    counts = collections.Counter(post.adapter for post in POSTS)
    assert all(counts[name] >= 60 for name in ("zaobao", "rfi", "voa", "rfa")), counts
    assert counts["generic"] >= 35, counts
    wrapped_footer = re.compile(r"获取更多RSS.*</div>\s*</div>\s*$", re.S)
    assert sum(bool(wrapped_footer.search(post.body)) for post in POSTS) >= 10
    assert sum(bool(junk_left(post.body)) for post in POSTS) >= 50
    assert sum('<img src="data:' in post.body for post in POSTS) >= 5


@pytest.mark.parametrize("source", SOURCES)
def test_no_article_sentence_lost(source: str, cleaned: dict[str, str]) -> None:
    posts = [post for post in POSTS if post.adapter == source]
    total = 0
    lost: dict[tuple[str, str], str] = {}
    for post in posts:
        total += len(article_sentences(post.body))
        for sentence in lost_sentences(post.body, cleaned[post.name]):
            lost[post.name, sentence[:40]] = removing_rule(post, sentence)
    assert total > 300
    listing = "\n".join(
        f"{name}: {start!r} removed by {rule}" for (name, start), rule in lost.items()
    )
    assert len(lost) <= MAX_LOST * total, f"{len(lost)} of {total} sentences lost:\n{listing}"
    expected = {
        key: rule for key, rule in KNOWN_LOSSES.items() if key[0] in {p.name for p in posts}
    }
    assert lost == expected, f"losses changed:\n{listing}"


@pytest.mark.parametrize("source", SOURCES)
def test_no_body_emptied_no_junk_no_image_without_src(source: str, cleaned: dict[str, str]) -> None:
    problems = []
    for post in (post for post in POSTS if post.adapter == source):
        out = cleaned[post.name]
        if article_sentences(post.body) and not visible_text(out):
            problems.append(f"{post.name}: body emptied")
        problems += [f"{post.name}: junk left: {name}" for name in junk_left(out)]
        if images_without_src(out):
            problems.append(f"{post.name}: image without src")
    assert problems == []


def test_one_checked_pass_gives_what_repeating_gave() -> None:
    # Every real body: the output cleaning until nothing changes gave, and a fixed point.
    for post in POSTS:
        spec = adapter_of(post.adapter).spec
        body = post.body
        if spec.body_date_line:
            _date, body = extract_date_line(body.lstrip())
        out = clean_html(body, base_url=post.link, spec=spec.clean)
        assert out == repeating(body, spec.clean, post.link), post.name
        assert clean_html(out, base_url=post.link, spec=spec.clean) == out, post.name


# --- properties: the same bodies, wrapped and with the junk moved -------------------------

#: The feedx footer as feeds carry it: a ``<br><hr>`` lead-in, then the promo block.
FOOTER = (
    '<br><hr><div>获取更多RSS：<br><a href="https://feedx.net" style="color:orange" '
    'target="_blank">https://feedx.net</a> <br><a href="https://feedx.best" target="_blank">'
    "https://feedx.best</a><br></div>"
)
_FOOTER_IN_BODY = re.compile(r"(?:<br>\s*)*<hr>\s*<div>\s*获取更多RSS.*?</div>", re.S)
#: Junk seen in the archive that may stand before or after the article.
JUNK_BLOCKS = (
    '<div class="share-bar"><a href="https://www.facebook.com/sharer/sharer.php?u=x">Facebook</a>'
    '<a href="https://twitter.com/intent/tweet?url=x">Twitter</a>'
    '<a href="whatsapp://send?text=x">WhatsApp</a></div>',
    '<div id="dfp-ad-imu1"></div>',
    '<section id="imu"><div id="dfp-ad-imu2"></div></section>',
    '<ins class="adsbygoogle" data-ad-slot="1"></ins>',
    '<p><a href="https://subscribe.sph.com.sg/zh/">订阅联合早报</a></p>',
    '<div class="cx_paywall_placeholder"></div>',
    # RFI's share bar: a label block, then the buttons.
    '<div><div>分享 :</div><div><a href="https://www.facebook.com/dialog/share?app_id=1">Facebook</a>'
    '<a href="https://x.com/intent/tweet?text=x">X</a></div></div>',
)
WRAPPERS = ("div", "article", "section")


def _article_only(post: Post) -> str:
    return _FOOTER_IN_BODY.sub("", post.body)


@st.composite
def _wrapped(draw: st.DrawFn) -> tuple[Post, str]:
    """A real body inside 0-3 wrappers, junk at drawn depths before and after it."""
    post = draw(st.sampled_from(POSTS))
    wrappers = draw(st.lists(st.sampled_from(WRAPPERS), max_size=3))
    depth = st.integers(0, len(wrappers))
    before: dict[int, list[str]] = collections.defaultdict(list)
    after: dict[int, list[str]] = collections.defaultdict(list)
    for block in draw(st.lists(st.sampled_from(JUNK_BLOCKS), max_size=3)):
        (before if draw(st.booleans()) else after)[draw(depth)].append(block)
    if draw(st.booleans()):  # the footer: a trailer, after everything else at its depth
        after[draw(depth)].append(FOOTER)
    markup = _article_only(post)
    for level in range(len(wrappers), -1, -1):  # innermost first
        markup = "\n".join([*before[level], markup, *after[level]])
        if level:
            tag = wrappers[level - 1]
            markup = f"<{tag}>\n{markup}\n</{tag}>"
    return post, markup


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_wrapped())
def test_wrapping_and_moving_junk_keeps_the_article(case: tuple[Post, str]) -> None:
    post, markup = case
    out = clean(post, markup)
    bare = clean(post, _article_only(post))
    # What the bare article keeps, the wrapped one keeps too; and the junk goes.
    assert set(lost_sentences(markup, out)) <= set(lost_sentences(post.body, bare))
    if article_sentences(markup):
        assert visible_text(out)
    assert junk_left(out) == []
    assert images_without_src(out) == 0
