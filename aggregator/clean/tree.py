"""lxml tree plumbing shared by the steps: parse, remove, unwrap, serialise.

The body is parsed inside a wrapper ``<div>`` of ours and serialised without it.
Imports nothing of the cleaner.
"""

from __future__ import annotations

import re

from lxml import etree

__all__ = [
    "SEAM",
    "WHITESPACE",
    "XML_INVALID",
    "append_text",
    "drop_node",
    "is_blank",
    "parse_body",
    "serialize",
    "set_attr",
    "unwrap_node",
    "wrapped",
]

#: A whitespace run.  Spelled ``[...][...]*``, not ``[...]+``: re only scans ahead
#: for a pattern that starts with a plain character class, and otherwise tries a
#: match at every position (twice the time on the long runs of text without any).
WHITESPACE = re.compile(r"[ \t\r\n\f\u00a0\u3000][ \t\r\n\f\u00a0\u3000]*")

_PARSER = etree.HTMLParser()
_ROOT_OPEN = '<div id="aggregator-root">'
_ROOT_CLOSE = "</div>"
_BLANK = " \t\r\n\f\u00a0\u3000\ufdd0"


def is_blank(text: str | None) -> bool:
    return not text or not text.strip(_BLANK)


def parse_body(html: str) -> etree._Element:
    if XML_INVALID.search(html):
        # lxml cannot hold these in its tree; a form feed is whitespace, the rest noise.
        html = XML_INVALID.sub("", html.replace("\x0c", " "))
    html = html.replace(SEAM, "")
    document = etree.fromstring(f"{_ROOT_OPEN}{html}{_ROOT_CLOSE}", _PARSER)
    root = document.find("body/div")
    assert root is not None and root.get("id") == "aggregator-root"  # we just wrote it
    if root.tail is not None or root.getnext() is not None:
        # A stray ``</div>`` in the body closed our wrapper early; what followed it is
        # body all the same, and would be lost: take it back in.
        if root.tail:
            append_text(root[-1] if len(root) else root, root.tail, as_tail=len(root) > 0)
        root.tail = None
        root.extend(list(root.itersiblings()))
    return root


#: Marks where two text nodes met when the node between them went.  BeautifulSoup kept
#: such texts apart and whitespace was tidied per text node; the mark keeps that (so
#: the output is what it was), and never leaves :func:`_clean_tree`.
SEAM = "\ufdd0"


def append_text(element: etree._Element, text: str, *, as_tail: bool) -> None:
    if as_tail:
        element.tail = f"{element.tail}{SEAM}{text}" if element.tail else text
    else:
        element.text = f"{element.text}{SEAM}{text}" if element.text else text


def drop_node(node: etree._Element) -> None:
    """Remove ``node`` with its content, keeping the text that follows it."""
    parent = node.getparent()
    if parent is None:
        return
    if node.tail:
        previous = node.getprevious()
        if previous is not None:
            append_text(previous, node.tail, as_tail=True)
        else:
            append_text(parent, node.tail, as_tail=False)
    parent.remove(node)


def unwrap_node(node: etree._Element) -> None:
    """Replace ``node`` by its content (text, children, then its own tail)."""
    parent = node.getparent()
    if parent is None:
        return
    previous = node.getprevious()
    if node.text:
        if previous is not None:
            append_text(previous, node.text, as_tail=True)
        else:
            append_text(parent, node.text, as_tail=False)
    children = list(node)
    if node.tail:
        if children:
            append_text(children[-1], node.tail, as_tail=True)
        elif previous is not None:
            append_text(previous, node.tail, as_tail=True)
        else:
            append_text(parent, node.tail, as_tail=False)
    index = parent.index(node)
    parent.remove(node)
    parent[index:index] = children


def set_attr(node: etree._Element, attr: str, value: str) -> None:
    try:
        node.set(attr, value)
    except ValueError:  # lxml refuses control characters; the sanitizer would too
        node.set(attr, XML_INVALID.sub("", value))


XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def wrapped(html: str) -> str:
    """``html`` as the body's root serialises with it."""
    return f"{_ROOT_OPEN}{html}{_ROOT_CLOSE}"


#: Elements with two attributes or more: the only ones whose order can be wrong.
_SEVERAL_ATTRIBUTES = etree.XPath("descendant-or-self::*[@*[2]]")


def serialize(root: etree._Element) -> str:
    # Attributes in name order, as BeautifulSoup wrote them (the output format predates
    # the move to lxml, and stored bodies are compared by fingerprint).
    for node in _SEVERAL_ATTRIBUTES(root):
        assert isinstance(node, etree._Element)
        attrib = node.attrib
        if len(attrib) > 1:
            items = attrib.items()
            ordered = sorted(items)
            if ordered != items:
                attrib.clear()
                for name, value in ordered:
                    attrib[name] = value
    html = etree.tostring(root, method="html", encoding="unicode", with_tail=False)
    assert html.startswith(_ROOT_OPEN) and html.endswith(_ROOT_CLOSE)
    return html[len(_ROOT_OPEN) : -len(_ROOT_CLOSE)].replace(SEAM, "")
