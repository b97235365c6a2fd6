"""The allowlist chat templates are judged by: names, methods, filters, tests and node types.

Read by :mod:`weightguard.formats.jinja_template`, which explains the rules.
Every entry is something published chat templates use (or Jinja's built-in
filters and tests minus ``attr``); growing a list widens what an attacker may
reach, so each addition needs a reason. Not handled here: walking templates.
"""

from __future__ import annotations

import types

from jinja2 import nodes
from jinja2.runtime import LoopContext
from jinja2.utils import Namespace
from markupsafe import Markup

MAX_RANGE = 100_000  # jinja2.sandbox.MAX_RANGE: the largest range the sandbox renders
MAX_ISSUES = 20

# Attributes Jinja's sandbox refuses on some object (jinja2.sandbox.is_internal_attribute),
# plus Python 2 names that its older versions listed; anything starting with "_" is refused too.
INTERNAL_ATTRIBUTES = frozenset(
    {
        "mro",
        "gi_code",
        "gi_frame",
        "gi_yieldfrom",
        "cr_code",
        "cr_frame",
        "cr_await",
        "ag_code",
        "ag_frame",
        "ag_await",
        "func_code",
        "func_globals",
        "func_closure",
        "func_defaults",
        "im_func",
        "im_self",
        "im_class",
        "tb_frame",
        "tb_next",
        "f_back",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_code",
    }
)
# Globals a template may call; ``range`` only with small arguments.
CALLABLE_GLOBALS = frozenset({"namespace", "dict", "range", "raise_exception", "strftime_now", "caller"})
# Names that are never needed and lead to Python objects (the CVE-2024-34359 gadgets).
FORBIDDEN_NAMES = frozenset({"self", "lipsum", "cycler", "joiner", "range", "namespace", "dict"})
# str.format and format_map follow attribute paths inside the format string ("{0.__class__}"), which
# Jinja's sandbox intercepts and a plain Environment does not; a template may test for a "format" key
# (JSON schema) but never hold or call these methods (a dict {'strip': s.format} would make .strip() one).
FORMATTERS = frozenset({"format", "format_map"})
# Methods real chat templates call on strings, dicts, lists, namespaces and ``loop``.
METHODS = frozenset(
    """
    strip lstrip rstrip split rsplit splitlines startswith endswith upper lower title capitalize replace
    find rfind index count join items keys values get append extend cycle changed isdigit isalpha isspace
    """.split()  # noqa: SIM905 - a word list reads better than quoted strings
)
# Every public method a value in a rendered template can have: str (and Markup), dict, list, tuple,
# numbers, range, the generators filters return, Jinja's loop and namespace objects. Read as a value
# instead of called, such a name yields a bound method, which a template can store in a dict and call
# through an allowed name ({'strip': s.zfill} makes d.strip() call zfill: Jinja's getattr falls back to
# the item). So a method a template may not call may not be read as a value either; then every callable
# a template can hold is one it could call directly.
BUILTIN_METHODS = frozenset(
    name
    for kind in (str, Markup, dict, list, tuple, int, float, range, types.GeneratorType, LoopContext, Namespace)
    for name in dir(kind)
    if not name.startswith("_") and callable(getattr(kind, name, None))
)
UNCALLABLE_METHODS = (BUILTIN_METHODS - METHODS) | FORMATTERS
# Jinja's built-in filters except ``attr``; the attribute-taking ones are checked further below.
FILTERS = frozenset(
    """
    abs batch capitalize center count d default dictsort e escape filesizeformat first float forceescape
    format groupby indent int items join last length list lower map max min pprint random reject rejectattr
    replace reverse round safe select selectattr slice sort string striptags sum title tojson trim truncate
    unique upper urlencode urlize wordcount wordwrap xmlattr
    """.split()  # noqa: SIM905
)
TESTS = frozenset(
    """
    != < <= == > >= boolean callable defined divisibleby eq equalto escaped even false filter float ge
    greaterthan gt in integer iterable le lessthan lower lt mapping ne none number odd sameas sequence
    string test true undefined upper
    """.split()  # noqa: SIM905
)
# filter -> (positional index of its attribute argument or None, keyword)
ATTRIBUTE_ARGS: dict[str, tuple[int | None, str]] = {
    "map": (None, "attribute"),
    "selectattr": (0, "attribute"),
    "rejectattr": (0, "attribute"),
    "groupby": (0, "attribute"),
    "sort": (2, "attribute"),
    "unique": (1, "attribute"),
    "min": (1, "attribute"),
    "max": (1, "attribute"),
    "sum": (0, "attribute"),
    "join": (1, "attribute"),
}
# Filters that take a filter or test *name* as a positional argument: (index, names allowed).
SIMPLE_FILTERS = frozenset(
    """
    trim lower upper string int float length count tojson title capitalize e escape first last list abs round
    striptags safe default d
    """.split()  # noqa: SIM905
)
NAME_ARGS: dict[str, tuple[int, frozenset[str]]] = {
    "map": (0, SIMPLE_FILTERS),
    "select": (0, TESTS),
    "reject": (0, TESTS),
    "selectattr": (1, TESTS),
    "rejectattr": (1, TESTS),
}
NUMERIC_FILTERS = frozenset({"length", "count", "int", "float", "round", "abs", "wordcount"})
LOOP_NUMBERS = frozenset({"index", "index0", "revindex", "revindex0", "length", "depth", "depth0"})
# Statement and expression nodes a template may contain; anything else is refused.
ALLOWED_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.Const, nodes.Name, nodes.NSRef, nodes.For,
    nodes.If, nodes.Assign, nodes.AssignBlock, nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.With,
    nodes.Scope, nodes.Continue, nodes.Break, nodes.Getattr, nodes.Getitem, nodes.Slice, nodes.Call,
    nodes.Keyword, nodes.Filter, nodes.Test, nodes.Concat, nodes.CondExpr, nodes.Compare, nodes.Operand,
    nodes.And, nodes.Or, nodes.Not, nodes.Neg, nodes.Pos, nodes.Add, nodes.Sub, nodes.Mul, nodes.Div,
    nodes.FloorDiv, nodes.Mod, nodes.Pow, nodes.List, nodes.Tuple, nodes.Dict, nodes.Pair,
)  # fmt: skip


def unsafe_attribute(name: str) -> bool:
    """True for an attribute Jinja's sandbox would refuse (``_`` prefix or an internal attribute)."""
    return name.startswith("_") or name in INTERNAL_ATTRIBUTES


def refused_attribute_path(value: nodes.Expr) -> str | None:
    """Why an attribute argument (``map(attribute=...)``, ``selectattr``, ``sort``...) is refused, or None.

    The argument names attributes the filter reads, so it is judged like a direct attribute read of
    each name: a constant whose every part is safe and no method a template may not call (a bound
    ``str.format`` out of ``map(attribute='format')`` follows ``{0.__class__}`` paths when called).
    Jinja's ``make_attrgetter`` splits on "." and ``make_multi_attrgetter`` (``sort``) on "," first,
    then reads each part with getitem/getattr.
    """
    if not isinstance(value, nodes.Const):
        return "an attribute computed at render time"
    if isinstance(value.value, int) and not isinstance(value.value, bool):
        return None
    if not isinstance(value.value, str):
        return "an attribute that is not a string or a number"
    for part in value.value.replace(",", ".").split("."):
        if part.isdigit():
            continue
        if not part or unsafe_attribute(part):
            return f"attribute {part!r}"
        if part in UNCALLABLE_METHODS:
            return f"attribute {part!r} (a method taken as a value)"
    return None
