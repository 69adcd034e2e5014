"""Real data: posts of a real archive through the real CLI, checked one by one.

The posts (``fixtures/realdata``, see its README) are imported with ``aggregator
import``, and also rebuilt as the four sources' RSS 2.0 feeds (bodies entity-escaped
as archived, ``pubDate`` from the ``<!--published-->`` line) and polled from the
loopback test server.  Each way, ``aggregator export --format jekyll`` writes what
was kept, and every original post is held against its exported copy: nothing
emptied or lost outside junk, no junk left, titles plain text, no image without a
``src``, Zaobao on its story date; and an import of the export changes nothing.

No source setting reaches for the network beyond the feed URL (there is no
full-text fetch to turn off yet), and the feeds are on 127.0.0.1.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

import pytest
from bs4 import BeautifulSoup
from feedserver import FeedServer, static
from typer.testing import CliRunner

from aggregator import archive
from aggregator.cli import app
from aggregator.dates import zone
from aggregator.store import Store
from aggregator.types import Article

POSTS = Path(__file__).parent / "fixtures" / "realdata" / "posts"
#: The archive's author -> the source id (and adapter) that reads it; others are generic.
MAIN = {"联合早报": "zaobao", "法广": "rfi", "美国之音": "voa", "自由亚洲电台": "rfa"}
OTHER = "other"

#: Strings that must never reach a reader, by the junk they belong to.
JUNK = {
    "feedx footer": re.compile(r"获取更多RSS|feedx\.(?:net|xyz|run|best|fun|co)"),
    "paywall": re.compile(r"subscribe\.sph\.com\.sg|cx_paywall|paywall_(?:desktop|mobile)"),
    "ad slot": re.compile(r"dfp-ad|id=\"imu\"|innity-in-post"),
    "share button": re.compile(
        r"facebook\.com/(?:sharer|dialog/share)|whatsapp://send|web\.whatsapp\.com/send"
        r"|(?:twitter|x)\.com/intent"
    ),
    "image proxy": re.compile(r"images\.weserv\.nl"),
    "lazy-load attribute": re.compile(r"data-src="),
    "script": re.compile(r"<script|javascript:"),
}
#: Sentences of junk (footer, share and subscribe prompts): theirs to lose.
JUNK_SENTENCE = re.compile(
    r"获取更多RSS|feedx|分享|订阅|下载|关注我们|Facebook|Twitter|WhatsApp", re.I
)
#: A sentence: 8 or more characters up to a full stop, question or exclamation mark.
SENTENCE = re.compile(r"[^。！？!?\n]{8,}[。！？!?]")
ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-f]+|[a-z][a-z0-9]{1,31});", re.I)
STORY_DAY = re.compile(r"story(\d{8})-")
MAX_LOST_SHARE = 0.002


# ---------------------------------------------------------------- the originals


@dataclass(frozen=True)
class Post:
    file: str
    source: str  # a MAIN source id, or OTHER
    article: Article


def _key(link: str) -> str:
    """A link as both sides spell it: host case, www., doubled slashes, escapes ignored."""
    parts = urlsplit(link.strip())
    host = (parts.hostname or "").lower().removeprefix("www.")
    path = re.sub(r"/{2,}", "/", unquote(parts.path)).rstrip("/")
    return host + path + (f"?{unquote(parts.query)}" if parts.query else "")


def _read(folder: Path) -> dict[str, list[Post]]:
    """Every post of ``folder`` by link key; a link archived twice (an edit) has two."""
    posts: dict[str, list[Post]] = defaultdict(list)
    for path in sorted(folder.rglob("*.md")):
        article = archive.read_file(path).article
        source = MAIN.get(article.source_name, OTHER)
        posts[_key(article.link)].append(Post(path.name, source, article))
    return posts


ORIGINALS = _read(POSTS)


def _text(body: str) -> str:
    return re.sub(r"\s+", "", BeautifulSoup(body, "html.parser").get_text())


def _lost(original: str, kept: str) -> list[str]:
    """Sentences of ``original`` missing from ``kept``, junk and link text aside.

    Link text is navigation (related stories, share bars): dropping it with its list
    is not losing the article.
    """
    soup = BeautifulSoup(original, "html.parser")
    links = [text for a in soup.find_all("a") if len(text := _text(str(a))) >= 8]
    kept_text = _text(kept)
    lost = []
    for sentence in SENTENCE.findall(soup.get_text("\n")):
        squashed = re.sub(r"\s+", "", sentence)
        if JUNK_SENTENCE.search(sentence) or squashed in kept_text:
            continue
        if not any(squashed in link for link in links):
            lost.append(sentence.strip())
    return lost


# ---------------------------------------------------------------- the CLI


def _config(folder: Path, feeds: Callable[[str], str]) -> Path:
    """A config whose four sources are named as the archive's authors, at ``feeds(id)``."""
    blocks = [
        f'[[source]]\nid = "{source_id}"\nname = "{name}"\nurl = "{feeds(source_id)}"\n'
        f'adapter = "{source_id}"\nretention_days = 36500\n'
        for name, source_id in MAIN.items()
    ]
    (folder / "sources.toml").write_text("\n".join(blocks), encoding="utf-8")
    config = folder / "aggregator.toml"
    config.write_text(
        f'database_url = "sqlite:///{folder / "aggregator.db"}"\n'
        f'sources_file = "{folder / "sources.toml"}"\n'
        "allow_private_addresses = true\n"
        "total_timeout = 10.0\nread_timeout = 5.0\n",
        encoding="utf-8",
    )
    return config


def _cli(config: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@dataclass(frozen=True)
class Run:
    """What one way in (import or poll) kept: the CLI's output and the exported posts."""

    way: str  # "import" or "poll"
    output: str
    folder: Path  # the exported Jekyll archive
    exported: dict[str, list[Post]]
    date_sources: Counter[str]


def _export(way: str, config: Path, folder: Path, output: str) -> Run:
    out = folder / "export"
    _cli(config, "export", "--format", "jekyll", "--out", str(out))
    with Store.open(f"sqlite:///{folder / 'aggregator.db'}") as store:
        sources = Counter(
            f"{stored.article.source_id}:{stored.article.date_source.value}"
            for stored in store.latest(limit=10_000)
        )
    return Run(way, output, out, _read(out), sources)


def _import(posts: Path, folder: Path) -> Run:
    folder.mkdir()
    config = _config(folder, lambda source_id: f"https://feeds.example.org/{source_id}.xml")
    return _export("import", config, folder, _cli(config, "import", str(posts)))


def _feed(source: str) -> bytes:
    """One RSS 2.0 feed of a source's posts, the last version of each link."""
    items = []
    for versions in ORIGINALS.values():
        post = versions[-1]
        if post.source != source:
            continue
        article = post.article
        pub = ""
        if article.published is not None:
            pub = f"<pubDate>{format_datetime(article.published, usegmt=True)}</pubDate>"
        items.append(
            f"<item><title>{escape(article.title)}</title><link>{escape(article.link)}</link>"
            f"{pub}<description>{escape(article.body)}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{source}</title><link>http://127.0.0.1/</link><description>rebuilt</description>"
        + "\n".join(items)
        + "</channel></rss>"
    ).encode()


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _import(POSTS, tmp_path_factory.mktemp("realdata") / "import")


@pytest.fixture(scope="module")
def polled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("realdata") / "poll"
    folder.mkdir()
    with FeedServer() as server:
        for source_id in MAIN.values():
            server.route(f"/{source_id}.xml", static(_feed(source_id)))
        config = _config(folder, lambda source_id: server.url(f"/{source_id}.xml"))
        yield _export("poll", config, folder, _cli(config, "poll"))


@pytest.fixture(params=["import", "poll"])
def run(request: pytest.FixtureRequest) -> Run:
    """Both ways in; the poll carries the four main sources only, as their feeds do."""
    result: Run = request.getfixturevalue("imported" if request.param == "import" else "polled")
    return result


def _pairs(run: Run) -> Iterator[tuple[list[Post], Post]]:
    """(every archived version, the exported post) for each link the run covers."""
    for key, versions in ORIGINALS.items():
        if run.way == "poll" and versions[0].source == OTHER:
            continue
        assert key in run.exported, f"{versions[0].file}: not exported"
        (kept,) = run.exported[key]
        yield versions, kept


# ---------------------------------------------------------------- the checks


def test_every_file_imports_and_the_counts_add_up(imported: Run) -> None:
    counts = re.search(
        r"(\d+) files: (\d+) new, (\d+) updated, (\d+) already stored, (\d+) duplicates, "
        r"(\d+) skipped",
        imported.output,
    )
    assert counts is not None, imported.output
    files, new, updated, stored, duplicates, skipped = map(int, counts.groups())
    assert files == sum(len(versions) for versions in ORIGINALS.values())
    assert files == new + updated + stored + duplicates + skipped
    assert skipped == 0, imported.output
    # one article per link: the versions of an edited link are merged into one
    assert new == len(ORIGINALS) and updated == stored == 0
    assert duplicates == files - len(ORIGINALS)
    # the Nei.st posts, which have no published line, are dated by their front matter
    assert imported.date_sources["archive:front-matter"] == sum(
        post.article.source_name == "Nei.st" for versions in ORIGINALS.values() for post in versions
    )


def test_no_body_is_emptied(run: Run) -> None:
    emptied = [
        f"{versions[-1].file} ({len(original)} characters of text)"
        for versions, kept in _pairs(run)
        if len(original := _text(versions[-1].article.body)) >= 40 and not _text(kept.article.body)
    ]
    assert not emptied, "\n".join(emptied)


def test_no_sentence_is_lost_outside_junk(run: Run) -> None:
    sentences: Counter[str] = Counter()
    lost: dict[str, list[str]] = defaultdict(list)
    for versions, kept in _pairs(run):
        source = versions[0].source
        # an edited article is judged against the version its stored copy matches best
        best = min(
            (
                (
                    len(SENTENCE.findall(post.article.body)),
                    _lost(post.article.body, kept.article.body),
                )
                for post in versions
            ),
            key=lambda pair: len(pair[1]),
        )
        sentences[source] += best[0]
        lost[source] += [f"{versions[-1].file}: {sentence}" for sentence in best[1]]
    over = {
        source: gone
        for source, gone in lost.items()
        if len(gone) > MAX_LOST_SHARE * max(sentences[source], 1)
    }
    assert not over, "\n".join(
        f"{source}: {len(gone)} of {sentences[source]} sentences lost\n  " + "\n  ".join(gone)
        for source, gone in over.items()
    )


def test_no_junk_is_left(run: Run) -> None:
    left = [
        f"{kept.file}: {name}"
        for _, kept in _pairs(run)
        for name, pattern in JUNK.items()
        if pattern.search(kept.article.body)
    ]
    assert not left, "\n".join(left)


def test_titles_are_plain_text_without_site_suffix(run: Run) -> None:
    for versions, kept in _pairs(run):
        title = kept.article.title
        assert title.strip(), versions[-1].file
        assert not ENTITY.search(title), f"{versions[-1].file}: {title}"
        assert not title.endswith(("- RFI", "法国国际广播电台")), f"{versions[-1].file}: {title}"
        if versions[-1].article.title.startswith("[國際]"):
            assert title == versions[-1].article.title  # brackets are the title's own


def test_every_image_has_a_source(run: Run) -> None:
    missing = [
        f"{kept.file}: {img}"
        for _, kept in _pairs(run)
        for img in BeautifulSoup(kept.article.body, "html.parser").find_all("img")
        if not img.get("src")
    ]
    assert not missing, "\n".join(missing)


def test_zaobao_times_are_on_their_story_date_and_never_after_the_fetch(run: Run) -> None:
    """Every Zaobao item lands on its story date; the repairs that get them there are recorded.

    Of the 50, 42 are stored as archived.  Two are 8 hours off (Singapore time
    labelled UTC) and on the day after their story date, one of them though it was
    fetched at once: re-read in Singapore time (``feed-local``) on both ways in.  One
    is after its fetch and off its story date either way: it takes the URL's day
    (``url``).  Five more lie 7-8 hours in the future of their fetch but on their
    story date: imported, the fetch time shows it and they are re-read (7
    ``feed-local`` in all); polled from a replayed feed, nothing tells them from a
    right time and they stay as sent.  None is left off its story date, so the 1%
    the archive-wide target allows is not used.
    """
    singapore = zone("Asia/Singapore")
    dated = 0
    for versions, kept in _pairs(run):
        story = STORY_DAY.search(kept.article.link)
        if versions[0].source != "zaobao" or story is None:
            continue
        dated += 1
        published = kept.article.published
        assert published is not None
        day = datetime.strptime(story.group(1), "%Y%m%d").date()
        assert published.astimezone(singapore).date() == day, f"{kept.file}: {published}"
        fetched = versions[-1].article.fetched
        if run.way == "import" and fetched is not None:
            assert published <= fetched, f"{kept.file}: {published} > fetched {fetched}"
    assert dated == sum(versions[0].source == "zaobao" for versions in ORIGINALS.values())
    assert run.date_sources["zaobao:feed-local"] >= 2
    assert run.date_sources["zaobao:url"] == 1


def test_reimporting_the_export_changes_nothing(imported: Run, tmp_path: Path) -> None:
    again = _import(imported.folder, tmp_path / "again")
    assert "0 skipped" in again.output
    before = {path.name: path.read_bytes() for path in imported.folder.rglob("*.md")}
    after = {path.name: path.read_bytes() for path in again.folder.rglob("*.md")}
    assert sorted(after) == sorted(before)
    changed = [name for name in before if before[name] != after[name]]
    assert not changed, changed
