"""The parse-and-adapt fuzz target and its document generator (shared by the tests).

``parse_and_adapt`` is the pure core a poll runs on fetched bytes: parse_feed, then
every registered adapter on every entry.  Its contract is that hostile bytes end
in :class:`ParseError` (the whole document) or :class:`AdapterError` (one entry),
never anything else.  A document that breaks the contract is saved under
tests/fixtures/hostile/ as ``fuzz-<sha>.bin`` so the replay test keeps it forever.
"""

from __future__ import annotations

import traceback
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import strategies as st

from aggregator.adapters import adapter_names, get_adapter
from aggregator.errors import AdapterError, ParseError
from aggregator.types import Article, Source

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hostile"
NOW = datetime(2024, 1, 1, tzinfo=UTC)
FEED_URL = "https://example.org/feed.xml"


def parse_and_adapt(content: bytes, headers: dict[str, str] | None = None) -> list[Article]:
    """Parse ``content`` and run every adapter on every entry; ParseError propagates."""
    from aggregator.parse import parse_feed

    feed = parse_feed(content, url=FEED_URL, headers=headers, source="fuzz")
    articles = []
    for name in adapter_names():
        adapter = get_adapter(name)
        source = Source(id="fuzz", name="Fuzz", url=FEED_URL, adapter=name)
        for entry in feed.entries:
            try:
                articles.append(adapter(entry, source, NOW))
            except AdapterError:
                continue
    return articles


def run_target(content: bytes, headers: dict[str, str] | None = None) -> None:
    """The fuzz target: only ParseError may escape; anything else is saved, then re-raised."""
    try:
        parse_and_adapt(content, headers)
    except ParseError:
        pass
    except Exception as exc:
        save_crash(content, exc)
        raise


def save_crash(content: bytes, exc: BaseException) -> Path:
    """Keep the crashing document, one file per crash site.

    Named by exception type and innermost frame, so while hypothesis shrinks a
    failure each smaller example overwrites the last and the file ends up holding
    the minimal one (hypothesis replays it last).
    """
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    site = f"{type(exc).__name__}-{Path(frame.filename).stem}-{frame.lineno}"
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path = FIXTURES / f"fuzz-{site}.bin"
    path.write_bytes(content)
    return path


# -- the document generator --------------------------------------------------------------

_WORDS = st.sampled_from(
    [
        "news", "联合早报", "法广", "<b>bold</b>", "a &amp; b", "&nbsp;", "&lol;", "&#0;",
        "&#x110000;", "&#99999999999;", "&#xD800;", "&bogus", "<![CDATA[x]]>", "]]>", "<", ">",
        "&", "\x00", "\x1b", "\ufeff", "\u202e", "<script>alert(1)</script>", "<p>", "</p>",
        "<img src=x onerror=alert(1)>", "javascript:alert(1)", "http://", "//x", "%",
        "<!--", "-->", "<?pi?>", "\U0001f600", "\ud800", "Mon, 05 Dec 2022 16:48:09 +0800",
        "2022-13-45T99:99:99Z", "-999999-01-01", "1e400",
    ]
)  # fmt: skip
_TEXT = st.lists(st.one_of(_WORDS, st.text(max_size=8)), max_size=6).map("".join)
_DATES = st.one_of(
    _TEXT,
    st.sampled_from(
        [
            "Mon, 05 Dec 2022 16:48:09 +0800",
            "2024-02-30T10:00:00Z",
            "9999-12-31T23:59:59+14:00",
            "0001-01-01T00:00:00-14:00",
            "Tue, 31 Dec 1969 23:59:59 GMT",
            "31/01/2024 - 19:33",
            "",
        ]
    ),
)
_LINKS = st.one_of(
    _TEXT,
    st.sampled_from(
        [
            "https://www.zaobao.com//realtime/china/story20221205-1340446",
            "https://www.rfa.org/mandarin/a-06192019193257.html",
            "https://www.voachinese.com/a/x-20230703/7165432.html",
            "https://www.rfi.fr/cn/中国/20240131-x",
            "/relative/path",
            "javascript:alert(1)",
            "http://[::1",
            "http://example.org:99999/",
            "https://images.weserv.nl/?url=",
        ]
    ),
)


def _wrap(text: str, cdata: bool) -> str:
    return f"<![CDATA[{text}]]>" if cdata else text


@st.composite
def _item(draw: st.DrawFn, kind: str) -> str:
    title = _wrap(draw(_TEXT), draw(st.booleans()))
    link = draw(_LINKS)
    body = _wrap(draw(_TEXT), draw(st.booleans()))
    date = draw(_DATES)
    if kind == "atom":
        return (
            f"<entry><title type='{draw(st.sampled_from(['text', 'html']))}'>{title}</title>"
            f"<link href='{link}'/><id>{draw(_TEXT)}</id><updated>{date}</updated>"
            f"<content type='html'>{body}</content></entry>"
        )
    return (
        f"<item><title>{title}</title><link>{link}</link><guid>{draw(_LINKS)}</guid>"
        f"<pubDate>{date}</pubDate><description>{body}</description>"
        f"<content:encoded>{_wrap(draw(_TEXT), True)}</content:encoded>"
        f"<category>{draw(_TEXT)}</category></item>"
    )


_PROLOGS = st.sampled_from(
    [
        "",
        '<?xml version="1.0" encoding="utf-8"?>',
        '<?xml version="1.0" encoding="gb2312"?>',
        '<?xml version="1.0" encoding="bogus-charset"?>',
        '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>',
        '<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY a "AAAAAAAAAA">\n]>\n',
        '<?xml version="1.0"?><!DOCTYPE rss SYSTEM "http://127.0.0.1:9/x.dtd">',
        '<!DOCTYPE rss [<!ENTITY nbsp "&#160;">]>',
        "\ufeff",
        "junk before the root",
    ]
)


@st.composite
def feed_documents(draw: st.DrawFn) -> bytes:
    """A feed with random structure, entities, encoding and breakage."""
    kind = draw(st.sampled_from(["rss", "atom", "rdf", "json"]))
    items = draw(st.lists(_item(kind if kind != "rdf" else "rss"), max_size=4))
    if kind == "json":
        import json

        doc = json.dumps(
            {
                "version": draw(st.sampled_from(["https://jsonfeed.org/version/1.1", "x", ""])),
                "title": draw(_TEXT),
                "items": draw(
                    st.lists(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "id": st.one_of(_TEXT, st.integers(), st.none()),
                                "url": _LINKS,
                                "title": st.one_of(_TEXT, st.integers()),
                                "content_html": _TEXT,
                                "content_text": _TEXT,
                                "date_published": _DATES,
                                "tags": st.lists(st.one_of(_TEXT, st.integers()), max_size=3),
                                "authors": st.lists(
                                    st.one_of(st.fixed_dictionaries({"name": _TEXT}), _TEXT),
                                    max_size=2,
                                ),
                                "attachments": st.lists(
                                    st.one_of(st.fixed_dictionaries({"url": _LINKS}), st.none()),
                                    max_size=2,
                                ),
                            },
                        ),
                        max_size=4,
                    )
                ),
            },
            ensure_ascii=draw(st.booleans()),
        )
    elif kind == "atom":
        doc = f"<feed xmlns='http://www.w3.org/2005/Atom'><title>{draw(_TEXT)}</title>{''.join(items)}</feed>"
    elif kind == "rdf":
        doc = (
            "<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#' "
            "xmlns='http://purl.org/rss/1.0/' xmlns:dc='http://purl.org/dc/elements/1.1/'>"
            f"<channel><title>{draw(_TEXT)}</title></channel>{''.join(items)}</rdf:RDF>"
        )
    else:
        doc = (
            "<rss version='2.0' xmlns:content='http://purl.org/rss/1.0/modules/content/'>"
            f"<channel><title>{draw(_TEXT)}</title>{''.join(items)}</channel></rss>"
        )
    if kind != "json":
        doc = draw(_PROLOGS) + doc
    encoding = draw(
        st.sampled_from(["utf-8", "utf-8", "gb18030", "big5", "utf-16", "latin-1", "cp1252"])
    )
    data = doc.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")
    if draw(st.booleans()):  # truncate, as a dropped connection would
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):  # flip some bytes
        flips = draw(
            st.lists(
                st.tuples(st.integers(0, max(len(data) - 1, 0)), st.integers(0, 255)), max_size=4
            )
        )
        buffer = bytearray(data)
        for index, value in flips:
            if buffer:
                buffer[index % len(buffer)] = value
        data = bytes(buffer)
    return data


HEADERS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            {"Content-Type": "application/rss+xml; charset=utf-8"},
            {"Content-Type": "text/html; charset=gb2312"},
            {"Content-Type": "application/json"},
            {"content-type": 'text/xml; charset="bogus"'},
            {"Content-Type": ""},
        ]
    ),
)
