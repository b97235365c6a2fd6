"""Chat templates judged by Jinja's own parser and an allowlist of what they may do.

A chat template (GGUF ``tokenizer.chat_template*``, ``chat_template`` in a
``tokenizer_config.json``, a ``chat_template.jinja`` file) is Jinja source
that the loader renders: llama-cpp-python and transformers with
``ImmutableSandboxedEnvironment``, other tools with a plain
``jinja2.Environment``, where ``{{ ''.__class__.__mro__ }}`` reaches Python
itself (CVE-2024-34359). A search of the source text cannot follow names
that Jinja computes while rendering (``''['__cla' ~ 'ss__']``,
``x|attr(name)``, ``map(attribute=...)``), so the template is parsed with
``jinja2.Environment().parse`` (never compiled or rendered) and its syntax
tree is walked with an allowlist:

* attribute names are constants that Jinja's sandbox would allow (no ``_``
  prefix, none of its internal attributes); item keys are safe constants,
  slices, or numbers (arithmetic on numbers, ``length``, ``loop.index0``, and
  variables only ever set to such numbers): a string computed at render time
  can never be used as a name;
* calls go only to a few globals (``namespace``, ``dict``, ``range`` with
  small constants, ``raise_exception``, ``strftime_now``), the template's
  own macros, and string/dict/list methods that real templates call; names
  the allowlist lets templates call cannot be rebound;
* a method a template may not call cannot be read as a value either
  (``x.zfill``, ``x['format']``): a dict literal ``{'strip': s.format}``
  would make ``d.strip(...)`` call it, since Jinja's getattr falls back to
  the item. So every callable a template can hold, whatever the receiver it
  is called through, is one it could call directly; ``str.format`` (which
  follows ``{0.__class__}`` paths) is one it may not;
* filters and tests are Jinja's built-ins minus ``attr``; the ones that take
  an attribute name (``map``, ``selectattr``, ``rejectattr``, ``sort``,
  ``groupby``, ``unique``, ``sum``, ``min``, ``max``, ``join``) are judged
  as a direct read of each part of that name, which must be a constant;
  the ones that take a filter or test name must be given a reviewed one;
* ``self``, ``lipsum``, ``cycler``, ``joiner``, ``{% import %}``,
  ``{% include %}``, ``{% extends %}``, ``{% block %}`` and every node type
  not listed are refused.

A template that does not parse is refused too: Python renderers would fail on
it, and a parser that disagrees with ours is exactly what an attacker wants.
The parser has the ``loopcontrols`` extension and transformers'
``{% generation %}`` block, as the renderers do. Hand-written on purpose:
Jinja's sandbox judges objects at render time, and rendering untrusted
templates in-process is what this module exists to avoid.

Not handled here: templates for renderers with other delimiters or line
statements, llama.cpp's own C++ renderer (which has no Python objects), and
denial of service by rendering cost beyond huge ``range``/``**``/``*`` constants.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache

from jinja2 import Environment, TemplateSyntaxError, nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser

from weightguard.formats.jinja_allowlist import (
    ALLOWED_NODES,
    ATTRIBUTE_ARGS,
    CALLABLE_GLOBALS,
    FILTERS,
    FORBIDDEN_NAMES,
    LOOP_NUMBERS,
    MAX_ISSUES,
    MAX_RANGE,
    METHODS,
    NAME_ARGS,
    NUMERIC_FILTERS,
    TESTS,
    UNCALLABLE_METHODS,
    refused_attribute_path,
    unsafe_attribute,
)


@dataclass(frozen=True, slots=True)
class TemplateIssue:
    """One construct the allowlist refuses, with its line in the template."""

    construct: str
    line: int


@dataclass(frozen=True, slots=True)
class TemplateVerdict:
    """What the check found: ``syntax_error`` when the template does not parse, else the issues."""

    issues: tuple[TemplateIssue, ...] = ()
    syntax_error: str | None = None

    @property
    def safe(self) -> bool:
        """True when the template parsed and nothing in it was refused."""
        return self.syntax_error is None and not self.issues

    def summary(self) -> str:
        """One line for a finding's message."""
        if self.syntax_error is not None:
            return f"does not parse as Jinja: {self.syntax_error}"
        shown = "; ".join(f"line {i.line}: {i.construct}" for i in self.issues[:10])
        return f"uses {shown}"


class GenerationTag(Extension):
    """transformers' ``{% generation %}...{% endgeneration %}`` block, parsed as a plain scope."""

    tags = {"generation"}  # noqa: RUF012 - the attribute Jinja's Extension reads

    def parse(self, parser: Parser) -> nodes.Node:
        """Parse the block's body; it renders as if the tags were not there."""
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


@cache
def _environment() -> Environment:
    # Parse only: the environment's filters and globals are never used.
    return Environment(extensions=[loopcontrols, GenerationTag], trim_blocks=True, lstrip_blocks=True)  # noqa: S701


def check_template(source: str) -> TemplateVerdict:
    """Parse ``source`` with Jinja (never render it) and return what the allowlist refuses."""
    try:
        tree = _environment().parse(source)
    except TemplateSyntaxError as exc:
        return TemplateVerdict(syntax_error=f"line {exc.lineno}: {exc.message}"[:300])
    except RecursionError:
        return TemplateVerdict(syntax_error="nested deeper than the parser can follow")
    except (ValueError, OverflowError) as exc:  # e.g. an integer literal past int_max_str_digits
        return TemplateVerdict(syntax_error=f"the lexer refused a literal: {str(exc)[:200]}")
    walker = _Walker(tree)
    return TemplateVerdict(issues=tuple(walker.run()))


def _all_nodes(root: nodes.Node) -> Iterator[nodes.Node]:
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.iter_child_nodes())


class _Walker:
    """Walks the tree once, iteratively (a hostile template may nest deeply)."""

    def __init__(self, tree: nodes.Template) -> None:
        self.tree = tree
        self.issues: list[TemplateIssue] = []
        self.macros: set[str] = set()
        self.numeric_names: set[str] = set()
        self.numeric_ns_attrs: set[str] = set()
        self.namespaces: set[str] = set()
        self.assigned: set[str] = set()
        self.tested: set[int] = set()

    def run(self) -> list[TemplateIssue]:
        self._dataflow()
        stack: list[nodes.Node] = [self.tree]
        while stack and len(self.issues) < MAX_ISSUES:
            node = stack.pop()
            stack.extend(reversed(self._visit(node)))
        return self.issues

    def refuse(self, node: nodes.Node, construct: str) -> None:
        self.issues.append(TemplateIssue(construct, getattr(node, "lineno", 0) or 0))

    # --- data flow: which variables only ever hold numbers -----------------------------
    def _dataflow(self) -> None:
        values: dict[str, list[nodes.Node | None]] = {}
        ns_values: dict[str, list[nodes.Node | None]] = {}
        for node in _all_nodes(self.tree):
            if isinstance(node, nodes.Macro):
                self.macros.add(node.name)
                for arg in node.args:
                    values.setdefault(arg.name, []).append(None)  # set by whoever calls the macro
            elif isinstance(node, nodes.Assign):
                _collect(node.target, node.node, values, ns_values)
            elif isinstance(node, nodes.AssignBlock):
                _collect(node.target, None, values, ns_values)
            elif isinstance(node, nodes.With):
                for target in node.targets:
                    _collect(target, None, values, ns_values)
            elif isinstance(node, nodes.For):
                # An element of range() is a number (range's own arguments are checked to be numbers).
                _collect(node.target, nodes.Const(0) if _range_call(node.iter) else None, values, ns_values)
            elif isinstance(node, nodes.Call) and _is_name(node.node, "namespace"):
                for kw in node.kwargs:
                    ns_values.setdefault(kw.key, []).append(kw.value)
                if node.args or node.dyn_args or node.dyn_kwargs:  # namespace(mapping): attributes unknown
                    ns_values.setdefault("", []).append(None)
        self.assigned = set(values)
        self.namespaces = {
            name
            for name, vs in values.items()
            if all(isinstance(v, nodes.Call) and _is_name(v.node, "namespace") for v in vs)
        }
        self.numeric_names = set(values)
        self.numeric_ns_attrs = set() if "" in ns_values else set(ns_values)
        self._settle(values, ns_values)

    def _settle(
        self, values: dict[str, list[nodes.Node | None]], ns_values: dict[str, list[nodes.Node | None]]
    ) -> None:
        """Find the greatest fixed point by worklist.

        A variable with a non-numeric assignment is dropped, then only the variables assigned
        from it are checked again: linear in the template, where repeated passes were quadratic.
        """
        assignments = {("n", k): v for k, v in values.items()} | {("a", k): v for k, v in ns_values.items()}
        users: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for key, exprs in assignments.items():
            for expr in exprs:
                for ref in _references(expr):
                    users.setdefault(ref, set()).add(key)
        pending = list(assignments)
        while pending:
            key = pending.pop()
            kind, name = key
            held = self.numeric_names if kind == "n" else self.numeric_ns_attrs
            if name in held and not all(v is not None and self.numeric(v) for v in assignments[key]):
                held.discard(name)
                pending.extend(users.get(key, ()))

    def numeric(self, expr: nodes.Node) -> bool:
        """True when ``expr`` can only be a number (or fail): never a computed string."""
        if isinstance(expr, nodes.Const):
            return isinstance(expr.value, int | float) or expr.value is None
        if isinstance(expr, nodes.Name):
            return expr.name in self.numeric_names
        if isinstance(expr, nodes.Getattr) and isinstance(expr.node, nodes.Name):
            if expr.node.name == "loop" and "loop" not in self.assigned:
                return expr.attr in LOOP_NUMBERS
            return expr.node.name in self.namespaces and expr.attr in self.numeric_ns_attrs
        if isinstance(expr, nodes.Filter):
            return expr.name in NUMERIC_FILTERS
        if isinstance(expr, nodes.Add | nodes.Sub):
            # str + int and str - int raise: one numeric side makes the result a number or an error.
            return self.numeric(expr.left) or self.numeric(expr.right)
        if isinstance(expr, nodes.BinExpr):
            return self.numeric(expr.left) and self.numeric(expr.right)
        if isinstance(expr, nodes.Neg | nodes.Pos):
            return self.numeric(expr.node)
        if isinstance(expr, nodes.CondExpr):
            return self.numeric(expr.expr1) and (expr.expr2 is None or self.numeric(expr.expr2))
        return False

    # --- the allowlist ---------------------------------------------------------------------
    def _visit(self, node: nodes.Node) -> Sequence[nodes.Node]:
        if not isinstance(node, ALLOWED_NODES):
            self.refuse(node, f"{type(node).__name__} (not in the allowlist)")
            return ()
        children = list(node.iter_child_nodes())
        if isinstance(node, nodes.Name):
            if node.ctx == "load" and (node.name in FORBIDDEN_NAMES or node.name.startswith("__")):
                self.refuse(node, f"name {node.name!r}")
            elif node.ctx != "load" and (node.name in CALLABLE_GLOBALS | FORBIDDEN_NAMES or node.name in self.macros):
                # Rebinding a name the allowlist lets templates call would let them call anything.
                self.refuse(node, f"assignment to {node.name!r}")
        elif isinstance(node, nodes.NSRef):
            if unsafe_attribute(node.attr):
                self.refuse(node, f"namespace attribute {node.attr!r}")
        elif isinstance(node, nodes.Getattr):
            if unsafe_attribute(node.attr):
                self.refuse(node, f"attribute {node.attr!r}")
            elif node.attr in UNCALLABLE_METHODS and id(node) not in self.tested:
                self.refuse(node, f"attribute {node.attr!r} taken as a value")
        elif isinstance(node, nodes.Getitem):
            self._key(node, node.arg)
            # Jinja's getitem falls back to getattr: ''['format'] is str.format.
            if _const_str(node.arg) in UNCALLABLE_METHODS and id(node) not in self.tested:
                self.refuse(node, f"item {_const_str(node.arg)!r} taken as a value")
        elif isinstance(node, nodes.Call):
            return self._call(node, children)
        elif isinstance(node, nodes.Filter):
            self._filter(node)
        elif isinstance(node, nodes.Test):
            if node.name not in TESTS:
                self.refuse(node, f"test {node.name!r}")
            self.tested.add(id(node.node))  # "x.format is defined" reads a schema field, it calls nothing
        elif isinstance(node, nodes.Pow | nodes.Mul):
            self._big_operands(node)
        return children

    def _key(self, node: nodes.Node, key: nodes.Expr) -> None:
        if isinstance(key, nodes.Slice):
            parts = [p for p in (key.start, key.stop, key.step) if p is not None]
            if not all(self.numeric(p) for p in parts):
                self.refuse(node, "slice bound that is not a number")
            return
        if isinstance(key, nodes.Const) and isinstance(key.value, str):
            if unsafe_attribute(key.value):
                self.refuse(node, f"item {key.value!r}")
            return
        if not self.numeric(key):
            self.refuse(node, "item key computed at render time")

    def _call(self, node: nodes.Call, children: list[nodes.Node]) -> Sequence[nodes.Node]:
        callee = node.node
        if isinstance(callee, nodes.Name):
            if callee.name not in CALLABLE_GLOBALS and callee.name not in self.macros:
                self.refuse(node, f"call of {callee.name!r}")
            if callee.name == "range":
                self._range(node)
            return [c for c in children if c is not callee]
        if isinstance(callee, nodes.Getattr) and not unsafe_attribute(callee.attr):
            if callee.attr not in METHODS:
                self.refuse(node, f"call of method {callee.attr!r}")
            return [c for c in children if c is not callee] + [callee.node]
        self.refuse(node, "call of a computed value")
        return children

    def _range(self, node: nodes.Call) -> None:
        if node.kwargs or node.dyn_args or node.dyn_kwargs or not all(self.numeric(a) for a in node.args):
            self.refuse(node, "range() of something other than numbers")
        for arg in node.args:
            value = _fold(arg)
            if value is not None and abs(value) > MAX_RANGE:
                self.refuse(node, f"range() of {value} (more than {MAX_RANGE})")

    def _big_operands(self, node: nodes.BinExpr) -> None:
        # Rendering cost only (no sandbox limits it either): real templates never need these.
        if isinstance(node, nodes.Pow):
            self.refuse(node, "** (power)")
            return
        for side in (node.left, node.right):
            value = _const_number(side)
            if value is not None and abs(value) > MAX_RANGE:
                self.refuse(node, f"* with {value} (more than {MAX_RANGE})")
            if isinstance(side, nodes.Mul | nodes.Pow):
                self.refuse(node, "* of a product (a string repeated beyond any limit)")

    def _filter(self, node: nodes.Filter) -> None:
        name, args = node.name, node.args
        if name not in FILTERS:
            self.refuse(node, f"filter {name!r}")
            return
        if name in ATTRIBUTE_ARGS:
            index, keyword = ATTRIBUTE_ARGS[name]
            keywords: list[nodes.Node] = list(node.kwargs)  # Keyword nodes (jinja's annotation says Pair)
            given = [kw.value for kw in keywords if isinstance(kw, nodes.Keyword) and kw.key == keyword]
            if index is not None and len(args) > index:
                given.append(args[index])
            for value in given:
                reason = refused_attribute_path(value)
                if reason is not None:
                    self.refuse(node, f"|{name} reading {reason}")
        if name in NAME_ARGS:
            index, allowed = NAME_ARGS[name]
            if len(args) > index:
                named = args[index]
                if not (isinstance(named, nodes.Const) and named.value in allowed):
                    self.refuse(node, f"|{name} applying something other than a reviewed filter or test")
                elif name == "map" and len(args) > index + 1:
                    self.refuse(node, "|map passing arguments to the filter it applies")
        dynamic = node.dyn_args is not None or node.dyn_kwargs is not None
        if dynamic and (name in ATTRIBUTE_ARGS or name in NAME_ARGS):
            self.refuse(node, f"|{name} with *args or **kwargs")


def _references(expr: nodes.Node | None) -> Iterator[tuple[str, str]]:
    """The variables and namespace attributes an expression reads (what its numeric-ness depends on)."""
    if expr is None:
        return
    for node in _all_nodes(expr):
        if isinstance(node, nodes.Name):
            yield ("n", node.name)
        elif isinstance(node, nodes.Getattr):
            yield ("a", node.attr)


def _collect(
    target: nodes.Node,
    value: nodes.Node | None,
    values: dict[str, list[nodes.Node | None]],
    ns_values: dict[str, list[nodes.Node | None]],
) -> None:
    if isinstance(target, nodes.NSRef):
        ns_values.setdefault(target.attr, []).append(value)
    elif isinstance(target, nodes.Name):
        values.setdefault(target.name, []).append(value)
    else:  # tuple unpacking: the parts are not known
        for name in _all_nodes(target):
            if isinstance(name, nodes.Name):
                values.setdefault(name.name, []).append(None)


def _const_number(expr: nodes.Node) -> int | float | None:
    if isinstance(expr, nodes.Neg | nodes.Pos):
        return _const_number(expr.node)
    if isinstance(expr, nodes.Const) and isinstance(expr.value, int | float) and not isinstance(expr.value, bool):
        return expr.value
    return None


def _fold(expr: nodes.Node) -> int | float | None:
    """The value of a constant arithmetic expression (no ``**``: refused on its own), else None."""
    value = _const_number(expr)
    if value is not None or not isinstance(expr, nodes.Add | nodes.Sub | nodes.Mul):
        return value
    left, right = _fold(expr.left), _fold(expr.right)
    if left is None or right is None:
        return None
    if isinstance(expr, nodes.Add):
        return left + right
    return left - right if isinstance(expr, nodes.Sub) else left * right


def _const_str(expr: nodes.Node) -> str | None:
    return expr.value if isinstance(expr, nodes.Const) and isinstance(expr.value, str) else None


def _is_name(expr: nodes.Node, name: str) -> bool:
    return isinstance(expr, nodes.Name) and expr.name == name


def _range_call(expr: nodes.Node) -> bool:
    return isinstance(expr, nodes.Call) and _is_name(expr.node, "range")
