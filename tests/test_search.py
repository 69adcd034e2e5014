"""Search: query syntax, folding, and the index against a brute-force scan, on SQLite
and (with AGGREGATOR_TEST_DATABASE_URL) PostgreSQL."""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import opencc
import pytest
from alembic import command

from aggregator import archive
from aggregator.errors import QueryError
from aggregator.migrations import alembic_config
from aggregator.search import document_text, fold, parse_query, snippet
from aggregator.store import Store, _search
from aggregator.types import Article, RawEntry, Source, SourceState, StoredArticle

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
_T2S = opencc.OpenCC("t2s")


def _posts() -> list[Article]:
    paths = sorted((FIXTURES / "seeds").glob("*.txt")) + sorted((FIXTURES / "search").glob("2*.md"))
    return [archive.read_file(path, source_id="archive").article for path in paths]


# -- the brute force: plain substring search over the articles, written independently --


def _plain(article: Article) -> str:
    """Title and body text, folded the simple way: NFKC, lower case, OpenCC t2s
    character by character, whitespace runs as one space."""

    def simple(text: str) -> str:
        text = unicodedata.normalize("NFKC", text).casefold()
        text = "".join(_T2S.convert(char) if char >= "\u3400" else char for char in text)
        return " ".join(text.split())

    body = html.unescape(
        re.sub(r"<[^>]*>", "", re.sub(r"<(br|/?p|/?div|/?li)\b[^>]*>", " ", article.body))
    )
    return simple(article.title) + "\n" + simple(body)


def _is_word(char: str) -> bool:
    return char.isalnum() and not ("\u3040" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff")


def _has(text: str, term: str) -> bool:
    """``term`` occurs in ``text``, starting and ending on word boundaries where the
    term starts or ends with a letter or digit."""
    start = text.find(term)
    while start >= 0:
        end = start + len(term)
        left_ok = not (_is_word(term[0]) and start > 0 and _is_word(text[start - 1]))
        right_ok = not (_is_word(term[-1]) and end < len(text) and _is_word(text[end]))
        if left_ok and right_ok:
            return True
        start = text.find(term, start + 1)
    return False


Pred = Callable[[Callable[[str], bool]], bool]
QUERIES: list[tuple[str, Pred]] = [
    ("防长", lambda has: has("防长")),
    ("防長", lambda has: has("防长")),  # Traditional query, Simplified text
    ("国防", lambda has: has("国防")),
    ("國防 部長", lambda has: has("国防") and has("部长")),
    ("中俄", lambda has: has("中俄")),
    ("香港", lambda has: has("香港")),
    ("港", lambda has: has("港")),
    ("台湾", lambda has: has("台湾")),
    ("臺灣", lambda has: has("台湾")),  # 臺 folds to 台
    ("covid", lambda has: has("covid")),
    ("COVID-19", lambda has: has("covid-19")),
    ("trump", lambda has: has("trump")),
    ('"美国总统"', lambda has: has("美国总统")),
    ('"donald trump"', lambda has: has("donald trump")),
    ("香港 -国安法", lambda has: has("香港") and not has("国安法")),
    ("中俄 OR 防长", lambda has: has("中俄") or has("防长")),
    ("香港 OR 澳门 美国", lambda has: (has("香港") or has("澳门")) and has("美国")),
    ("疫苗 -covid -新冠", lambda has: has("疫苗") and not has("covid") and not has("新冠")),
    ("魏凤和", lambda has: has("魏凤和")),
    ("绍伊古 防长", lambda has: has("绍伊古") and has("防长")),
    ("防", lambda has: has("防")),  # one character: a prefix of the pairs
    ("部 -防", lambda has: has("部") and not has("防")),
    ("e", lambda has: has("e")),  # a one-letter word is no prefix
]


@pytest.fixture(scope="module")
def posts() -> list[Article]:
    return _posts()


def _index_all(store: Store) -> int:
    done = 0
    while indexed := store.index_pending():
        done += indexed
    return done


@pytest.fixture(params=["indexed", "half-indexed", "waiting"])
def imported(
    request: pytest.FixtureRequest, database_url: str, posts: list[Article]
) -> Iterator[tuple[Store, list[StoredArticle]]]:
    """The posts stored, and the index as far as the parameter says: all of them, the
    older half (the queue is taken oldest first), or none yet.  A search must give
    the same answer in every case."""
    with Store.open(database_url) as store:
        store.import_articles(posts, now=NOW)
        stored = store.latest(limit=10_000)
        half = len(stored) // 2
        if request.param == "indexed":
            assert _index_all(store) == len(stored)
        elif request.param == "half-indexed":
            assert store.index_pending(limit=half) == half
        left = {"indexed": 0, "half-indexed": len(stored) - half, "waiting": len(stored)}
        assert store.search_backlog() == left[request.param]
        yield store, stored


def _expected(stored: list[StoredArticle], predicate: Pred) -> list[int]:
    found = []
    for item in stored:
        text = _plain(item.article)
        if predicate(functools.partial(_has, text)):
            found.append(item.id)
    return found


@pytest.mark.parametrize(("text", "predicate"), QUERIES, ids=[q for q, _ in QUERIES])
def test_search_equals_a_brute_force_scan(
    imported: tuple[Store, list[StoredArticle]], text: str, predicate: Pred
) -> None:
    store, everything = imported
    expected = _expected(everything, predicate)
    found = [item.id for item in store.search(parse_query(text), limit=10_000)]
    assert found == expected
    first = [item.id for item in store.search(parse_query(text), limit=3)]
    assert first == expected[:3]


def test_the_test_queries_find_something_and_not_everything(
    imported: tuple[Store, list[StoredArticle]],
) -> None:
    _, everything = imported
    for text, predicate in QUERIES[:12]:
        assert 0 < len(_expected(everything, predicate)) < len(everything), text


def test_search_pages_and_filters_by_source_like_latest(
    imported: tuple[Store, list[StoredArticle]],
) -> None:
    store, everything = imported
    query = parse_query("香港")
    whole = [item.id for item in store.search(query, limit=10_000)]
    paged: list[int] = []
    before = None
    while page := store.search(query, limit=7, before=before):
        paged += [item.id for item in page]
        before = page[-1].cursor
    assert paged == whole
    assert store.search(query, sources=["nobody"]) == []
    assert [item.id for item in store.search(query, sources=["archive"], limit=10_000)] == whole


def _poll(store: Store, source: Source, *items: Article, now: datetime) -> None:
    entries = [(RawEntry(guid=item.link, link=item.link, title=item.title), item) for item in items]
    store.save_poll(source, entries, SourceState(source.id, source.url), now=now)


def test_every_write_path_keeps_the_index_current(database_url: str) -> None:
    source = Source("a", "A", "https://a.example/feed")
    first = Article(
        source_id="a",
        source_name="A",
        title="中俄防长通话",
        link="https://a.example/1",
        body="<p>Shoigu and Wei</p>",
        published=NOW,
        fetched=NOW,
        guid="https://a.example/1",
    )
    everything = parse_query("防长 OR lavrov OR shoigu")

    def indexed(store: Store, query: str) -> set[int]:
        with store.engine.connect() as conn:
            return _search.candidates(conn, parse_query(query))

    with Store.open(database_url) as store:
        _poll(store, source, first, now=NOW)
        assert store.search_backlog() == 1  # queued in the poll's transaction
        assert [s.article.title for s in store.search(parse_query("shoigu"))] == [first.title]
        assert indexed(store, "shoigu") == set()
        assert _index_all(store) == 1
        [stored] = store.search(parse_query("shoigu"))
        assert indexed(store, "shoigu") == {stored.id}
        edited = replace(first, body="<p>Lavrov and Wang</p>")
        _poll(store, source, edited, now=NOW + timedelta(hours=1))
        # The rewrite queues the article again; on SQLite its old tokens left at once.
        assert store.search_backlog() == 1
        assert store.search(parse_query("shoigu")) == []
        assert len(store.search(parse_query("lavrov 防长"))) == 1
        assert _index_all(store) == 1
        assert indexed(store, "lavrov") == {stored.id}
        assert indexed(store, "shoigu") == set()
        assert len(store.search(parse_query("lavrov 防长"))) == 1
        store.prune(now=NOW + timedelta(days=9), default_retention=timedelta(days=1), per_source={})
        assert store.search(parse_query("防长")) == []
        with store.engine.connect() as conn:  # gone from the index, not only filtered out
            assert _search.candidates(conn, everything) == set()


def test_an_article_pruned_or_rewritten_while_waiting_leaves_the_queue(database_url: str) -> None:
    source = Source("a", "A", "https://a.example/feed")
    items = [
        Article("a", "A", f"防长 {n}", f"https://a.example/{n}", "<p>x</p>", NOW, NOW)
        for n in range(3)
    ]
    with Store.open(database_url) as store:
        _poll(store, source, *items, now=NOW)
        _poll(store, source, replace(items[0], body="<p>shoigu</p>"), now=NOW)
        assert store.search_backlog() == 3  # queued once, however often rewritten
        store.prune(now=NOW + timedelta(days=9), default_retention=timedelta(days=1), per_source={})
        assert store.search_backlog() == 0
        assert store.index_pending() == 0
        assert store.search(parse_query("防长 OR shoigu")) == []


def test_migrating_an_unindexed_database_builds_the_index(
    database_url: str, posts: list[Article]
) -> None:
    with Store.open(database_url) as store:
        store.import_articles(posts[:20], now=NOW)
        query = parse_query("中俄 OR 香港")
        before = [item.id for item in store.search(query)]
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0003")
        store.migrate()
        assert [item.id for item in store.search(query)] == before != []


def test_fold_makes_scripts_widths_and_cases_equal() -> None:
    assert fold("國防部長 ＣＯＶＩＤ-19\n\tStraße") == "国防部长 covid-19 strasse"
    assert document_text("標題", "<p>防<b>長</b></p><p>second</p>") == "标题\n防长 second"


def test_fold_leaves_one_space_for_every_run_of_any_whitespace() -> None:
    spaces = "".join(char for point in range(0x3001) if (char := chr(point)).isspace())
    assert len(spaces) == 29  # tab to ideographic space, the separators U+001C-U+001F
    assert fold(f"{spaces}甲{spaces}b {spaces}") == "甲 b"


@pytest.mark.parametrize(
    "text",
    [
        "E\u0301cole ＡＢＣ，國防",  # an accent that NFKC composes with a folded letter
        "ΣΊΣΥΦΟΣ İstanbul ǅ",  # case outside the table's Latin
        "①②　ﬁ﹒…\u00a0\u2009x",  # compatibility forms and spaces
        "\uf900\uf901 \U0002f800 豈",  # compatibility ideographs
        "中國防長 COVID-19 訪問",
    ],
)
def test_the_one_pass_fold_equals_the_step_by_step_fold(text: str) -> None:
    slow = unicodedata.normalize("NFKC", text).casefold()
    slow = "".join(_T2S.convert(char) if char >= "\u3400" else char for char in slow)
    assert fold(text) == " ".join(slow.split())


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no term"),
        ("-russia", "no term"),
        ("OR 香港", "OR needs"),
        ("香港 OR", "OR needs"),
        ("香港 OR -澳门", "excluded"),
        ("!!!", "nothing to search"),
        ("x" * 501, "longer"),
    ],
)
def test_bad_queries_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(QueryError, match=problem):
        parse_query(text)


def test_queries_print_canonically() -> None:
    assert str(parse_query('  防長   "Defence  Minister" -Russia 香港 OR 澳門')) == (
        '防长 "defence minister" 香港 OR 澳门 -russia'
    )
    assert parse_query('"unclosed phrase').clauses[0][0].folded == "unclosed phrase"


def test_snippets_mark_matches_in_the_original_text() -> None:
    text = "開頭 " * 30 + "中國防長訪問俄羅斯, the Defence   Minister said"
    pieces = snippet(text, parse_query('防长 "defence minister"'), width=60)
    assert [part for part, marked in pieces if marked] == ["防長", "Defence   Minister"]
    assert "".join(part for part, _ in pieces) in text
    assert snippet("nothing here", parse_query("香港")) == [("nothing here", False)]


def test_the_index_keeps_each_cjk_pair_one_token(database_url: str) -> None:
    """The database's tokenizer must not split the worker's pairs: an article with
    长 and 防 but never 防长 is not a candidate for 防长."""
    pair, apart = (
        Article("a", "A", title, f"https://a.example/{n}", "<p>x</p>", NOW, NOW)
        for n, title in enumerate(["中俄防长", "长城 国防"])
    )
    with Store.open(database_url) as store:
        store.import_articles([pair, apart], now=NOW)
        _index_all(store)
        ids = {item.article.title: item.id for item in store.latest()}
        with store.engine.connect() as conn:
            assert _search.candidates(conn, parse_query("防长")) == {ids["中俄防长"]}
            assert _search.candidates(conn, parse_query("长")) == set(ids.values())


def test_a_single_character_is_found_where_it_starts_no_pair(database_url: str) -> None:
    """Single CJK characters are indexed only at the end of a run (and not even
    there when they start a pair elsewhere): a one-character query finds them at a
    run's end, inside a run, and alone."""
    titles = ["国防", "防长 x", "美 国 防 部", "长城", "e mail"]
    items = [
        Article("a", "A", title, f"https://a.example/{n}", "<p>-</p>", NOW, NOW)
        for n, title in enumerate(titles)
    ]
    with Store.open(database_url) as store:
        store.import_articles(items, now=NOW)
        _index_all(store)
        ids = {item.article.title: item.id for item in store.latest()}
        with store.engine.connect() as conn:
            found = _search.candidates(conn, parse_query("防"))
            assert found == {ids[title] for title in titles[:3]}
            assert _search.candidates(conn, parse_query("e")) == {ids["e mail"]}
            assert _search.candidates(conn, parse_query("国 OR 城")) == {
                ids["国防"],
                ids["美 国 防 部"],
                ids["长城"],
            }


def test_the_shipped_fold_table_is_opencc_s_character_table() -> None:
    """The fold's Traditional-to-Simplified table ships with the code (OpenCC is not
    imported to fold); it must be what OpenCC says, character by character."""
    from aggregator.search.text import _t2s_table, opencc_t2s_table

    assert _t2s_table() == opencc_t2s_table()
