"""The query language and the exact match that verifies index candidates.

Syntax (documented in the README)::

    防长 中俄            both terms (terms separated by spaces must all match)
    "defence minister"  an exact phrase
    -russia             excludes articles containing the term (or -"a phrase")
    香港 OR 澳门         either term; OR binds tighter than the spaces around it

A term matches as a substring of the folded text, except that a term starting or
ending with a letter or digit (outside CJK) must start or end on a word boundary
there: ``covid`` finds "COVID-19" but not "covidiots", while 防长 finds 中国防长.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from aggregator.errors import QueryError
from aggregator.search.text import CJK, fold, is_word_char, term_tokens

__all__ = ["Query", "Term", "parse_query", "snippet"]

MAX_QUERY_LENGTH = 500
MAX_TERMS = 16
_PIECE = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_NOT_WORD_BEFORE = f"(?<![^\\W_{CJK}])"
_NOT_WORD_AFTER = f"(?![^\\W_{CJK}])"


@dataclass(frozen=True)
class Term:
    """One term (a word, a CJK string or a phrase), folded."""

    folded: str
    tokens: frozenset[str]
    pattern: re.Pattern[str]

    @classmethod
    def of(cls, text: str) -> Term:
        folded = fold(text)
        before = _NOT_WORD_BEFORE if folded and is_word_char(folded[0]) else ""
        after = _NOT_WORD_AFTER if folded and is_word_char(folded[-1]) else ""
        pattern = re.compile(before + re.escape(folded) + after)
        return cls(folded, term_tokens(folded), pattern)

    def found_in(self, folded_text: str) -> bool:
        return self.pattern.search(folded_text) is not None

    def __str__(self) -> str:
        return f'"{self.folded}"' if " " in self.folded else self.folded


@dataclass(frozen=True)
class Query:
    """All ``clauses`` must match (a clause: any of its terms), no ``excluded`` may."""

    clauses: tuple[tuple[Term, ...], ...]
    excluded: tuple[Term, ...]

    def matches(self, folded_text: str) -> bool:
        return all(
            any(term.found_in(folded_text) for term in clause) for clause in self.clauses
        ) and not any(term.found_in(folded_text) for term in self.excluded)

    @property
    def positive(self) -> tuple[Term, ...]:
        return tuple(term for clause in self.clauses for term in clause)

    def __str__(self) -> str:
        """The canonical spelling: equal queries print equally (ETags, feed titles)."""
        parts = [" OR ".join(str(term) for term in clause) for clause in self.clauses]
        parts += [f"-{term}" for term in self.excluded]
        return " ".join(parts)


def parse_query(text: str) -> Query:
    """Parse ``text``; :class:`QueryError` says what is wrong, for the user to see."""
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(f"query longer than {MAX_QUERY_LENGTH} characters")
    clauses: list[list[Term]] = []
    excluded: list[Term] = []
    joining = False  # the previous piece was OR
    for negated, phrase, word in _pieces(text):
        if word == "OR" and not negated:
            if not clauses or joining:
                raise QueryError("OR needs a term on each side")
            joining = True
            continue
        term = Term.of(phrase if word is None else word)
        if not term.folded:
            continue
        if negated:
            if joining:
                raise QueryError("an excluded term cannot be part of OR")
            excluded.append(term)
            continue
        if not term.tokens:
            raise QueryError(f"nothing to search for in {term.folded[:40]!r} (no letters)")
        if joining:
            clauses[-1].append(term)
        else:
            clauses.append([term])
        joining = False
    if joining:
        raise QueryError("OR needs a term on each side")
    if not clauses:
        raise QueryError("the query has no term to search for")
    if len(clauses) + len(excluded) > MAX_TERMS or sum(map(len, clauses)) > MAX_TERMS:
        raise QueryError(f"more than {MAX_TERMS} terms")
    return Query(tuple(map(tuple, clauses)), tuple(excluded))


def _pieces(text: str) -> Iterator[tuple[bool, str, str | None]]:
    """``(negated, phrase, word)``: a quoted phrase (``word`` is None) or a bare word;
    an unclosed quote runs to the end of the query."""
    for match in _PIECE.finditer(text):
        if match.group(3) is not None:
            word = match.group(3)
            if word.startswith("-") and len(word) > 1:
                yield True, "", word[1:]
            else:
                yield False, "", word
        else:
            yield bool(match.group(1)), match.group(2), None


def snippet(text: str, query: Query, width: int = 80) -> list[tuple[str, bool]]:
    """A short piece of plain ``text`` around the first match, as ``(part, matched)``
    pieces, matched parts being where a positive term matches.

    Folding maps characters one by one here (with their offsets), so a match found in
    the folded text is cut from the original text, not from its folded form."""
    folded_chars: list[str] = []
    origin: list[int] = []
    spaced = False  # the last character was whitespace: a run folds to one space
    for index, char in enumerate(text):
        piece = "" if spaced and char.isspace() else (" " if char.isspace() else fold(char))
        spaced = char.isspace()
        folded_chars.append(piece)
        origin.extend([index] * len(piece))
    folded = "".join(folded_chars)
    spans = sorted(
        (origin[m.start()], origin[m.end() - 1] + 1)
        for term in query.positive
        for m in term.pattern.finditer(folded)
        if m.end() > m.start()
    )
    if not spans:
        return [(text[:width], False)]
    start = max(0, spans[0][0] - width // 3)
    end = min(len(text), start + width)
    pieces: list[tuple[str, bool]] = []
    at = start
    for low, high in spans:
        if low >= end:
            break
        if low < at:
            low = at
        if high <= low:
            continue
        pieces.append((text[at:low], False))
        pieces.append((text[low : min(high, end)], True))
        at = min(high, end)
    pieces.append((text[at:end], False))
    return [(part, marked) for part, marked in pieces if part]
