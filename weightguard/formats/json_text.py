"""JSON configs and text: strict parsing, and configs that pull in custom code.

A Hugging Face ``config.json`` or ``tokenizer_config.json`` with an
``auto_map`` (or ``custom_pipelines``) only loads with
``trust_remote_code=True``, which imports and runs Python files from the
repository, or, with ``"org/repo--module.Class"`` references, from another
repository. The decision is made from content, never from the file name.
A JSON document shaped like a Keras model config (an unzipped ``.keras``) is
checked like one. Duplicate keys are reported because readers disagree on
which value wins. Text files carry no loadable content: nothing to report.

Not handled here: the Python files ``auto_map`` points at (they are scanned,
or refused, as files of their own) and JSON nested in other formats.
"""

from __future__ import annotations

from collections.abc import Iterator

from weightguard.analysis.interface import Location, ScanContext
from weightguard.findings import Finding, Rule
from weightguard.formats import header_codes as codes
from weightguard.formats._json import parse_json
from weightguard.formats.interface import FileFormat
from weightguard.formats.keras import check_keras_objects
from weightguard.sources.interface import ByteSource

_CODE_KEYS = ("auto_map", "custom_pipelines")


class JsonAnalyzer:
    """Analyzer for JSON configs (and plain text, which needs no findings)."""

    name = "json"
    formats = frozenset({FileFormat.JSON, FileFormat.TEXT})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield findings for malformed or duplicated JSON and configs needing remote code."""
        ctx.check_time()
        if source.read_at(0, 4096).lstrip()[:1] not in (b"{", b"["):
            return  # plain text: nothing in it is loaded as code
        if source.size > ctx.limits.max_header_bytes:
            limit = ctx.limits.max_header_bytes
            yield _at(codes.CFG_TOO_LARGE, where, f"{source.size} bytes > max_header_bytes {limit}", size=source.size)
            return
        data = source.read_at(0, source.size)
        parsed = parse_json(data, allow_constants=True)  # Python's json writer emits NaN in configs
        if not parsed.ok:
            yield _at(codes.CFG_MALFORMED, where, f"not strict JSON: {parsed.error}")
            return
        if parsed.duplicates:
            keys = ", ".join(repr(k) for k in parsed.duplicates)
            yield _at(codes.CFG_DUPLICATE_KEY, where, f"keys appear more than once: {keys}", keys=keys)
        value = parsed.value
        if not isinstance(value, dict):
            return
        yield from _remote_code(value, where)
        # Inside an archive the container analyzer checks a Keras config.json itself
        # (check_keras_config); checking it here too would report every layer twice.
        if where.depth == 0 and isinstance(value.get("class_name"), str) and "config" in value:
            yield from check_keras_objects(value, where)


def _remote_code(config: dict[str, object], where: Location) -> Iterator[Finding]:
    for key in _CODE_KEYS:
        if key not in config:
            continue
        targets = sorted(_references(config[key]))
        shown = ", ".join(targets[:10])
        yield _at(codes.CFG_AUTO_MAP, where, f"{key} needs trust_remote_code: {shown}", key=key, targets=shown)
        remote = [t for t in targets if "--" in t]  # "org/repo--module.Class": code from another repository
        if remote:
            shown = ", ".join(remote[:10])
            yield _at(codes.CFG_REMOTE_CODE_REPO, where, f"{key} loads code from {shown}", key=key, targets=shown)


def _references(value: object) -> set[str]:
    """Every string inside an auto_map value (class paths, possibly nested in lists and dicts)."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return found


def _at(rule: Rule, where: Location, message: str, **evidence: object) -> Finding:
    text = {k: str(v) for k, v in evidence.items()}
    return Finding(rule.code, rule.severity, rule.kind, where.path, message, where.member, text)
