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

from lxml import etree

from aggregator.clean.sanitizer import (
    KEPT_ATTRIBUTES,
    as_sanitized,
    sanitize,
    sanitize_checked,
    sanitize_once,
    strip_attributes,
)
from aggregator.clean.selectors import check_steps
from aggregator.clean.spec import CleanSpec, Reorder
from aggregator.clean.steps import (
    ALWAYS_DROP,
    cut_at_markers,
    drop_empty,
    drop_selected,
    drop_sourceless_images,
    fix_urls,
    has_usable_src,
    iframes_to_links,
    promote_lazy,
    remove_comments,
    tidy_whitespace,
    unwrap_presentational,
    urls_settled,
)
from aggregator.clean.text import extract_date_line, text_content
from aggregator.clean.tree import parse_body, serialize, wrapped

__all__ = [
    "CleanSpec",
    "Reorder",
    "clean_html",
    "extract_date_line",
    "sanitize",
    "text_content",
]


def _run_steps(html: str, base_url: str | None, spec: CleanSpec) -> tuple[etree._Element, bool]:
    """The tree steps on ``html``: the body's root, and whether its texts are settled
    (:func:`~aggregator.clean.steps.tidy_whitespace`)."""
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
    return root, tidy_whitespace(root)


def _clean_tree(html: str, base_url: str | None, spec: CleanSpec) -> str:
    return serialize(_run_steps(html, base_url, spec)[0]).strip()


#: Whole cleaning passes allowed before the output is taken as it is (two always
#: suffice in practice; the bound only guarantees termination).
_MAX_CLEAN_PASSES = 4


def clean_html(html: str, *, base_url: str | None = None, spec: CleanSpec | None = None) -> str:
    """Run the whole chain on one body and return safe HTML; idempotent.

    Order matters: reorder before anything is dropped (Zaobao's ranks count the ad
    blocks too); drop junk before resolving URLs (cheaper, and junk URLs never get
    canonicalised); drop empty wrappers after everything that can empty them;
    sanitize last.

    ``clean_html(clean_html(x)) == clean_html(x)`` must hold: stored bodies are
    cleaned again and compared by fingerprint.  One pass does not always give that.
    The tree steps read markup with libxml2, the sanitizer with html5ever; they nest
    mis-nested markup differently (``<pre><td><ul>`` or ``<p><section>x``), so the
    sanitizer's output can read, on the next pass, as a tree the steps change again;
    and a step can find work that a later one made (texts that met when a wrapper
    went, a list right after the lede once the empty block between them went).  So
    the output of one pass is checked to be settled (:func:`_settled`: nothing a
    second pass would do to it is left to do), as nearly all bodies are; the others
    go through the whole chain again until it gives its input back
    (:func:`_repeat_until_stable`), which was once the only way.
    """
    spec = spec or CleanSpec()
    if not html or not html.strip():
        return ""
    root, texts_settled = _run_steps(html, base_url, spec)
    strip_attributes(root)
    raw = serialize(root)
    tree = raw.strip()
    once = sanitize_once(tree)
    if texts_settled and tree == raw and _settled(tree, once, base_url, spec):
        return once
    return _repeat_until_stable(tree, once, base_url, spec)


def _repeat_until_stable(tree: str, once: str, base_url: str | None, spec: CleanSpec) -> str:
    """Sanitize ``tree`` (``once``: one sanitizer pass over it), then clean the output
    again until it comes back as it is.

    The check pass is cheap on clean output: when the steps give back exactly the
    sanitizer's output, the sanitizer (a fixed point on it) is not run again.
    """
    out, stable = sanitize_checked(tree, once=once)
    for _ in range(_MAX_CLEAN_PASSES):
        tree = _clean_tree(out, base_url, spec) if out else ""
        if stable and as_sanitized(tree) == out:
            break
        again, stable = sanitize_checked(tree)
        if again == out:
            break
        out = again
    return out


def _settled(tree: str, out: str, base_url: str | None, spec: CleanSpec) -> bool:
    """Would a second pass give ``out`` back, as :func:`_repeat_until_stable` asks?

    ``tree`` is the serialised body after the steps (whose texts tidied again would
    stay as they are) and after the attributes the sanitizer drops; ``out`` is the
    sanitizer's output for it.  A second pass parses ``out``, runs the steps on it and
    serialises; that gives ``out`` back, and so does the sanitizer given it again, when:

    * the sanitizer gave ``tree`` back as it was (the no-break space spelled its
      way): sanitizing ``out``, which reads the same, gives ``out`` again;
    * the steps find nothing to do in ``out`` as the second pass parses it (the
      reorder hook first, as there): no selector selects, no cut marker, lazy
      attribute or iframe is left, every image has a usable source and every URL is
      canonical;
    * and that parse serialises as ``tree`` (attributes already in order, so
      ``serialize`` would give the same): it is the steps' own output tree again, so
      the steps not looked at have nothing to do either.  Comments, empty wrappers
      and spans went in the first pass and nothing after them brings one back; the
      texts were tidied as they stand (tidying is idempotent), and those tidied
      piece by piece were tidied again whole before ``tree`` was taken as settled.
    """
    if out != as_sanitized(tree):
        return False
    if not out:
        return True
    again = parse_body(out)
    if spec.reorder is not None:
        spec.reorder(again)
    for step in check_steps((*ALWAYS_DROP, *spec.drop), KEPT_ATTRIBUTES):
        if step.select(again):
            return False
    if spec.cut_markers:
        text = etree.tostring(again, method="text", encoding="unicode", with_tail=False)
        if any(marker in text for marker in spec.cut_markers):
            return False
    lazy = spec.lazy_attrs
    for node in again.iter("img", "source", "video"):
        if node.tag == "img" and not has_usable_src(node):
            return False
        if lazy and any(name in node.attrib for name in lazy):
            return False
    if next(again.iter("iframe"), None) is not None:
        return False
    # ``tree`` has its attributes in order (serialize put them so), and ``out`` is the
    # same markup: serialize would sort nothing here, and its output is this.
    return urls_settled(again, base_url, spec.host_aliases) and etree.tostring(
        again, method="html", encoding="unicode"
    ) == wrapped(tree)
