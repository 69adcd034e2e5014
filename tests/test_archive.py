"""The seed archive format: byte-exact round trips of the reference files, and properties."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.adapters import get_adapter
from aggregator.archive import (
    ArchiveDocument,
    as_fetched,
    keep_archived,
    parse,
    post_filename,
    read_file,
    read_files,
    render,
    write_archive,
)
from aggregator.errors import ArchiveError
from aggregator.types import UTC, Article, DateSource, Source

SEEDS = sorted((Path(__file__).parent / "fixtures" / "seeds").glob("*.txt"))


def test_all_five_seeds_are_fixtures() -> None:
    assert len(SEEDS) == 5


@pytest.mark.parametrize("path", SEEDS, ids=lambda path: path.name)
def test_seed_round_trip_is_byte_exact(path: Path) -> None:
    original = path.read_bytes()
    document = read_file(path)
    assert render(document.article, document.layout).encode("utf-8") == original


def test_seed_values_are_read_faithfully() -> None:
    zaobao = read_file(SEEDS[0], source_id="zaobao")
    article = zaobao.article
    assert zaobao.layout == "post"
    assert article.source_id == "zaobao"
    assert article.title == "中俄防长视频通话：将持续深化两军战略协作"
    assert article.source_name == "联合早报"
    assert article.link == "https://www.zaobao.com/realtime/china/story20211124-1216540"
    assert article.fetched == datetime(2021, 11, 24, 1, 38, 51, 387000, tzinfo=UTC)
    assert article.published == datetime(2021, 11, 24, 9, 15, tzinfo=UTC)
    assert article.tags == ("联合早报",) and article.categories == ("联合早报",)
    assert article.comments is None
    assert article.body.startswith("<div>\n<p>") and article.body.endswith("</div>")


def test_nan_reads_as_unknown_and_comments_flag() -> None:
    rfa = read_file(SEEDS[3]).article
    assert rfa.published is None
    assert rfa.date_source is DateSource.UNKNOWN
    assert rfa.comments is True
    assert rfa.source_name == "自由亚洲电台"


def test_bare_layout() -> None:
    document = read_file(SEEDS[2])
    assert document.layout is None
    assert document.article.fetched is None
    assert document.article.source_name == ""
    assert document.article.published == datetime(2024, 1, 31, 18, 45, 1, tzinfo=UTC)
    assert document.article.link.startswith("https://www.rfi.fr/cn/%E5%9B%BD%E9%99%85/")


# Two real archive posts, cut short: an RTI title with brackets, and a Nei.st post
# whose body follows the front matter without the published / title / rule header.
BRACKETED = """---
layout: post
title: "[國際] 北京打壓香港 德國民眾對中國觀感明顯惡化"
date: 2020-07-21T09:10:49.523Z
author: RTI 中央廣播電臺
from: https://www.rti.org.tw/news/view/id/2071722
tags: [ RTI 中央廣播電臺 ]
categories: [ RTI 中央廣播電臺 ]
---
<!--1595322649523-->
[[國際] 北京打壓香港 德國民眾對中國觀感明顯惡化](https://www.rti.org.tw/news/view/id/2071722)
------

<div>body</div>
"""
HEADERLESS = """---
layout: post
title: "猪肉价格飙升增添中国政府烦恼"
date: 2019-09-11T07:15:56+01:00
author: Nei.st
from: https://nei.st/medium/nytimes/chinas-leaders-are-penned-in
tags: [ Nei.st ]
categories: [ Nei.st ]
---

<article>
 <p>虽然近几周来中国政府尝试了一系列举措</p>
</article>
"""


def test_a_bracketed_title_is_read_whole() -> None:
    article = parse(BRACKETED).article
    assert article.title == "[國際] 北京打壓香港 德國民眾對中國觀感明顯惡化"
    assert article.link == "https://www.rti.org.tw/news/view/id/2071722"
    assert article.date_source is DateSource.ARCHIVE
    # without front matter the line alone tells them apart, at its last "]("
    bare = parse(BRACKETED[BRACKETED.index("<!--") :]).article
    assert (bare.title, bare.link) == (article.title, article.link)


def test_a_post_without_the_header_takes_its_time_from_the_front_matter() -> None:
    document = parse(HEADERLESS)
    article = document.article
    assert document.layout == "post"
    assert article.title == "猪肉价格飙升增添中国政府烦恼"
    assert article.link == "https://nei.st/medium/nytimes/chinas-leaders-are-penned-in"
    assert article.published == article.fetched == datetime(2019, 9, 11, 6, 15, 56, tzinfo=UTC)
    assert article.date_source is DateSource.FRONT_MATTER
    assert article.body == "<article>\n <p>虽然近几周来中国政府尝试了一系列举措</p>\n</article>"
    # what we write of it has the header, and reads back the same
    again = parse(render(article)).article
    assert (again.title, again.link, again.body) == (article.title, article.link, article.body)
    assert again.published == article.published


def test_a_post_without_the_header_may_open_with_a_comment() -> None:
    body = "<!-- wp:paragraph -->\n<p>x</p>"
    article = parse(HEADERLESS.split("<article>")[0].rstrip("\n") + "\n" + body + "\n").article
    assert article.body == body
    assert article.date_source is DateSource.FRONT_MATTER
    # a damaged header is still an error, not body text
    damaged = BRACKETED.replace("<!--1595322649523-->", "<!--15953226x9523-->")
    with pytest.raises(ArchiveError, match="epoch ms"):
        parse(damaged)


def test_a_post_without_the_header_needs_title_and_link() -> None:
    with pytest.raises(ArchiveError, match="'from'"):
        parse(
            HEADERLESS.replace(
                "from: https://nei.st/medium/nytimes/chinas-leaders-are-penned-in\n", ""
            )
        )


def test_nan_is_written_only_for_unknown() -> None:
    article = read_file(SEEDS[0]).article
    assert "<!--NaN-->" not in render(article)
    assert "<!--NaN-->\n" in render(dataclasses.replace(article, published=None))


BROKEN = [
    ("---\nlayout: post\ntitle: x\n", 4, "closing ---"),
    ("---\nlayout post\n---\n", 2, "key: value"),
    ("---\ntitle: 'x\n---\n", 2, "title"),
    ("---\ntitle: [1]\n---\n<!--NaN-->\n[x](y)\n------\n\nb\n", 2, "expected a string"),
    ("---\ndate: yesterday\n---\n<!--NaN-->\n[x](y)\n------\n\nb\n", 2, "ISO 8601"),
    ("---\ntitle: a\ntitle: b\n---\n", 3, "duplicate"),
    ("<!--12ab-->\n[x](y)\n------\n\nb\n", 1, "epoch ms"),
    ("<!--1-->\nno title line\n------\n\nb\n", 2, "[title](link)"),
    ("<!--1-->\n[x](y)\n-----\n\nb\n", 3, "------"),
    ("<!--1-->\n[x](y)\n------\nbody without blank\n", 4, "blank line"),
    ("<!--99999999999999999-->\n[x](y)\n------\n\nb\n", 1, "epoch ms"),
    ("<!--9999999999999999-->\n[x](y)\n------\n\nb\n", 1, "out of range"),
]


@pytest.mark.parametrize(("text", "line", "words"), BROKEN)
def test_reader_errors_name_file_line_and_expectation(text: str, line: int, words: str) -> None:
    with pytest.raises(ArchiveError) as caught:
        parse(text, file="posts/bad.md")
    assert caught.value.line == line
    message = str(caught.value)
    assert message.startswith(f"posts/bad.md:{line}: ")
    assert words in message


def test_a_malformed_file_does_not_stop_a_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = tmp_path / "good.md"
    good.write_bytes(SEEDS[1].read_bytes())
    bad = tmp_path / "bad.md"
    bad.write_text("---\nnot front matter\n")
    undecodable = tmp_path / "latin1.md"
    undecodable.write_bytes(b"<!--1-->\n[\xe9](x)\n")
    with caplog.at_level(logging.DEBUG):
        results = dict(read_files([bad, good, undecodable, tmp_path / "missing.md"]))
    assert not caplog.records  # the caller reports a skipped file, once
    assert isinstance(results[good], ArchiveDocument)
    assert isinstance(results[bad], ArchiveError)
    assert "UTF-8" in str(results[undecodable])
    assert "cannot read" in str(results[tmp_path / "missing.md"])


# ---------------------------------------------------------------- properties

TRICKY_TEXT = st.sampled_from(
    [
        "",
        " ",
        '"quoted"',
        "back\\slash",
        "colon: here",
        "[leading bracket",
        "# hash",
        "line\nbreak",
        "\r\n",
        "---",
        "------",
        "<!--NaN-->",
        "yes",
        "null",
        "~",
        "2021-11-24",
        "1e3",
        "a, b",
        "]",
        "@at",
        "%pct",
        "\u2028\x85\ufeff",
        "标题" * 300,
    ]
)
TEXT = st.one_of(st.text(), TRICKY_TEXT, st.lists(TRICKY_TEXT).map("".join))
MOMENT = st.datetimes(
    min_value=datetime(1000, 1, 1),
    max_value=datetime(9999, 1, 1),
    timezones=st.just(UTC),
)
BODY = st.one_of(
    TEXT,
    st.lists(st.sampled_from(["---", "<!--1-->", "------", "", "<p>x</p>", "[a](b)"])).map(
        "\n".join
    ),
)


@st.composite
def articles(draw: st.DrawFn, *, bare: bool) -> Article:
    published = draw(st.none() | MOMENT)
    return Article(
        source_id="src",
        source_name="" if bare else draw(TEXT),
        title=draw(TEXT),
        link=draw(st.one_of(TEXT, st.just("https://例子.com/a?b=(c)&d=[e]#f"))),
        body=draw(BODY),
        published=published,
        fetched=None if bare else draw(st.none() | MOMENT),
        tags=() if bare else tuple(draw(st.lists(TEXT, max_size=3))),
        categories=() if bare else tuple(draw(st.lists(TEXT, max_size=3))),
        comments=None if bare else draw(st.none() | st.booleans()),
        date_source=DateSource.ARCHIVE if published is not None else DateSource.UNKNOWN,
    )


@settings(max_examples=300, deadline=None)
@given(articles(bare=False))
def test_jekyll_round_trip(article: Article) -> None:
    text = render(article)
    assert parse(text, source_id="src") == ArchiveDocument(article, "post")


@settings(max_examples=150, deadline=None)
@given(articles(bare=True))
def test_bare_round_trip(article: Article) -> None:
    assert parse(render(article, None), source_id="src") == ArchiveDocument(article, None)


@settings(max_examples=300, deadline=None)
@given(articles(bare=False))
def test_pyyaml_reads_the_front_matter_values(article: Article) -> None:
    front_matter = render(article).split("\n---\n", 1)[0].removeprefix("---\n")
    values = yaml.safe_load(front_matter)
    assert values["title"] == article.title
    assert values["author"] == article.source_name
    assert values["from"] == article.link
    assert tuple(values["tags"]) == article.tags
    assert tuple(values["categories"]) == article.categories
    assert values.get("comments") == article.comments
    assert values.get("date") == article.fetched


# ---------------------------------------------------------------- file names


def _article(title: str, link: str = "https://example.com/a") -> Article:
    return Article(
        source_id="s",
        source_name="S",
        title=title,
        link=link,
        body="",
        published=datetime(2024, 1, 31, 18, 45, tzinfo=UTC),
        fetched=None,
    )


def test_filename_keeps_chinese_and_is_stable() -> None:
    article = read_file(SEEDS[0]).article
    name = post_filename(article)
    assert name.startswith("2021-11-24-中俄防长视频通话-将持续深化两军战略协作-")
    assert name.endswith(".md")
    assert post_filename(dataclasses.replace(article, body="changed")) == name


def test_same_title_different_links_do_not_collide() -> None:
    first = post_filename(_article("Same", "https://example.com/1"))
    second = post_filename(_article("Same", "https://example.com/2"))
    assert first != second


@settings(max_examples=300, deadline=None)
@given(title=st.one_of(TEXT, st.sampled_from(["..", "../../etc/passwd", "CON", "a/b\\c", "\x00"])))
def test_filename_is_safe_on_every_os(title: str) -> None:
    name = post_filename(_article(title))
    stem = name.removesuffix(".md")
    assert "/" not in name and "\\" not in name and ".." not in name
    assert not any(ord(char) < 32 or char in '<>:"|?*' for char in name)
    assert len(name.encode("utf-8")) <= 255
    assert stem.split("-")[0] == "2024"


def test_write_archive_is_idempotent_and_contained(tmp_path: Path) -> None:
    articles = [read_file(path).article for path in SEEDS] + [_article("../../escape")]
    first = write_archive(articles, tmp_path)
    assert (first.written, first.unchanged) == (6, 0)
    before = {path: path.stat().st_mtime_ns for path in (tmp_path / "_posts").iterdir()}
    second = write_archive(articles, tmp_path)
    assert (second.written, second.unchanged) == (0, 6)
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "_posts").iterdir()} == before
    assert all(path.parent == tmp_path / "_posts" for path in before)
    changed = dataclasses.replace(articles[0], body="new body")
    assert write_archive([changed], tmp_path).written == 1


def test_millisecond_precision_is_kept() -> None:
    moment = datetime(2021, 11, 24, 1, 38, 51, 387999, tzinfo=UTC)
    article = dataclasses.replace(_article("t"), fetched=moment, published=moment)
    assert article.fetched == moment - timedelta(microseconds=999)
    text = render(article)
    assert "date: 2021-11-24T01:38:51.387Z" in text
    assert parse(text).article.published == article.published


@pytest.mark.parametrize("tag", ["0?", "a?b", "a:b", "a:", "x]", "{y}", "a,b"])
def test_flow_sequence_values_that_pyyaml_splits_are_quoted(tag: str) -> None:
    """Found by hypothesis: in [ ... ] PyYAML ends a plain scalar at `?`."""
    article = dataclasses.replace(_article("t"), tags=(tag,), categories=(tag,))
    assert parse(render(article)).article.tags == (tag,)


@pytest.mark.parametrize(
    ("title", "want"),
    [
        ("大&amp;#22338;直美", "大坂直美"),  # double-escaped by the feed
        ("谴责&quot;中国病毒&quot;说", '谴责"中国病毒"说'),  # as a real RFI post holds it
        ("a <b> c & d", "a <b> c & d"),  # plain text that looks like a tag stays text
    ],
)
def test_importing_an_export_changes_nothing(title: str, want: str) -> None:
    source = Source(id="s", name="S", url="https://example.org/feed")
    original = parse(render(dataclasses.replace(read_file(SEEDS[0]).article, title=title)))

    def renormalized(article: Article) -> Article:
        entry, fetched = as_fetched(article)
        return keep_archived(get_adapter("generic")(entry, source, fetched), article)

    first = renormalized(original.article)
    assert first.title == want
    second = renormalized(parse(render(first)).article)
    assert render(second) == render(first)
