"""Read and validate policy files, with errors that name the file, line and field.

YAML is parsed with PyYAML's safe composer; the node tree gives each key its
line, so a pydantic error on ``spec.pickle.mode`` can point at line 12.
Duplicate keys, which PyYAML would silently collapse, are errors too.

Reading is bounded (issue 16, :class:`weightguard.limits.PolicyLimits`): the
file size; the nesting depth, checked while composing (PyYAML's composer
recurses); the number of aliases; recursive anchors (``&a [*a]``, which
PyYAML composes into a cyclic graph); and the node count with every alias
expanded, measured on the node graph in linear time before anything walks the
expanded tree, so a few hundred bytes of nested aliases (a "billion laughs")
fail in milliseconds instead of taking gigabytes. The document is parsed
once and constructed from the checked node graph. Each bound is a
:class:`PolicyError` naming the file and line.
Not handled here: what the policy means (:mod:`weightguard.policy.rules`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from weightguard.errors import PolicyError
from weightguard.limits import PolicyLimits
from weightguard.policy.layers import Loc, RawLayer, digest, locate, merge, rebase
from weightguard.policy.schema import API_VERSION, KIND, Policy

BUILTIN_POLICIES = ("default", "strict")
_MOST_PROBLEMS = 20  # a policy with thousands of bad entries is reported by its first few


@dataclass(frozen=True, slots=True)
class PolicyLayer:
    """One file (or built-in) a policy was composed from."""

    origin: str
    sha256: str


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A validated policy, where it came from, and the layers it was composed from.

    ``sha256`` is the file's for a one-file policy and the merged document's for
    several layers (:func:`weightguard.policy.layers.digest`); ``base`` is the
    folder relative paths in the policy are taken from (None: the working directory).
    """

    policy: Policy
    origin: str
    sha256: str
    layers: tuple[PolicyLayer, ...] = ()
    base: Path | None = None

    @property
    def name(self) -> str:
        """The policy's ``metadata.name``."""
        return self.policy.metadata.name

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the policy are taken from (the working directory for built-ins)."""
        return self.base if self.base is not None else Path.cwd()


PolicyArg = Path | str | Sequence[Path | str] | None


def load_policy(path: PolicyArg = None) -> LoadedPolicy:
    """Load one policy, or compose several layers in order (:mod:`weightguard.policy.layers`).

    Each path is a file or ``builtin:NAME``; None or no path at all is the built-in default.

    Raises:
        PolicyError: a layer is unreadable, not YAML, misplaced, or the result is not a valid policy.
    """
    # A lone str is one path (``"builtin:strict"``), never a sequence of one-letter layers.
    given = [] if path is None else [path] if isinstance(path, Path | str) else list(path)
    paths = [Path(p) for p in given]
    if not paths:
        return load_builtin("default")
    if len(paths) == 1:
        return parse_policy(read_policy_bytes(paths[0]), str(paths[0]), folder=_folder(paths[0]))
    if len(paths) > PolicyLimits().max_layers:
        raise PolicyError(f"more than {PolicyLimits().max_layers} policy layers", hint="merge some of the files")
    return compose([read_layer(read_policy_bytes(p), str(p), folder=_folder(p)) for p in paths])


def load_builtin(name: str) -> LoadedPolicy:
    """Load one of the policies shipped inside the package (``default``, ``strict``)."""
    return parse_policy(_builtin_bytes(name), f"builtin:{name}")


def parse_policy(
    data: bytes,
    origin: str,
    limits: PolicyLimits = PolicyLimits(),  # noqa: B008
    *,
    folder: Path | None = None,
) -> LoadedPolicy:
    """Validate policy bytes; ``origin`` names the file in error messages."""
    layer = read_layer(data, origin, limits, folder=folder)
    if layer.partial:
        raise PolicyError(
            f"{origin}:1: an overlay (no apiVersion/kind) cannot stand alone",
            hint=f"give a complete policy or a built-in first: --policy builtin:default --policy {origin}",
        )
    policy = _validate(layer.raw, lambda loc: f"{origin}:{_line(layer.lines, loc)}")
    return LoadedPolicy(policy, origin, layer.sha256, (PolicyLayer(origin, layer.sha256),), folder)


def compose(layers: Sequence[RawLayer]) -> LoadedPolicy:
    """Merge ``layers`` in order and validate the result as one policy."""
    first = layers[0]
    if first.partial:
        raise PolicyError(
            f"{first.origin}:1: the first policy layer is an overlay (no apiVersion/kind)",
            hint="start with a complete policy or a built-in, e.g. --policy builtin:default",
        )
    for layer in layers:
        for key, wanted in (("apiVersion", API_VERSION), ("kind", KIND)):
            if key in layer.raw and layer.raw[key] != wanted:
                line = layer.lines.get((key,), 1)
                raise PolicyError(f"{layer.origin}:{line}: {key}: expected {wanted!r}, not {layer.raw[key]!r}")
    base = next((layer.folder for layer in layers if layer.folder is not None), None)
    rebased = [rebase(layer, base) for layer in layers]
    merged = merge(rebased)
    policy = _validate(merged, lambda loc: locate(loc, merged, rebased))
    origin = " + ".join(layer.origin for layer in layers)
    return LoadedPolicy(
        policy, origin, digest(merged), tuple(PolicyLayer(layer.origin, layer.sha256) for layer in layers), base
    )


def read_layer(
    data: bytes,
    origin: str,
    limits: PolicyLimits = PolicyLimits(),  # noqa: B008
    *,
    folder: Path | None = None,
) -> RawLayer:
    """Parse one layer within the bounds (size, depth, aliases, expanded nodes); no schema check yet."""
    if len(data) > limits.max_bytes:
        raise PolicyError(
            f"{origin}: policy file is larger than {limits.max_bytes} bytes",
            hint="a policy is a short YAML document; check that this is the right file",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{origin}: policy file is not UTF-8 text") from exc
    loader = _BoundedLoader(text, origin, limits)
    try:
        node = loader.get_single_node()
        if node is None:
            raise PolicyError(f"{origin}: policy file is empty")
        _check_expansion(node, origin, limits)
        raw = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"{origin}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    _index_lines(node, (), lines, origin)
    if not isinstance(raw, dict):
        raise PolicyError(f"{origin}:1: a policy must be a mapping with apiVersion, kind, metadata and spec")
    return RawLayer(origin, hashlib.sha256(data).hexdigest(), _stringify_dates_keys(raw), lines, folder)


def read_policy_bytes(path: Path) -> bytes:
    """The bytes of policy file ``path`` (or ``builtin:NAME``), never more than the size bound plus one.

    Raises:
        PolicyError: the file cannot be read.
    """
    if str(path).startswith("builtin:"):
        return _builtin_bytes(str(path).removeprefix("builtin:"))
    most = PolicyLimits().max_bytes
    try:
        with path.open("rb") as fh:
            return fh.read(most + 1)  # never more than the bound, whatever the file is (/dev/zero)
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file: {exc.strerror or exc}") from exc


def _folder(path: Path) -> Path | None:
    return None if str(path).startswith("builtin:") else path.parent


def _builtin_bytes(name: str) -> bytes:
    if name not in BUILTIN_POLICIES:
        raise PolicyError(f"no built-in policy named {name!r}", hint=f"choose one of {', '.join(BUILTIN_POLICIES)}")
    return resources.files("weightguard.policy").joinpath("builtin", f"{name}.yaml").read_bytes()


def _validate(raw: dict[str, Any], where: Callable[[Loc], str]) -> Policy:
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(_describe(exc, where)) from exc


def _line(lines: dict[Loc, int], loc: Loc) -> int:
    for cut in range(len(loc), -1, -1):
        line = lines.get(loc[:cut])
        if line is not None:
            return line
    return 1


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the composer bounded in depth and in aliases."""

    def __init__(self, text: str, origin: str, limits: PolicyLimits) -> None:
        super().__init__(text)
        self._origin = origin
        self._limits = limits
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > self._limits.max_aliases:
                raise PolicyError(f"{self._origin}:{line}: more than {self._limits.max_aliases} YAML aliases")
        self._depth += 1
        if self._depth > self._limits.max_depth:
            raise PolicyError(f"{self._origin}:{line}: YAML nested deeper than {self._limits.max_depth} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_expansion(root: yaml.Node, origin: str, limits: PolicyLimits) -> None:
    """Refuse a cyclic node graph, and one whose alias-expanded tree is too big or too deep.

    Sizes and depths are memoised per node, so shared (aliased) nodes are measured once:
    linear in the graph, whatever the expanded size. The recursion is bounded by
    ``max_depth`` (checked on the way down).
    """
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, expanded depth)
    open_nodes: set[int] = set()

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        line = node.start_mark.line + 1
        if depth > limits.max_depth:
            raise PolicyError(f"{origin}:{line}: YAML nested deeper than {limits.max_depth} levels (aliases expanded)")
        key = id(node)
        if key in measured:
            return measured[key]
        if key in open_nodes:
            raise PolicyError(f"{origin}:{line}: recursive YAML anchor (an alias inside the node it names)")
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        open_nodes.add(key)
        size, deepest = 1, 0
        for child in children:
            child_size, child_depth = measure(child, depth + 1)
            if depth + child_depth > limits.max_depth:  # a shared node measured higher up, met deeper here
                raise PolicyError(
                    f"{origin}:{line}: YAML nested deeper than {limits.max_depth} levels (aliases expanded)"
                )
            size += child_size
            deepest = max(deepest, child_depth)
            if size > limits.max_nodes:
                raise PolicyError(
                    f"{origin}:{line}: more than {limits.max_nodes} YAML nodes with aliases expanded",
                    hint="a policy this large is almost certainly an alias bomb; write the values out",
                )
        open_nodes.discard(key)
        measured[key] = (size, deepest + 1)
        return measured[key]

    measure(root, 1)


def _stringify_dates_keys(value: Any) -> Any:
    # YAML turns keys like `2027-01-01` into dates; the schema only has string keys.
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: _stringify_dates_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_dates_keys(v) for v in value]
    return value


def _index_lines(node: yaml.Node, path: Loc, lines: dict[Loc, int], origin: str) -> None:
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


def _dotted(path: Loc) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(exc: ValidationError, where: Callable[[Loc], str]) -> str:
    problems = []
    errors = exc.errors()
    for err in errors[:_MOST_PROBLEMS]:
        loc: Loc = tuple(err["loc"])
        field = _dotted(loc) or "(document)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        problems.append(f"{where(loc)}: {field}: {msg}")
    if len(errors) > _MOST_PROBLEMS:
        problems.append(f"... and {len(errors) - _MOST_PROBLEMS} more")
    return "invalid policy:\n  " + "\n  ".join(problems)
