"""Text normalisation and tokens for the search index; pure functions, no I/O.

Index and query go through the same :func:`fold`, so whatever the fold makes equal
matches: full-width and half-width forms (NFKC), case (``casefold``) and Traditional
and Simplified Chinese, converted *character by character* with OpenCC's
Traditional-to-Simplified table.  Phrase-level conversion (``?script=``) would be
wrong here: it rewrites words (軟體 -> 软件), so a query could match a document
that never contains it; one character for one character keeps ``fold`` a
per-character map, and a substring of the text stays a substring after folding.

Tokens: every pair of adjacent CJK characters, so a CJK term of two or more
characters is found through its pairs, and every run of other letters and digits as
one word.  A one-character term is found as a prefix: the pairs it starts, plus the
character alone where it ends a CJK run and starts no pair in the text (防 in
"...国防" with no 防X anywhere).  Single characters are not all indexed: they were a
third of the tokens and of the index's write cost, and a one-character query is
rare.  A term is looked up by its tokens and then verified against the folded text,
so the tokens only have to be a superset test, never an exact one.
"""

from __future__ import annotations

import functools
import html
import operator
import re
import unicodedata
from collections.abc import Sequence

from aggregator.search._t2s import SIMPLIFIED, TRADITIONAL

__all__ = [
    "WORD_TOKEN_MAX",
    "document_text",
    "fold",
    "html_text",
    "indexed_tokens",
    "is_cjk_char",
    "term_tokens",
    "tokens",
    "tokens_of",
]

# Han (with extension A and the compatibility block), kana and the supplementary
# ideograph planes: scripts written without spaces between words.
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
#: Longer words are indexed by their prefix (the verify step checks the rest): keeps
#: index keys short on both databases.
WORD_TOKEN_MAX = 32

_CJK_CHAR = re.compile(f"[{CJK}]")
_CJK_PAIR = re.compile(f"(?=([{CJK}]{{2}}))")  # overlapping pairs, found in C
_CJK_RUN = re.compile(f"[{CJK}]+")
_WORD = re.compile(f"[^\\W_{CJK}]+")  # letters and digits that are not CJK
# Tags that break a line: their text must not run into the neighbour's (a Latin word
# would merge with the next paragraph's first word).  Inline tags vanish without a
# trace, so 防<b>长</b> is still 防长.
_BLOCK_TAG = re.compile(
    r"<(?:br|hr|/?(?:p|div|li|ul|ol|h[1-6]|tr|td|th|table|blockquote|pre|figure|figcaption"
    r"|section|article|header|footer|aside|dd|dt|dl))\b[^>]*>",
    re.IGNORECASE,
)
_TAG = re.compile(r"<[^>]*>")
# CJK planes whose characters OpenCC's Traditional-to-Simplified table covers.
_HAN_RANGES = ((0x3400, 0x4DC0), (0x4E00, 0xA000), (0xF900, 0xFB00), (0x20000, 0x2A6E0))


@functools.cache
def _t2s_table() -> dict[int, str]:
    """OpenCC's character table, one character at a time, as shipped in
    :mod:`aggregator.search._t2s` (:func:`opencc_t2s_table` makes it)."""
    pairs = zip(TRADITIONAL, SIMPLIFIED, strict=True)
    return {ord(traditional): simplified for traditional, simplified in pairs}


def opencc_t2s_table() -> dict[int, str]:
    """OpenCC's character table, asked of OpenCC one character at a time (~0.1 s).
    Converting a lone character never triggers a phrase rule, so this is the
    character table alone; a mapping to anything but one character is ignored, which
    keeps folding length-preserving for Han text."""
    import opencc

    converter = opencc.OpenCC("t2s")
    table: dict[int, str] = {}
    for start, end in _HAN_RANGES:
        for point in range(start, end):
            char = chr(point)
            simplified = converter.convert(char)
            if simplified != char and len(simplified) == 1:
                table[point] = simplified
    return table


def _fold_slowly(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().translate(_t2s_table())


# Latin, punctuation, full-width forms: the other characters the fold table covers.
_FOLD_RANGES = (
    (0x41, 0x5B),
    (0x80, 0x250),
    (0x2000, 0x2070),
    (0x3000, 0x3040),
    (0xFE10, 0xFE70),
    (0xFF01, 0xFFF0),
    *_HAN_RANGES,
)


@functools.cache
def _fold_table() -> dict[int, str]:
    """The whole fold of each character met in Latin, punctuation, full-width and Han
    text, as one ``str.translate`` table: one pass in C instead of three (NFKC alone,
    which every Chinese text needs for its full-width punctuation, costs more).

    Only the ~5,000 characters that change are ever held: a table of all ~76,000
    first, filtered afterwards, left 8 MB of freed but fragmented heap in every
    process that folds (the daemon and each parse worker)."""
    table: dict[int, str] = {}
    for start, end in _FOLD_RANGES:
        for point in range(start, end):
            folded = _fold_slowly(chr(point))
            if folded != chr(point):
                table[point] = folded
    return table


def fold(text: str) -> str:
    """The comparable form of ``text``: NFKC, case-folded, Simplified, single spaces.

    The table folds each character alone; that equals folding the whole text unless
    characters combine (NFKC composes accents) or text outside the table has case,
    and both leave a result that is not yet NFKC or not yet case-folded, which two
    C-level checks see, and only then is the text folded step by step."""
    folded = text.translate(_fold_table())
    if not unicodedata.is_normalized("NFKC", folded) or folded.casefold() != folded:
        folded = _fold_slowly(text)
    # Single spaces, none at the ends: split() and a regex's \s both take whitespace
    # as str.isspace() does, and split() costs a tenth of the substitution.
    return " ".join(folded.split())


def html_text(fragment: str) -> str:
    """The readable text of cleaned article HTML (markup is already sanitised, so a
    regular expression suffices and costs a fraction of a parser per article)."""
    return html.unescape(_TAG.sub("", _BLOCK_TAG.sub(" ", fragment)))


def document_text(title: str, body: str) -> str:
    """What a query is matched against: folded title and body text.

    A newline separates them, which a folded phrase never contains, so a phrase
    cannot match across the two."""
    return fold(title) + "\n" + fold(html_text(body))


def tokens(folded: str) -> set[str]:
    """Every index token of a folded text: CJK pairs, the CJK run ends no pair
    starts with, words.

    Written for CPU: the pairs are made by ``operator.add`` (a C function, where
    ``str.__add__`` is a slot wrapper called through an argument tuple), and a run end
    is looked for as a substring of the characters that start pairs instead of in a
    set of them (which made a string object of every character): 30% less CPU.
    """
    runs: list[str] = _CJK_RUN.findall(folded)
    found: set[str] = set()
    for run in runs:
        found.update(map(operator.add, run, run[1:]))
    starts = "\n".join([run[:-1] for run in runs])  # the characters some pair starts with
    found.update([end for end in {run[-1] for run in runs} if end not in starts])
    found.update([word[:WORD_TOKEN_MAX] for word in _WORD.findall(folded)])
    return found


def indexed_tokens(title: str, body: str) -> str:
    """An article's tokens as the index receives them: one per line (a line break is a
    separator to SQLite's tokenizer and cheap to split)."""
    return "\n".join(tokens(document_text(title, body)))


def tokens_of(texts: Sequence[tuple[str, str]]) -> list[str]:
    """:func:`indexed_tokens` of each ``(title, body)``: a batch is one task (one
    round trip of pickles) when a process pool makes them."""
    return [indexed_tokens(title, body) for title, body in texts]


def term_tokens(folded: str) -> frozenset[str]:
    """The fewest tokens every text containing the folded term must have: a CJK run
    contributes its pairs (its one character when alone, which the index looks up as
    a prefix: see :func:`is_cjk_char`), a word its own token."""
    found: set[str] = set()
    for run in _CJK_RUN.findall(folded):
        found.update(_CJK_PAIR.findall(run) if len(run) > 1 else run)
    found.update(word[:WORD_TOKEN_MAX] for word in _WORD.findall(folded))
    return frozenset(found)


def is_cjk_char(token: str) -> bool:
    """True for a single CJK character: as a term's token it stands for every index
    token starting with it (the pairs it starts, or itself at a run's end)."""
    return len(token) == 1 and _CJK_CHAR.match(token) is not None


def is_word_char(char: str) -> bool:
    """True for letters and digits outside CJK: the characters a word is made of."""
    return _WORD.fullmatch(char) is not None
