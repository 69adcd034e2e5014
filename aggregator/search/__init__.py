"""Search: the query language, text normalisation and index tokens (pure; no I/O).

The index itself lives in the store (:mod:`aggregator.store._search`); this package
decides what is indexed and what matches, so both databases agree by construction.
"""

from aggregator.search.query import Query, Term, parse_query, snippet
from aggregator.search.text import document_text, fold, html_text, term_tokens, tokens
from aggregator.search.topics import Topic

__all__ = [
    "Query",
    "Term",
    "Topic",
    "document_text",
    "fold",
    "html_text",
    "parse_query",
    "snippet",
    "term_tokens",
    "tokens",
]
