"""Configs that send a loader to other files or to code: sharded indexes, sentence-transformers, diffusers, PEFT.

Red team round 3 found two folder bypasses of the promise "approved means these
exact bytes, loaded the normal way, run no code":

* transformers (and diffusers) join every ``weight_map`` value of a
  ``*.index.json`` onto the folder with no check, so ``../outside/x`` or an
  absolute path loads bytes the verdict never listed, hashed or scanned;
* sentence-transformers 5.x imports a ``modules.json`` ``type`` such as
  ``custom_st.Payload`` from ``custom_st.py`` in a local folder without
  ``trust_remote_code``.

This module judges one parsed JSON document, so ``scan FILE`` and ``verify DIR``
give the same per-file findings; what needs the folder's listing (a shard that
is missing, a component library that is a ``.py`` in the folder) is judged by
:mod:`weightguard.formats.model_folder`, which reuses :func:`shard_names` and
:func:`component_libraries`. Shard indexes are recognised by name (every
loader reads ``<weights>.index.json``) or by content (any ``weight_map``);
``modules.json``, ``model_index.json`` and ``adapter_config.json`` by name only,
because loaders read them by name and their shapes are too generic to guess from
(a diffusers UNet config also holds two-item string lists). Reading a name is
what makes them load instructions, as with ``*.jinja`` chat templates.

Known libraries for diffusers components are diffusers' ``LOADABLE_CLASSES``
keys (0.42.1); a bare lower-case identifier is accepted as a
``diffusers.pipelines`` submodule (``["stable_diffusion",
"StableDiffusionSafetyChecker"]``), because listing every pipeline module here
would go stale, unless the folder ships a Python module of that name.

Not handled here: ``auto_map`` (:mod:`weightguard.formats.json_text`) and the
Python files themselves (scanned as text, never imported).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator

from weightguard.findings import Finding, Rule
from weightguard.formats import repo_codes as codes

# transformers' SAFE_WEIGHTS_INDEX_NAME and WEIGHTS_INDEX_NAME, and their variants: _add_variant puts the
# variant before the last dot (model.safetensors.index.fp16.json).
_SHARD_INDEX = re.compile(r".+\.index(\.[^./]+)?\.json")
ST_MODULES = "modules.json"  # sentence_transformers' MODULES file
DIFFUSERS_INDEXES = frozenset({"model_index.json", "modular_model_index.json"})
PEFT_CONFIG = "adapter_config.json"
_ST_TYPE = re.compile(r"sentence_transformers(\.[A-Za-z_][A-Za-z0-9_]*)+")
# diffusers.pipelines.pipeline_loading_utils.LOADABLE_CLASSES (0.42.1)
KNOWN_LIBRARIES = frozenset({"diffusers", "transformers", "onnxruntime.training"})
PIPELINE_MODULE = re.compile(r"[a-z][a-z0-9_]*")
_DRIVE = re.compile(r"[A-Za-z]:")


def base_name(relpath: str) -> str:
    """The last component of a POSIX relative path, in lower case.

    Loaders find these files with ``os.path.exists``/``open``, which on macOS and Windows
    match ``Modules.json`` as ``modules.json``.
    """
    return relpath.rpartition("/")[2].lower()


def is_shard_index(name: str) -> bool:
    """True for ``<weights>.index[.<variant>].json`` (the name, not the content: loaders pick it by name)."""
    return _SHARD_INDEX.fullmatch(name) is not None


def relative_problem(value: str) -> str:
    """Why ``value`` is not a plain relative name inside the folder ("" when it is)."""
    if not value:
        return "empty"
    if "\0" in value:
        return "contains NUL"
    if "\\" in value:
        return "contains a backslash"
    if value.startswith("/") or _DRIVE.match(value):
        return "absolute path"
    if ".." in value.split("/"):
        return "climbs with '..'"
    if posixpath.normpath(value) != value:
        return "not in normalised form"
    return ""


def check_loader_config(relpath: str, value: object, where: str, member: str = "") -> Iterator[Finding]:
    """Yield the findings of one parsed JSON document named ``relpath``."""
    name = base_name(relpath)
    if is_shard_index(name) or (isinstance(value, dict) and "weight_map" in value):
        yield from _index(value, where, member)
    if name == ST_MODULES:
        yield from _st_modules(value, where, member)
    if name in DIFFUSERS_INDEXES:
        yield from _diffusers(value, where, member)
    if name == PEFT_CONFIG and isinstance(value, dict):
        yield from _peft(value, where, member)


def shard_names(value: object) -> list[str]:
    """The distinct plain relative names a ``weight_map`` points at (the others are findings of their own)."""
    weight_map = value.get("weight_map") if isinstance(value, dict) else None
    if not isinstance(weight_map, dict):
        return []
    names = {v for v in weight_map.values() if isinstance(v, str) and not relative_problem(v)}
    return sorted(names)


def component_libraries(value: object) -> list[tuple[str, str]]:
    """``(component, library)`` of every diffusers component whose library is a string."""
    if not isinstance(value, dict):
        return []
    found = []
    for key, item in value.items():
        if key.startswith("_") or not isinstance(item, list) or len(item) not in (2, 3):
            continue  # "_class_name", "_diffusers_version" and plain settings are not components
        library = item[0]
        if isinstance(library, str):
            found.append((key, library))
    return found


def _index(value: object, where: str, member: str) -> Iterator[Finding]:
    weight_map = value.get("weight_map") if isinstance(value, dict) else None
    if weight_map is None:
        return  # a *.index.json without a weight_map is not a shard index a loader reads
    if not isinstance(weight_map, dict):
        yield _at(codes.INDEX_MALFORMED, where, member, f"weight_map is a {type(weight_map).__name__}")
        return
    odd = sorted({type(v).__name__ for v in weight_map.values() if not isinstance(v, str)})
    if odd:
        yield _at(codes.INDEX_MALFORMED, where, member, f"weight_map values of type {', '.join(odd)}")
    bad: dict[str, str] = {}
    for v in weight_map.values():
        if isinstance(v, str) and (problem := relative_problem(v)):
            bad.setdefault(v, problem)
    if bad:
        shown = "; ".join(f"{v[:200]!r} ({p})" for v, p in sorted(bad.items())[:10])
        yield _at(codes.INDEX_ESCAPE, where, member, f"weight_map names {shown}", files=shown)


def _st_modules(value: object, where: str, member: str) -> Iterator[Finding]:
    if not isinstance(value, list):
        yield _at(codes.LOADER_CONFIG_MALFORMED, where, member, f"modules.json is a {type(value).__name__}, not a list")
        return
    for i, entry in enumerate(value):
        kind = entry.get("type") if isinstance(entry, dict) else None
        path = entry.get("path", "") if isinstance(entry, dict) else None
        if not isinstance(kind, str) or not isinstance(path, str):
            yield _at(codes.LOADER_CONFIG_MALFORMED, where, member, f"modules.json entry {i} lacks a string type/path")
            continue
        if not _ST_TYPE.fullmatch(kind):
            yield _at(codes.ST_CUSTOM_MODULE, where, member, f"module {i} type {kind[:200]!r}", type=kind[:200])
        problem = relative_problem(path) if path else ""  # "" is the folder itself (the first module)
        if problem and problem != "not in normalised form":
            yield _at(codes.ST_PATH_ESCAPE, where, member, f"module {i} path {path[:200]!r} ({problem})")


def _diffusers(value: object, where: str, member: str) -> Iterator[Finding]:
    if not isinstance(value, dict):
        yield _at(codes.LOADER_CONFIG_MALFORMED, where, member, f"model_index.json is a {type(value).__name__}")
        return
    class_name = value.get("_class_name")
    if isinstance(class_name, list):
        # DiffusionPipeline.from_pretrained loads [module, class] from <module>.py in the folder.
        shown = str(class_name)[:200]
        yield _at(codes.DIFFUSERS_CUSTOM_CODE, where, member, f"_class_name {shown} is a custom pipeline")
    elif class_name is not None and not isinstance(class_name, str):
        yield _at(codes.LOADER_CONFIG_MALFORMED, where, member, f"_class_name is a {type(class_name).__name__}")
    for component, library in component_libraries(value):
        if library in KNOWN_LIBRARIES or PIPELINE_MODULE.fullmatch(library):
            continue
        message = f"component {component!r} library {library[:200]!r}"
        yield _at(codes.DIFFUSERS_FOREIGN_LIBRARY, where, member, message, library=library[:200])


def _peft(value: dict[str, object], where: str, member: str) -> Iterator[Finding]:
    base = value.get("base_model_name_or_path")
    if not isinstance(base, str) or not _local_path(base):
        return  # a Hub id ("org/name") is the normal case: a model of its own, verified on its own
    yield _at(codes.PEFT_LOCAL_BASE, where, member, f"base model loaded from {base[:200]!r}", base=base[:200])


def _local_path(value: str) -> bool:
    """True when ``value`` can only be a file-system path, never a Hub repository id."""
    if not value:
        return False
    if value.startswith(("/", "~", ".")) or "\\" in value or _DRIVE.match(value):
        return True
    parts = value.split("/")
    return len(parts) > 2 or ".." in parts or "." in parts


def _at(rule: Rule, where: str, member: str, message: str, **evidence: str) -> Finding:
    return Finding(rule.code, rule.severity, rule.kind, where, message, member, evidence)
