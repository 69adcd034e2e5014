"""The cleaner's invariant on real bodies: junk goes, article text never does.

Shared by the fixture test and the property tests of ``test_clean_invariant.py``.
What counts as junk is written here from the bodies themselves (class names, link
text, the feedx footer), not taken from the adapters' rules, so a rule that
removes article text cannot hide behind its own definition.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from lxml import etree, html

from aggregator.adapters import get_adapter
from aggregator.adapters.generic import GenericAdapter
from aggregator.clean import CleanSpec, _clean_tree, _repeat_until_stable, extract_date_line
from aggregator.clean.sanitizer import sanitize_once
from aggregator.clean.selectors import drop_steps
from aggregator.clean.steps import (
    ALWAYS_DROP,
    cut_at_markers,
    drop_empty,
    drop_sourceless_images,
    fix_urls,
    iframes_to_links,
    promote_lazy,
    remove_comments,
    unwrap_presentational,
)
from aggregator.clean.tree import drop_node, parse_body
from aggregator.types import RawEntry, Source

BODIES = Path(__file__).parent / "fixtures" / "realdata" / "bodies"
#: Front matter author -> adapter; every other outlet is read by the generic adapter.
ADAPTERS = {"联合早报": "zaobao", "法广": "rfi", "美国之音": "voa", "自由亚洲电台": "rfa"}
FETCHED = datetime(2021, 1, 22, tzinfo=UTC)

#: Junk that must never reach a reader (whatever rule removes it).
JUNK = {
    "feedx footer": re.compile(r"获取更多RSS|feedx\.(?:net|run|best|fun|co)"),
    "paywall": re.compile(r"subscribe\.sph\.com\.sg|cx_paywall|paywall_(?:desktop|mobile)"),
    "ad slot": re.compile(r"dfp-ad|id=\"imu\"|innity-in-post|adsbygoogle"),
    "share bar": re.compile(
        r"facebook\.com/(?:sharer|dialog/share)|whatsapp:|whatsapp\.com/send|(?:twitter|x)\.com/intent"
    ),
    "image proxy": re.compile(r"images\.weserv\.nl"),
    "lazy placeholder": re.compile(r"data-src="),
    "script": re.compile(r"<script|javascript:", re.I),
}
#: Containers whose text is chrome, by the names the sites give them.
_JUNK_CONTAINER = re.compile(
    r"ad-|-ad\b|\bad\b|dfp|innity|imu|paywall|share|promo|newsletter|related|further-reading|"
    r"recommend|interstitial|comments|author-hlight|overlay|read-on-app|wsw__embed",
    re.I,
)
#: Sentences that are chrome wherever they stand.
_JUNK_SENTENCE = re.compile(r"获取更多RSS|feedx|分享\s*:|延伸阅读|订阅")
#: A sentence: CJK or Latin, ending with its punctuation.
_SENTENCE = re.compile(r"[^。！？!?.\n]{8,}(?:[。！？!?]|\.(?=\s|$))")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Post:
    """One archived post: its file name, adapter, link, title and raw body."""

    name: str
    adapter: str
    link: str
    title: str
    body: str


def load_posts() -> list[Post]:
    """Every fixture post, read from the archive's Jekyll layout."""
    return [read_post(path) for path in sorted(BODIES.glob("*.md"))]


def read_post(path: Path) -> Post:
    """Front matter for author, link and title; the body after the seed header, if any."""
    text = path.read_text(encoding="utf-8")
    _, front, rest = text.split("---\n", 2)
    fields = dict(line.split(": ", 1) for line in front.splitlines() if ": " in line)
    lines = rest.split("\n")
    # The seed header: <!--published-->, [title](link), ------ (some posts have none).
    if lines and lines[0].startswith("<!--") and "------" in lines[:4]:
        lines = lines[lines.index("------") + 1 :]
    return Post(
        name=path.name,
        adapter=ADAPTERS.get(fields.get("author", "").strip('"'), "generic"),
        link=fields.get("from", "").strip('"'),
        title=fields.get("title", "").strip('"'),
        body="\n".join(lines),
    )


def adapter_of(name: str) -> GenericAdapter:
    adapter = get_adapter(name)
    assert isinstance(adapter, GenericAdapter)
    return adapter


def clean(post: Post, body: str | None = None) -> str:
    """The body as the pipeline stores it: the post's adapter, run on a raw entry."""
    source = Source(id=post.adapter, name=post.adapter, url="https://feeds.example/feed.xml")
    entry = RawEntry(
        guid=post.link,
        link=post.link,
        title=post.title or "t",
        content=post.body if body is None else body,
    )
    return adapter_of(post.adapter)(entry, source, FETCHED).body


def repeating(html: str, spec: CleanSpec, base_url: str | None) -> str:
    """``clean_html`` as it was: the chain run again on its output until it comes back
    (now only for bodies its one checked pass cannot show settled)."""
    tree = _clean_tree(html, base_url, spec)
    return _repeat_until_stable(tree, sanitize_once(tree), base_url, spec)


def squeeze(text: str) -> str:
    return _SPACE.sub("", text)


def visible_text(markup: str) -> str:
    """Text a reader sees, whitespace removed (sentences are compared squeezed)."""
    if not markup.strip():
        return ""
    root = html.fragment_fromstring(markup, create_parent="div")
    etree.strip_elements(root, "script", "style", "noscript", "template", with_tail=False)
    return squeeze(root.text_content())


def article_sentences(markup: str) -> list[str]:
    """The sentences of ``markup`` outside junk, squeezed, in order."""
    _date, markup = extract_date_line(markup.lstrip())
    if not markup.strip():
        return []
    root = html.fragment_fromstring(markup, create_parent="div")
    # An iframe's content is fallback text no browser shows.
    etree.strip_elements(
        root, "script", "style", "noscript", "template", "iframe", etree.Comment, with_tail=False
    )
    for node in list(root.iter()):
        names = f"{node.get('class', '')} {node.get('id', '')}"
        if node is not root and isinstance(node.tag, str) and _JUNK_CONTAINER.search(names):
            node.drop_tree()  # keeps its tail: what follows is not inside it
    text = "\n".join(root.itertext())
    text = text.split("获取更多RSS", 1)[0]  # the feedx footer and whatever trails it
    links = [squeeze(a.text_content()) for a in root.iter("a")]
    sentences = []
    for sentence in _SENTENCE.findall(text):
        squeezed = squeeze(sentence)
        # Link text (related-story lists, share bars) is navigation, not the article.
        if _JUNK_SENTENCE.search(sentence) or any(squeezed in link for link in links if link):
            continue
        sentences.append(squeezed)
    return sentences


def lost_sentences(original: str, cleaned: str) -> list[str]:
    kept = visible_text(cleaned)
    return [sentence for sentence in article_sentences(original) if sentence not in kept]


def junk_left(cleaned: str) -> list[str]:
    return [name for name, pattern in JUNK.items() if pattern.search(cleaned)]


def images_without_src(cleaned: str) -> int:
    if not cleaned.strip():
        return 0
    root = html.fragment_fromstring(cleaned, create_parent="div")
    return sum(1 for img in root.iter("img") if not (img.get("src") or "").strip())


def removing_rule(post: Post, sentence: str) -> str:
    """Which rule of the post's spec takes ``sentence`` away: the steps replayed one by one."""
    spec: CleanSpec = adapter_of(post.adapter).spec.clean
    body = post.body
    if adapter_of(post.adapter).spec.body_date_line:
        _date, body = extract_date_line(body.lstrip())
        if sentence not in visible_text(body):
            return "date line"
    root = parse_body(body)

    def gone() -> bool:
        return sentence not in squeeze(etree.tostring(root, method="text", encoding="unicode"))

    steps: list[tuple[str, Callable[[], None]]] = []
    if spec.reorder is not None:
        steps.append(("reorder", partial(spec.reorder, root)))
    steps.append(("comments", partial(remove_comments, root)))
    for selector in (*ALWAYS_DROP, *spec.drop):
        steps.append((f"selector {selector!r}", partial(_drop_by, root, selector)))
    for marker in spec.cut_markers:
        steps.append((f"marker {marker!r}", partial(cut_at_markers, root, (marker,))))
    steps += [
        ("lazy images", partial(promote_lazy, root, spec.lazy_attrs)),
        ("images without src", partial(drop_sourceless_images, root)),
        ("iframes", partial(iframes_to_links, root)),
        ("urls", partial(fix_urls, root, post.link, spec.host_aliases)),
        ("empty wrappers", partial(drop_empty, root)),
        ("presentational", partial(unwrap_presentational, root)),
    ]
    for name, step in steps:
        step()
        if gone():
            return name
    return "sanitizer or a later pass"


def _drop_by(root: etree._Element, selector: str) -> None:
    for step in drop_steps((selector,)):
        for node in step.select(root):
            drop_node(node)
