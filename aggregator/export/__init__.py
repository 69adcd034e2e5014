"""Turning stored articles into documents other programs read (feeds; archives later).

Everything in this package is pure: articles and metadata in, bytes out.  The HTTP
layer (:mod:`aggregator.serve`) and the CLI decide where the bytes go.

Imports from the package: ``types`` only: articles and metadata in, bytes out (stages:
ARCHITECTURE.md).
"""

from __future__ import annotations

from .feeds import (
    ATOM,
    FORMATS,
    JSON_FEED,
    RSS,
    FeedFormat,
    FeedItem,
    FeedMeta,
    ItemSource,
    decode_cursor,
    encode_cursor,
    item_id,
    render_atom,
    render_json_feed,
    render_rss,
    to_items,
)

__all__ = [
    "ATOM",
    "FORMATS",
    "JSON_FEED",
    "RSS",
    "FeedFormat",
    "FeedItem",
    "FeedMeta",
    "ItemSource",
    "decode_cursor",
    "encode_cursor",
    "item_id",
    "render_atom",
    "render_json_feed",
    "render_rss",
    "to_items",
]
