"""JSON configs and text: strict parsing, and configs that pull in custom code.

A Hugging Face ``config.json`` or ``tokenizer_config.json`` with an
``auto_map`` (or ``custom_pipelines``) only loads with
``trust_remote_code=True``, which imports and runs Python files from the
repository, or, with ``"org/repo--module.Class"`` references, from another
repository. The decision is made from content, never from the file name.
A JSON document shaped like a Keras model config (an unzipped ``.keras``) is
checked like one, and so is every member named ``config.json`` (the file
Keras 3's ``saving_lib.load_model`` reads from any zip, whatever else the zip
holds; its ``deserialize_keras_object`` walks dicts without ``class_name``
too), unless the zip was recognised as Keras and the container analyzer
already checked that very member. A ``chat_template`` (a string, or a list of
``{"name", "template"}`` as in ``tokenizer_config.json`` and
``chat_template.json``) and a text file named ``*.jinja`` (transformers reads
``chat_template.jinja`` and ``additional_chat_templates/*.jinja`` by name) are
judged by :mod:`weightguard.formats.jinja_template`. Duplicate keys are
reported because readers disagree on which value wins. Other text files
carry no loadable content: nothing to report.

Configs that point the loader at other files or classes (shard indexes,
``modules.json``, ``model_index.json``, ``adapter_config.json``) are judged by
:mod:`weightguard.formats.loader_configs`.

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
from weightguard.formats.loader_configs import check_loader_config
from weightguard.sources.interface import ByteSource

_CODE_KEYS = ("auto_map", "custom_pipelines")
_KERAS_CONFIG = "config.json"  # saving_lib._CONFIG_FILENAME
_TEMPLATE_KEY = "chat_template"
_TEMPLATE_EXTENSION = "jinja"  # transformers' CHAT_TEMPLATE_FILE and additional_chat_templates/*.jinja


def _json_shaped(head: bytes) -> bool:
    """True when ``head`` opens a JSON object, or an array whose first item looks like a JSON value.

    A BERT ``vocab.txt`` starts with ``[PAD]``: text, not a malformed JSON array (issue 18).
    """
    text = head.lstrip()
    if text[:1] == b"{":
        return True
    return text[:1] == b"[" and text[1:].lstrip()[:1] in (b"", *(bytes([c]) for c in b'"{[]-0123456789tfnNI'))


def _head(source: ByteSource, limit: int) -> bytes:
    """The rest of the 4 KiB block where the file's leading whitespace ends (``json.load`` skips any amount of it).

    A file whose first ``limit`` bytes are all whitespace but that goes on gives ``b"{"``: it is
    judged as JSON, and then refused as over the limit, rather than passed as text.
    """
    at = 0
    while at < min(source.size, limit):
        chunk = source.read_at(at, 4096)
        if not chunk:
            break
        text = chunk.lstrip(b" \t\r\n")
        if text:
            return text  # a "[" cut off here is judged as JSON: _json_shaped fails closed on b"["
        at += len(chunk)
    return b"{" if at < source.size else b""


class JsonAnalyzer:
    """Analyzer for JSON configs (and plain text, which needs no findings)."""

    name = "json"
    formats = frozenset({FileFormat.JSON, FileFormat.TEXT})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield findings for malformed or duplicated JSON and configs needing remote code."""
        ctx.check_time()
        name = where.members[-1] if where.members else where.path
        # The loader picks these by name (as numpy picks npz members): the name is what makes it code.
        is_template = name.rpartition("/")[2].rpartition(".")[2] == _TEMPLATE_EXTENSION
        if not is_template and not _json_shaped(_head(source, ctx.limits.max_header_bytes)):
            return  # plain text: nothing in it is loaded as code
        if source.size > ctx.limits.max_header_bytes:
            limit = ctx.limits.max_header_bytes
            yield _at(codes.CFG_TOO_LARGE, where, f"{source.size} bytes > max_header_bytes {limit}", size=source.size)
            return
        data = source.read_at(0, source.size)
        if is_template:
            yield from _template_file(data, where)
            return
        parsed = parse_json(data, allow_constants=True)  # Python's json writer emits NaN in configs
        if not parsed.ok:
            yield _at(codes.CFG_MALFORMED, where, f"not strict JSON: {parsed.error}")
            return
        if parsed.duplicates:
            keys = ", ".join(repr(k) for k in parsed.duplicates)
            yield _at(codes.CFG_DUPLICATE_KEY, where, f"keys appear more than once: {keys}", keys=keys)
        value = parsed.value
        yield from check_loader_config(name, value, where.path, where.member)
        if not isinstance(value, dict):
            return
        yield from _remote_code(value, where)
        if _TEMPLATE_KEY in value:
            yield from _templates(value[_TEMPLATE_KEY], where)
        keras_file = name.rpartition("/")[2] == _KERAS_CONFIG
        keras_shaped = isinstance(value.get("class_name"), str) and "config" in value
        if (keras_file or keras_shaped) and not _checked_by_container(where, ctx):
            yield from check_keras_objects(value, where)


def _checked_by_container(where: Location, ctx: ScanContext) -> bool:
    """True when the zip analyzer already ran check_keras_config on exactly these bytes.

    It does so for the first ``config.json`` of a zip detected as Keras; a second member
    of the same name (zipfile reads the last one) is checked here.
    """
    if not where.members or where.members[-1] != _KERAS_CONFIG:
        return False
    parent = Location(where.path, where.members[:-1])
    if sum(1 for part in ctx.parts if part.location == where) > 1:
        return False
    return any(
        part.location == parent and any(c.format is FileFormat.KERAS for c in part.detection.candidates)
        for part in ctx.parts
    )


def _template_file(data: bytes, where: Location) -> Iterator[Finding]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        yield _at(codes.CFG_TEMPLATE_UNPARSABLE, where, "chat template file is not UTF-8")
        return
    yield from _judge(text, where, "chat template file")


def _templates(value: object, where: Location) -> Iterator[Finding]:
    """Judge ``chat_template``: a string, or a list of named templates (transformers' two forms)."""
    if value is None:
        return
    if isinstance(value, str):
        yield from _judge(value, where, _TEMPLATE_KEY)
        return
    if not isinstance(value, list):
        yield _at(codes.CFG_TEMPLATE_UNPARSABLE, where, f"{_TEMPLATE_KEY} is a {type(value).__name__}")
        return
    for i, item in enumerate(value):
        template = item.get("template") if isinstance(item, dict) else None
        label = f"{_TEMPLATE_KEY}[{i}]"
        if isinstance(template, str):
            yield from _judge(template, where, label)
        else:
            yield _at(codes.CFG_TEMPLATE_UNPARSABLE, where, f"{label} is not a {{name, template}} entry")


def _judge(template: str, where: Location, label: str) -> Iterator[Finding]:
    # jinja2 is imported only when a config carries a chat template (start-up of every other scan).
    from weightguard.formats.jinja_template import check_template

    verdict = check_template(template)
    if verdict.syntax_error is not None:
        yield _at(codes.CFG_TEMPLATE_UNPARSABLE, where, f"{label} {verdict.summary()}", key=label)
    elif verdict.issues:
        shown = ", ".join(sorted({issue.construct for issue in verdict.issues})[:10])
        yield _at(codes.CFG_TEMPLATE_INJECTION, where, f"{label} {verdict.summary()}", key=label, constructs=shown)


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
