"""Read and validate policy files, with errors that name the file, line and field.

YAML is parsed with PyYAML's safe composer; the node tree gives each key its
line, so a pydantic error on ``spec.pickle.mode`` can point at line 12.
Duplicate keys, which PyYAML would silently collapse, are errors too.
Not handled here: what the policy means (:mod:`weightguard.policy.rules`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from weightguard.errors import PolicyError
from weightguard.policy.schema import Policy

BUILTIN_POLICIES = ("default", "strict")

_Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A validated policy and where it came from."""

    policy: Policy
    origin: str
    sha256: str

    @property
    def name(self) -> str:
        """The policy's ``metadata.name``."""
        return self.policy.metadata.name


def load_policy(path: Path | None = None) -> LoadedPolicy:
    """Load ``path``; ``builtin:NAME`` or None (the default) load a policy shipped in the package.

    Raises:
        PolicyError: the file is unreadable, not YAML, or not a valid policy.
    """
    if path is None:
        return load_builtin("default")
    if str(path).startswith("builtin:"):
        return load_builtin(str(path).removeprefix("builtin:"))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file: {exc.strerror or exc}") from exc
    return parse_policy(data, str(path))


def load_builtin(name: str) -> LoadedPolicy:
    """Load one of the policies shipped inside the package (``default``, ``strict``)."""
    if name not in BUILTIN_POLICIES:
        raise PolicyError(f"no built-in policy named {name!r}", hint=f"choose one of {', '.join(BUILTIN_POLICIES)}")
    data = resources.files("weightguard.policy").joinpath("builtin", f"{name}.yaml").read_bytes()
    return parse_policy(data, f"builtin:{name}")


def parse_policy(data: bytes, origin: str) -> LoadedPolicy:
    """Validate policy bytes; ``origin`` names the file in error messages."""
    try:
        text = data.decode("utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{origin}: policy file is not UTF-8 text") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"{origin}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if node is None:
        raise PolicyError(f"{origin}: policy file is empty")
    lines: dict[_Path, int] = {}
    _index_lines(node, (), lines, origin)
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise PolicyError(f"{origin}:1: a policy must be a mapping with apiVersion, kind, metadata and spec")
    try:
        policy = Policy.model_validate(_stringify_dates_keys(raw))
    except ValidationError as exc:
        raise PolicyError(_describe(exc, origin, lines)) from exc
    return LoadedPolicy(policy=policy, origin=origin, sha256=hashlib.sha256(data).hexdigest())


def _stringify_dates_keys(value: Any) -> Any:
    # YAML turns keys like `2027-01-01` into dates; the schema only has string keys.
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: _stringify_dates_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_dates_keys(v) for v in value]
    return value


def _index_lines(node: yaml.Node, path: _Path, lines: dict[_Path, int], origin: str) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                raise PolicyError(
                    f"{origin}:{key_node.start_mark.line + 1}: duplicate key {key!r} in {_dotted(path) or 'the document'}"
                )
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _index_lines(value_node, (*path, key), lines, origin)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, i), lines, origin)


def _dotted(path: _Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(exc: ValidationError, origin: str, lines: dict[_Path, int]) -> str:
    problems = []
    for err in exc.errors():
        loc: _Path = tuple(err["loc"])
        line = None
        for cut in range(len(loc), -1, -1):
            line = lines.get(loc[:cut])
            if line is not None:
                break
        field = _dotted(loc) or "(document)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        problems.append(f"{origin}:{line or 1}: {field}: {msg}")
    return "invalid policy:\n  " + "\n  ".join(problems)
