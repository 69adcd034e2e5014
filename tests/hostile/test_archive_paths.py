"""Archive export never writes outside ``<dir>/_posts``, whatever titles and links hold.

Defence: :func:`aggregator.archive.post_filename` builds the name from a date, a
slug of letters/digits/hyphens and a hash of the link (so no separator, ``..``,
NUL, reserved Windows name or over-long name can appear), and
:func:`aggregator.archive.write_archive` refuses any target whose parent is not the
resolved ``_posts`` folder.  tests/test_archive.py covers ordinary names; this
throws hostile ones at the real writer and inspects the disk afterwards.
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.archive import post_filename, write_archive
from aggregator.types import Article

HOSTILE_PIECES = [
    "../",
    "..\\",
    "/etc/passwd",
    "C:\\Windows\\System32",
    "\\\\server\\share",
    "\x00",
    "CON",
    "NUL",
    "AUX",
    "COM1",
    "LPT9",
    "con.txt",
    ".",
    "..",
    "~",
    "$HOME",
    "%2e%2e%2f",
    "\u202e",  # right-to-left override
    "\ufeff",
    "a" * 300,
    "长" * 300,
    " ",
    "\n",
    ":",
    '*?<>|"',
    "\ud800",  # a lone surrogate
]
NAME = re.compile(r"^\d{4}-\d{2}-\d{2}(-[^\W_](?:[\w-]*[^\W_])?)?-[0-9a-f]{10}\.md$")
_text = st.lists(st.one_of(st.sampled_from(HOSTILE_PIECES), st.text(max_size=20)), max_size=8).map(
    "".join
)
_moments = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
)


@st.composite
def hostile_articles(draw: st.DrawFn) -> Article:
    return Article(
        source_id="s",
        source_name=draw(_text) or "S",
        title=draw(_text),
        link=draw(_text),
        body=draw(_text),
        published=draw(_moments),
        fetched=draw(_moments),
    )


def _check_tree(outer: Path) -> None:
    """``outer`` holds only ``site/_posts/<safe names>``: nothing else was created."""
    assert [p.name for p in outer.iterdir()] == ["site"]
    root = outer / "site"
    posts = (root / "_posts").resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        assert not Path(dirpath).is_symlink()
        here = Path(dirpath).resolve()
        assert here in (root.resolve(), posts), here
        assert dirnames == ([] if here == posts else ["_posts"])
        for name in filenames:
            assert here == posts
            assert NAME.match(name), name
            assert len(name.encode("utf-8")) <= 255


@settings(max_examples=150, deadline=None)
@given(st.lists(hostile_articles(), min_size=1, max_size=5))
def test_write_archive_stays_in_posts(articles: list[Article]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "site"
        write_archive(articles, root)
        _check_tree(Path(tmp))
        assert {p.name for p in (root / "_posts").iterdir()} == {post_filename(a) for a in articles}


def test_named_hostile_titles_and_links(tmp_path: Path) -> None:
    moment = datetime(2024, 1, 2, tzinfo=UTC)
    articles = [
        Article("s", "S", piece, piece or "x", "b", moment, moment) for piece in HOSTILE_PIECES
    ]
    articles += [
        Article("s", "S", "../../../../etc/cron.d/evil", "/etc/passwd", "b", None, None),
        Article("s", "S", "C:\\evil", "..\\..\\evil", "b", moment, None),
    ]
    write_archive(articles, tmp_path / "site")
    _check_tree(tmp_path)
    assert not (tmp_path / "etc").exists()
