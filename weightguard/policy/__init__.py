"""Policy: the verification policy file, its schema and its compiled rules.

The public names are re-exported lazily (PEP 562): importing a light part of
the package (``policy.codes`` for the rule catalogue, ``policy.base`` for the
report models) must not import yaml and build every policy model, which
``weightguard --help``, shell completion and ``rules`` would otherwise pay on
each start (``tests/cli/test_import_budget.py``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from weightguard.policy.load import LoadedPolicy, load_builtin, load_policy, parse_policy
    from weightguard.policy.schema import Policy

__all__ = ["LoadedPolicy", "Policy", "load_builtin", "load_policy", "parse_policy"]

_HOME = {
    "LoadedPolicy": "load",
    "load_builtin": "load",
    "load_policy": "load",
    "parse_policy": "load",
    "Policy": "schema",
}


def __getattr__(name: str) -> object:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value
