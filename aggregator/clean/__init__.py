"""HTML body cleaning: pure ``str -> str`` steps driven by a :class:`CleanSpec`.

Per-site junk is described as data (CSS selectors, text markers) so that adding a
source means writing a spec, not code; the one thing a spec cannot say (Zaobao's
``data-s`` paragraph order) comes in as the ``reorder`` hook.

The package, one job a module: :mod:`.spec` (the rules as data), :mod:`.selectors`
(CSS selectors compiled to drop steps), :mod:`.tree` (lxml plumbing),
:mod:`.steps` (the cleaning steps), :mod:`.sanitizer` (the nh3 policy, always
last), :mod:`.text` (date line, visible text).  This module only chains them.

Imports from the package: ``urls`` only (stages: ARCHITECTURE.md).
"""

from __future__ import annotations

from aggregator.clean.sanitizer import as_sanitized, sanitize, sanitize_checked
from aggregator.clean.spec import CleanSpec, Reorder
from aggregator.clean.steps import (
    cut_at_markers,
    drop_empty,
    drop_selected,
    drop_sourceless_images,
    fix_urls,
    iframes_to_links,
    promote_lazy,
    remove_comments,
    tidy_whitespace,
    unwrap_presentational,
)
from aggregator.clean.text import extract_date_line, text_content
from aggregator.clean.tree import parse_body, serialize

__all__ = [
    "CleanSpec",
    "Reorder",
    "clean_html",
    "extract_date_line",
    "sanitize",
    "text_content",
]


def _clean_tree(html: str, base_url: str | None, spec: CleanSpec) -> str:
    root = parse_body(html)
    if spec.reorder is not None:
        spec.reorder(root)
    remove_comments(root)
    drop_selected(root, spec.drop)
    cut_at_markers(root, spec.cut_markers)
    promote_lazy(root, spec.lazy_attrs)
    drop_sourceless_images(root)
    iframes_to_links(root)
    fix_urls(root, base_url, spec.host_aliases)
    drop_empty(root)
    unwrap_presentational(root)
    tidy_whitespace(root)
    return serialize(root).strip()


#: Whole cleaning passes allowed before the output is taken as it is (two always
#: suffice in practice; the bound only guarantees termination).
_MAX_CLEAN_PASSES = 4


def clean_html(html: str, *, base_url: str | None = None, spec: CleanSpec | None = None) -> str:
    """Run the whole chain on one body and return safe HTML; idempotent.

    Order matters: reorder before anything is dropped (Zaobao's ranks count the ad
    blocks too); drop junk before resolving URLs (cheaper, and junk URLs never get
    canonicalised); drop empty wrappers after everything that can empty them;
    sanitize last.

    The tree steps read markup with libxml2, the sanitizer with html5ever; they nest
    mis-nested markup differently (``<pre><td><ul>`` or ``<p><section>x``), so the
    sanitizer's output can read, on the next pass, as a tree the steps change again.
    The chain is therefore repeated on its own output until nothing changes, which
    makes ``clean_html(clean_html(x)) == clean_html(x)`` hold by construction.  The
    check pass is cheap on clean output: when the steps give back exactly the
    sanitizer's output, the sanitizer (a fixed point on it) is not run again.
    """
    spec = spec or CleanSpec()
    if not html or not html.strip():
        return ""
    out, stable = sanitize_checked(_clean_tree(html, base_url, spec))
    for _ in range(_MAX_CLEAN_PASSES):
        tree = _clean_tree(out, base_url, spec) if out else ""
        if stable and as_sanitized(tree) == out:
            break
        again, stable = sanitize_checked(tree)
        if again == out:
            break
        out = again
    return out
