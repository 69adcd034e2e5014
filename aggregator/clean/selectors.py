"""The selector engine: a spec's CSS selectors compiled once into drop steps.

cssselect parses and translates; element-local selectors (nearly all of them) are
matched by an indexed Python walk, the rest by libxml2's XPath.  Imports only
:mod:`.tree` (the seam mark that text matching must ignore).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cssselect import HTMLTranslator, parse
from cssselect.parser import Attrib, Class, Element, Function, Hash, Negation, Selector, Tree
from cssselect.xpath import XPathExpr
from lxml import etree

from aggregator.clean.tree import SEAM

__all__ = ["TRANSLATOR", "Compound", "LocalStep", "check_steps", "drop_steps", "to_compound"]


class _Translator(HTMLTranslator):
    """cssselect plus soupsieve's ``:-soup-contains()`` / ``:-soup-contains-own()``."""

    def _contains_argument(self, function: Function) -> str:
        if function.argument_types() not in (["STRING"], ["IDENT"]):
            raise ValueError(f"expected one string argument, got {function.arguments!r}")
        value = function.arguments[0].value
        assert isinstance(value, str)  # a STRING or IDENT token
        return self.xpath_literal(value)

    def xpath__soup_contains_function(self, xpath: XPathExpr, function: Function) -> XPathExpr:
        # Any descendant text, like soupsieve's get_text() (comments are not text in XPath).
        text = f"translate(string(.), '{SEAM}', '')"
        return xpath.add_condition(f"contains({text}, {self._contains_argument(function)})")

    def xpath__soup_contains_own_function(self, xpath: XPathExpr, function: Function) -> XPathExpr:
        # One of the element's own text nodes holds the text.
        return xpath.add_condition(f"text()[contains(., {self._contains_argument(function)})]")


TRANSLATOR = _Translator()

#: A ``~=`` (or class) value holding one of these matches nothing in cssselect.
_CSS_SPACE = re.compile("[ \t\r\n\f]")


def _value_pattern(operator: str, expected: str) -> re.Pattern[str] | None:
    """cssselect's XPath for an attribute operator, as a regex searched in the value.

    Edge cases follow cssselect's translation, not the CSS specification: an empty
    value matches nothing for ``^=``, ``$=`` and ``*=``, a value with whitespace
    matches nothing for ``~=``, and ``~=`` splits the attribute on XPath's whitespace
    only (``normalize-space()``: no ``\\f``, no no-break space).  ``None`` for
    ``!=``, which also matches elements without the attribute.
    """
    literal = re.escape(expected)
    match operator:
        case "exists":
            source = ""
        case "=":
            source = rf"\A{literal}\Z"
        case "|=":
            source = rf"\A{literal}(?:-|\Z)"
        case "~=" if expected and not _CSS_SPACE.search(expected):
            source = rf"(?<![^ \t\r\n]){literal}(?![^ \t\r\n])"
        case "^=" if expected:
            source = rf"\A{literal}"
        case "$=" if expected:
            source = rf"{literal}\Z"
        case "*=" if expected:
            source = literal
        case "~=" | "^=" | "$=" | "*=":
            source = "(?!)"  # never matches
        case _:
            return None
    return re.compile(source)


#: A test of one attribute: its name, a regex its value must contain a match of, and
#: whether the test is negated (``:not([...])``: no such attribute, or no match).
_Test = tuple[str, re.Pattern[str], bool]


def _passes(node: etree._Element, tests: Iterable[_Test]) -> bool:
    for name, pattern, negated in tests:
        value = node.get(name)
        if (value is not None and pattern.search(value) is not None) is negated:
            return False
    return True


@dataclass(frozen=True)
class Compound:
    """A selector that looks at the element alone: a tag (``None``: any) and tests,
    those that are not negated first."""

    tag: str | None
    tests: tuple[_Test, ...]


def to_compound(tree: Tree) -> Compound | None:
    """``tree`` as a :class:`Compound`, or ``None`` if it is not one.

    Matches do not depend on what else was dropped first, so a run of compounds can
    share one walk of the tree.  ``:not()`` of one attribute, class or id test is a
    test too (``img:not([src])``).  Not compounds here, and so left to XPath: anything
    with context (``:has()``, combinators, ``:first-of-type``, text), namespaces,
    attribute flags, ``!=``, and a bare ``*`` or only negated tests with no tag
    (nothing to index it by).
    """
    tests: list[_Test] = []
    node = tree
    while not isinstance(node, Element):
        negated = isinstance(node, Negation)
        test = _test(node.subselector if isinstance(node, Negation) else node, negated)
        if test is None:
            return None
        tests.append(test)
        node = node.selector
    if node.namespace is not None:
        return None
    tests.reverse()
    tests.sort(key=lambda test: test[2])  # stable: the first one not negated indexes
    if node.element is None and not (tests and not tests[0][2]):
        return None
    tag = node.element.lower() if node.element is not None else None
    return Compound(tag, tuple(tests))


def _test(node: Tree, negated: bool) -> _Test | None:
    """One simple selector (id, class or attribute, on any element) as a test."""
    if isinstance(node, Hash):
        name, operator, expected = "id", "=", node.id
    elif isinstance(node, Class):
        name, operator, expected = "class", "~=", node.class_name
    elif isinstance(node, Attrib) and node.namespace is None and node.flag is None:
        value = node.value.value if node.value is not None else ""
        assert isinstance(value, str)  # a STRING or IDENT token
        name, operator, expected = node.attrib.lower(), node.operator, value
    else:
        return None
    if negated and not (isinstance(node.selector, Element) and node.selector.element is None):
        return None  # :not(div.x) would be a test of the tag too
    pattern = _value_pattern(operator, expected)
    return None if pattern is None else (name, pattern, negated)


class _Rule:
    """The compounds of one tag (or of any tag) whose first test is on one attribute.

    The one-test compounds (nearly all of them: ``a[href*=...]``, ``.cls``) share one
    regex, so an element's attribute is searched once, however many rules it has.
    """

    def __init__(self, compounds: list[Compound]) -> None:
        alone = [compound.tests[0][1].pattern for compound in compounds if len(compound.tests) == 1]
        self._alone = re.compile("|".join(f"(?:{source})" for source in alone)) if alone else None
        self._more = [compound.tests for compound in compounds if len(compound.tests) > 1]

    def matches(self, node: etree._Element, value: str) -> bool:
        """Does ``node``, whose rule attribute holds ``value``, match a compound?"""
        if self._alone is not None and self._alone.search(value):
            return True
        return any(_passes(node, tests) for tests in self._more)


class LocalStep:
    """A run of :class:`Compound` selectors, matched in one Python walk of the body.

    As one XPath union, libxml2 evaluated every selector on every element (about 5 µs
    an element for the common rules).  Indexed by tag, and by the attribute a
    selector tests first, an element is only tried against rules that could match it;
    most elements cost a dict lookup or two.
    """

    def __init__(self, compounds: Iterable[Compound]) -> None:
        self._tags: set[str] = set()  # tags matched by their name alone
        self._negated: dict[str, list[tuple[_Test, ...]]] = {}  # tags with negated tests only
        grouped: dict[str, dict[str | None, list[Compound]]] = {}
        compounds = list(compounds)
        # When every selector names its tag, libxml2 skips the other elements for us.
        named = {compound.tag for compound in compounds if compound.tag is not None}
        self._walk = tuple(sorted(named)) if all(c.tag for c in compounds) else ()
        for compound in compounds:
            if compound.tests and not compound.tests[0][2]:
                by_tag = grouped.setdefault(compound.tests[0][0], {})
                by_tag.setdefault(compound.tag, []).append(compound)
            else:
                assert compound.tag is not None  # to_compound refuses a bare "*"
                if compound.tests:
                    self._negated.setdefault(compound.tag, []).append(compound.tests)
                else:
                    self._tags.add(compound.tag)
        self._rules = {
            name: {tag: _Rule(members) for tag, members in by_tag.items()}
            for name, by_tag in grouped.items()
        }

    def select(self, root: etree._Element) -> list[etree._Element]:
        """The matching elements below ``root``, in document order."""
        return [
            node
            for node in root.iterdescendants(*self._walk)
            if isinstance(node.tag, str) and self._matches(node, node.tag)
        ]

    def _matches(self, node: etree._Element, tag: str) -> bool:
        if tag in self._tags:
            return True
        negated = self._negated.get(tag)
        if negated is not None and any(_passes(node, tests) for tests in negated):
            return True
        for name in node.keys():  # noqa: SIM118 (iterating an element yields its children)
            rules = self._rules.get(name)
            if rules is None:
                continue
            value = node.get(name)
            assert value is not None  # one of its attributes
            for rule in (rules.get(tag), rules.get(None)):
                if rule is not None and rule.matches(node, value):
                    return True
        return False


class _ContextStep:
    """One selector that looks at context, as an XPath query on the whole document."""

    def __init__(self, query: etree.XPath) -> None:
        self._query = query

    def select(self, root: etree._Element) -> list[etree._Element]:
        """The matching elements below ``root``, in document order."""
        found = self._query(root.getroottree().getroot())
        assert isinstance(found, list)
        outside = {root, *root.iterancestors()}
        return [node for node in found if isinstance(node, etree._Element) and node not in outside]


_DropStep = LocalStep | _ContextStep
_STEP_CACHE: dict[tuple[str, ...], tuple[_DropStep, ...]] = {}


def _parsed(selectors: Iterable[str]) -> Iterator[tuple[Selector, Compound | None]]:
    """Each selector of ``selectors`` (a group counts as its members), with its
    :class:`Compound` when it is one."""
    for selector in selectors:
        for parsed in parse(selector):
            plain = parsed.pseudo_element is None
            yield parsed, to_compound(parsed.parsed_tree) if plain else None


def _context_step(parsed: Selector) -> _ContextStep:
    xpath = TRANSLATOR.selector_to_xpath(parsed, prefix="descendant-or-self::")
    return _ContextStep(etree.XPath(xpath))


_CHECK_CACHE: dict[tuple[tuple[str, ...], frozenset[str]], tuple[_DropStep, ...]] = {}


def check_steps(selectors: tuple[str, ...], attributes: frozenset[str]) -> tuple[_DropStep, ...]:
    """Steps that select something wherever ``drop_steps(selectors)`` would drop
    something, in a body whose attributes are all named in ``attributes``.

    For asking whether a body has anything left to drop, so the selectors' order is
    not kept (the body is the same for all of them when none selects anything), and a
    selector that needs an attribute the body cannot have is left out: on sanitized
    markup that is every ``class`` and ``id`` rule, most of them.
    """
    key = (selectors, attributes)
    steps = _CHECK_CACHE.get(key)
    if steps is not None:
        return steps
    built: list[_DropStep] = []
    local: list[Compound] = []
    for parsed, compound in _parsed(selectors):
        if compound is None:
            built.append(_context_step(parsed))
        elif all(name in attributes for name, _, negated in compound.tests if not negated):
            local.append(compound)
    if local:
        built.append(LocalStep(local))
    steps = tuple(built)
    if len(_CHECK_CACHE) < 256:
        _CHECK_CACHE[key] = steps
    return steps


def drop_steps(selectors: tuple[str, ...]) -> tuple[_DropStep, ...]:
    """Compile ``selectors`` once into as few steps as keeps their meaning.

    A run of compound selectors (the element alone) is one :class:`LocalStep`.  A
    selector that looks at context (``:has()``, ``+``, ``:first-of-type``, text) runs
    alone and after everything before it was dropped, as when selectors ran one by one.
    """
    steps = _STEP_CACHE.get(selectors)
    if steps is not None:
        return steps
    built: list[_DropStep] = []
    run: list[Compound] = []
    for parsed, compound in _parsed(selectors):
        if compound is not None:
            run.append(compound)
            continue
        if run:
            built.append(LocalStep(run))
            run = []
        built.append(_context_step(parsed))
    if run:
        built.append(LocalStep(run))
    steps = tuple(built)
    if len(_STEP_CACHE) < 256:
        _STEP_CACHE[selectors] = steps
    return steps
