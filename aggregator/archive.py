"""The seed archive format: one article per Markdown file.

Two layouts occur in the reference files.  The Jekyll post::

    ---
    layout: post
    title: "..."
    date: 2021-11-24T01:38:51.387Z      <- first fetched, ms precision, Z
    author: 联合早报                      <- the source's display name
    from: https://...                    <- the article link
    tags: [ 联合早报 ]
    comments: True                       <- optional
    categories: [ 联合早报 ]
    ---
    <!--1637745300000-->                 <- published, epoch ms, or NaN when unknown
    [title](link)
    ------

    <html body>

and the bare one, which is the same from ``<!--...-->`` on.  The file records
neither the source id nor the entry guid, so :func:`parse` takes the source id
from its caller (the importer knows which source a folder belongs to).

Real archives hold more than the seeds, and the reader takes it all:

* Jekyll posts of other generators, whose body follows the front matter with no
  ``<!--published-->`` / ``[title](link)`` / ``------`` header.  Their only time is
  the front matter's ``date``, so it serves as the published time (flagged
  :attr:`~aggregator.types.DateSource.FRONT_MATTER`) as well as the fetch time.
* ``[title](link)`` lines whose title holds unescaped brackets
  (``[[國際] …](https://…)``): the line is split at its last ``](``.  The front
  matter's ``title`` and ``from`` win over the line whenever they are present.

The writer is the reader's exact inverse: writing what was read gives the same
bytes, and reading what was written gives the same values, whatever the title
holds.  Front-matter values are written plain when YAML would read them back
unchanged and double-quoted with escapes otherwise; the title is always quoted,
as in the seeds.  The ``[title](link)`` line backslash-escapes the characters
that would end it early.

Imports from the package: ``errors`` and ``types``; the CLI brings the adapters and the
store (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from aggregator.errors import ArchiveError
from aggregator.types import UTC, Article, DateSource, RawEntry

__all__ = [
    "ArchiveDocument",
    "WriteCounts",
    "as_fetched",
    "keep_archived",
    "parse",
    "post_filename",
    "read_file",
    "read_files",
    "render",
    "write_archive",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
FRONT_MATTER_FENCE = "---"
TITLE_RULE = "------"
NAN = "NaN"
DEFAULT_LAYOUT = "post"


@dataclass(frozen=True)
class ArchiveDocument:
    """An article as one archive file holds it; ``layout`` is ``None`` for the bare layout."""

    article: Article
    layout: str | None = DEFAULT_LAYOUT


# --------------------------------------------------------------------------- writing


def _needs_escape(char: str) -> bool:
    """Characters PyYAML would refuse raw, or fold as line breaks, inside a quoted scalar."""
    code = ord(char)
    return (
        code < 0x20
        or 0x7F <= code <= 0x9F
        or char in "\u2028\u2029\ufeff"
        or 0xD800 <= code <= 0xDFFF
        or code in (0xFFFE, 0xFFFF)
    )


def _escape_char(char: str) -> str:
    named = {"\\": "\\\\", '"': '\\"', "\t": "\\t", "\n": "\\n", "\r": "\\r"}
    if char in named:
        return named[char]
    if not _needs_escape(char):
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def _quoted(value: str) -> str:
    return '"' + "".join(_escape_char(char) for char in value) + '"'


_RESOLVER = Resolver()
_PLAIN_START_FORBIDDEN = set("-?:,[]{}#&*!|>'\"%@`")
# Inside [ ... ] PyYAML ends a plain scalar at any of these (`?` and `:` included).
_FLOW_FORBIDDEN = set(",[]{}?:")


def _plain_is_safe(value: str, *, in_flow: bool) -> bool:
    """True when YAML reads ``value`` back, unquoted, as exactly this string."""
    if not value or value != value.strip() or value[0] in _PLAIN_START_FORBIDDEN:
        return False
    if ": " in value or " #" in value or value.endswith(":") or "\\" in value:
        return False
    if in_flow and any(char in _FLOW_FORBIDDEN for char in value):
        return False
    if any(_needs_escape(char) or char == "\t" for char in value):
        return False
    # The implicit resolver is what turns `yes`, `null`, `1e3` or dates into non-strings.
    tag: str = _RESOLVER.resolve(ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    return tag == "tag:yaml.org,2002:str"


def _scalar(value: str, *, in_flow: bool = False) -> str:
    return value if _plain_is_safe(value, in_flow=in_flow) else _quoted(value)


def _sequence(values: Iterable[str]) -> str:
    return "[ " + ", ".join(_scalar(value, in_flow=True) for value in values) + " ]"


def _iso_ms(moment: datetime) -> str:
    # Formatted by hand: strftime("%Y") does not zero-pad years below 1000 everywhere.
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}."
        f"{moment.microsecond // 1000:03d}Z"
    )


# `<` and `>` too: kramdown passes raw HTML in the Markdown line through to the page.
_MD_TITLE_ESCAPES = {
    "\\": "\\\\",
    "[": "\\[",
    "]": "\\]",
    "<": "\\<",
    ">": "\\>",
    "\n": "\\n",
    "\r": "\\r",
}
_MD_LINK_ESCAPES = {"\\": "\\\\", "(": "\\(", ")": "\\)", "\n": "\\n", "\r": "\\r"}


def _md_escape(value: str, escapes: dict[str, str]) -> str:
    return "".join(escapes.get(char, char) for char in value)


def render(article: Article, layout: str | None = DEFAULT_LAYOUT) -> str:
    """Render one archive file.  ``layout=None`` writes the bare layout."""
    lines: list[str] = []
    if layout is not None:
        lines += [
            FRONT_MATTER_FENCE,
            f"layout: {_scalar(layout)}",
            f"title: {_quoted(article.title)}",
        ]
        if article.fetched is not None:
            lines.append(f"date: {_iso_ms(article.fetched)}")
        lines += [
            f"author: {_scalar(article.source_name)}",
            f"from: {_scalar(article.link)}",
            f"tags: {_sequence(article.tags)}",
        ]
        if article.comments is not None:
            lines.append(f"comments: {article.comments}")
        lines += [f"categories: {_sequence(article.categories)}", FRONT_MATTER_FENCE]
    published = NAN if article.published is None else str((article.published - EPOCH) // ONE_MS)
    lines += [
        f"<!--{published}-->",
        f"[{_md_escape(article.title, _MD_TITLE_ESCAPES)}]"
        f"({_md_escape(article.link, _MD_LINK_ESCAPES)})",
        TITLE_RULE,
        "",
        article.body,
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- reading

_PUBLISHED = re.compile(r"<!--(?:(?P<ms>-?\d{1,16})|NaN)-->")
_TITLE_LINE = re.compile(r"\[(?P<title>(?:\\.|[^\\\]])*)\]\((?P<link>(?:\\.|[^\\)])*)\)", re.DOTALL)
# Other generators do not escape: the link is what follows the line's last "](".
_RAW_TITLE_LINE = re.compile(r"\[(?P<title>.*)\]\((?P<link>[^\s]*)\)", re.DOTALL)
_MD_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
_FRONT_MATTER_LINE = re.compile(r"(?P<key>[A-Za-z_][\w-]*):(?: (?P<value>.*))?")


def _md_unescape(value: str) -> str:
    return _MD_UNESCAPE.sub(
        lambda match: {"n": "\n", "r": "\r"}.get(match.group(1), match.group(1)), value
    )


class _Lines:
    """The file's lines with their 1-based numbers, for errors that point at a line."""

    def __init__(self, text: str, file: str | None) -> None:
        self.lines = text.split("\n")
        self.file = file
        self.index = 0
        # The empty string after a final newline is not a line of its own.
        self.end = len(self.lines) - 1 if text.endswith("\n") else len(self.lines)

    def error(self, problem: str, line: int | None = None) -> ArchiveError:
        """An error at ``line``, by default the line taken last."""
        return ArchiveError(problem, file=self.file, line=line or max(self.index, 1))

    def take(self, expected: str) -> str:
        if self.index >= self.end:
            raise self.error(f"unexpected end of file, expected {expected}", self.index + 1)
        line = self.lines[self.index].removesuffix("\r")
        self.index += 1
        return line


# libyaml's parser where PyYAML was built with it: the pure-Python one was a third of
# an import's CPU time, front matter being a handful of YAML values per file.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_value(lines: _Lines, key: str, raw: str, line: int) -> object:
    try:
        return yaml.load(raw, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "invalid YAML"
        if "nesting depth" in problem:  # libyaml's limit; the pure loader recurses instead
            problem = "nested too deeply"
        raise lines.error(f"{key}: {problem}", line) from exc
    except RecursionError as exc:  # "[[[[..." 100k deep: this file's fault, not the batch's
        raise lines.error(f"{key}: nested too deeply", line) from exc


def _as_str(lines: _Lines, key: str, value: object, line: int) -> str:
    if not isinstance(value, str):
        raise lines.error(f"{key}: expected a string, got {type(value).__name__}", line)
    return value


def _as_str_tuple(lines: _Lines, key: str, value: object, line: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise lines.error(f"{key}: expected a list of strings like [ a, b ]", line)
    return tuple(value)


def _read_front_matter(lines: _Lines) -> dict[str, tuple[object, int]]:
    lines.take("---")
    values: dict[str, tuple[object, int]] = {}
    while True:
        line_no = lines.index + 1
        line = lines.take("the closing --- of the front matter")
        if line == FRONT_MATTER_FENCE:
            return values
        match = _FRONT_MATTER_LINE.fullmatch(line)
        if match is None:
            raise lines.error("expected 'key: value' in the front matter", line_no)
        key = match["key"]
        if key in values:
            raise lines.error(f"{key}: duplicate key", line_no)
        values[key] = (_yaml_value(lines, key, match["value"] or "", line_no), line_no)


def _published(lines: _Lines) -> datetime | None:
    line = lines.take("<!--published epoch ms--> or <!--NaN-->")
    match = _PUBLISHED.fullmatch(line)
    if match is None:
        raise lines.error("expected <!--published epoch ms--> or <!--NaN-->")
    if match["ms"] is None:
        return None
    try:
        return EPOCH + int(match["ms"]) * ONE_MS
    except OverflowError as exc:
        raise lines.error("published time out of range") from exc


def _title_line(lines: _Lines) -> tuple[str, str]:
    """The ``[title](link)`` line: our own escaped form first, another generator's raw one next."""
    line_no = lines.index + 1
    line = lines.take("[title](link)")
    match = _TITLE_LINE.fullmatch(line)
    if match is not None:
        return _md_unescape(match["title"]), _md_unescape(match["link"])
    match = _RAW_TITLE_LINE.fullmatch(line)
    if match is None:
        raise lines.error("expected [title](link)", line_no)
    return match["title"], match["link"]


def _header(lines: _Lines) -> tuple[datetime | None, str, str]:
    """The ``<!--published-->`` / ``[title](link)`` / ``------`` header and its blank line."""
    published = _published(lines)
    title, link = _title_line(lines)
    if lines.take(TITLE_RULE) != TITLE_RULE:
        raise lines.error(f"expected {TITLE_RULE}")
    if lines.take("a blank line before the body") != "":
        raise lines.error("expected a blank line before the body")
    return published, title, link


def _has_header(lines: _Lines) -> bool:
    """Whether the header follows; only a Jekyll post may go without one.

    A body may open with an HTML comment of its own (``<!-- wp:paragraph -->``), so
    a comment line opens the header only when it is a published time or is followed
    by a ``[`` line; a damaged header is then still reported, not read as body.
    """
    if lines.index >= lines.end:
        return False
    first = lines.lines[lines.index].removesuffix("\r")
    if _PUBLISHED.fullmatch(first):
        return True
    second = lines.lines[lines.index + 1] if lines.index + 1 < lines.end else ""
    return first.startswith("<!--") and second.startswith("[")


def _fetched(lines: _Lines, front: dict[str, tuple[object, int]]) -> datetime | None:
    if "date" not in front:
        return None
    value, line = front["date"]
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise lines.error("date: expected an ISO 8601 timestamp with a zone, like ...Z", line)
    return value


def _headerless_field(lines: _Lines, front: dict[str, tuple[object, int]], key: str) -> str:
    if key not in front:
        raise lines.error(
            f"expected <!--published epoch ms--> or a front matter {key!r} to stand in for it"
        )
    return _as_str(lines, key, *front[key])


def parse(text: str, *, file: str | None = None, source_id: str = "") -> ArchiveDocument:
    """Read one archive file's text.  Raises :class:`ArchiveError` naming file and line."""
    lines = _Lines(text, file)
    front: dict[str, tuple[object, int]] = {}
    layout: str | None = None
    if lines.lines[0].removesuffix("\r") == FRONT_MATTER_FENCE:
        front = _read_front_matter(lines)
        layout_value, layout_line = front.get("layout", (DEFAULT_LAYOUT, 1))
        layout = _as_str(lines, "layout", layout_value, layout_line)
    fetched = _fetched(lines, front)
    if front and not _has_header(lines):
        title = _headerless_field(lines, front, "title")
        link = _headerless_field(lines, front, "from")
        published = fetched
        date_source = DateSource.FRONT_MATTER if published is not None else DateSource.UNKNOWN
        # The blank lines between the front matter and the body are layout, not content.
        while lines.index < lines.end and not lines.lines[lines.index].strip():
            lines.index += 1
    else:
        published, title, link = _header(lines)
        date_source = DateSource.ARCHIVE if published is not None else DateSource.UNKNOWN
    body = "\n".join(lines.lines[lines.index :])
    body = body.removesuffix("\n") if text.endswith("\n") else body

    if "title" in front:
        title = _as_str(lines, "title", *front["title"])
    if "from" in front:
        link = _as_str(lines, "from", *front["from"])
    comments = front.get("comments", (None, 0))[0]
    if comments is not None and not isinstance(comments, bool):
        raise lines.error("comments: expected True or False", front["comments"][1])
    source_name = _as_str(lines, "author", *front["author"]) if "author" in front else ""
    article = Article(
        source_id=source_id,
        source_name=source_name,
        title=title,
        link=link,
        body=body,
        published=published,
        fetched=fetched,
        tags=_as_str_tuple(lines, "tags", *front.get("tags", (None, 0))),
        categories=_as_str_tuple(lines, "categories", *front.get("categories", (None, 0))),
        comments=comments,
        date_source=date_source,
    )
    return ArchiveDocument(article, layout)


def read_file(path: Path, *, source_id: str = "") -> ArchiveDocument:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArchiveError(f"not UTF-8 text ({exc.reason})", file=str(path)) from exc
    except OSError as exc:
        raise ArchiveError(f"cannot read: {exc.strerror}", file=str(path)) from exc
    return parse(text, file=str(path), source_id=source_id)


def read_files(
    paths: Iterable[Path], *, source_id: str = ""
) -> Iterator[tuple[Path, ArchiveDocument | ArchiveError]]:
    """Read many files; a malformed one yields its error instead of stopping the batch.

    Errors are yielded, not logged: the caller reports each skipped file once, as it
    counts it.  Logging here as well printed every skipped file twice.
    """
    for path in paths:
        try:
            yield path, read_file(path, source_id=source_id)
        except ArchiveError as error:
            yield path, error


# --------------------------------------------------------------------------- importing


def as_fetched(article: Article) -> tuple[RawEntry, datetime]:
    """An archived article as the raw entry (and first-fetched time) its source's adapter
    would have been given, so an import goes through the one normalisation path a poll
    takes: it cleans the body of files that still carry ads, strips title suffixes and
    repairs dates.

    The archive's title is plain text while ``RawEntry.title`` is markup, so it goes in
    escaped: a title such as ``a <b> c`` is text, not a tag to strip.
    """
    published = article.published.isoformat() if article.published else None
    entry = RawEntry(
        link=article.link,
        title=html.escape(article.title, quote=False),
        content=article.body,
        published=published,
    )
    return entry, article.fetched or article.published or datetime.now(UTC)


def keep_archived(fresh: Article, archived: Article) -> Article:
    """``fresh`` (the adapter's reading of ``archived``) with what only the archive knows:
    its first-fetched time, its comments flag, and its date source when the adapter kept
    the archived published time as it was (a repair records its own source)."""
    kept = fresh.published == archived.published and fresh.date_source is DateSource.FEED
    return replace(
        fresh,
        fetched=archived.fetched or fresh.fetched,
        comments=archived.comments,
        date_source=archived.date_source if kept else fresh.date_source,
    )


# --------------------------------------------------------------------------- file names

_SLUG_MAX_CHARS = 60  # 60 CJK characters are 180 UTF-8 bytes: under every 255-byte name limit
_SLUG_JUNK = re.compile(r"[^\w]+")


def _slug(title: str) -> str:
    """Keep letters and digits of any script (Chinese stays readable), hyphens between words."""
    text = unicodedata.normalize("NFKC", title)
    text = "".join(
        char if unicodedata.category(char)[0] in "LN" or char == "-" else " " for char in text
    )
    slug = _SLUG_JUNK.sub("-", text.replace("_", " ")).strip("-").lower()
    return slug[:_SLUG_MAX_CHARS].strip("-")


def post_filename(article: Article) -> str:
    """``YYYY-MM-DD-<slug>-<hash>.md``: stable for an article, unique per link.

    The short hash of the link makes two articles with the same title and day
    land in different files without depending on which one was written first,
    so re-exports never rename a file.  The name never holds a path separator,
    ``..``, a control or reserved character, and stays well under 255 bytes.
    """
    moment = article.sort_time or EPOCH
    digest = hashlib.sha256(article.link.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    parts = [f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}", _slug(article.title), digest]
    return "-".join(part for part in parts if part) + ".md"


# --------------------------------------------------------------------------- writing a folder


@dataclass(frozen=True)
class WriteCounts:
    written: int = 0
    unchanged: int = 0


def write_archive(
    articles: Iterable[Article], directory: Path, *, layout: str | None = DEFAULT_LAYOUT
) -> WriteCounts:
    """Write ``directory/_posts/<name>.md`` per article, skipping files whose bytes are equal.

    Each file is written to a temporary name and renamed into place, so a full
    disk or a crash leaves the previous version intact rather than a torn file.
    """
    posts = (directory / "_posts").resolve()
    posts.mkdir(parents=True, exist_ok=True)
    written = unchanged = 0
    for article in articles:
        target = posts / post_filename(article)
        if target.parent != posts:  # defence in depth: names are built to make this impossible
            raise ArchiveError("refusing to write outside the archive folder", file=str(target))
        data = render(article, layout).encode("utf-8", "surrogatepass")
        try:
            if target.read_bytes() == data:
                unchanged += 1
                continue
        except FileNotFoundError:
            pass
        temporary = target.with_name(f".{target.name}.tmp")
        try:
            temporary.write_bytes(data)
            os.replace(temporary, target)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise ArchiveError(f"cannot write: {exc.strerror}", file=str(target)) from exc
        written += 1
    return WriteCounts(written, unchanged)
