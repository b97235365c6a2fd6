"""Folder-level checks: what a model folder's configs make the loader read must be in the verified listing.

The per-file scan judges a config's own content
(:mod:`weightguard.formats.loader_configs`); two questions need the folder's
listing as well, and are asked here after every file was scanned:

* every shard a ``*.index.json`` ``weight_map`` names must be a file of the
  listing, compared as the loader compares on POSIX (the exact, case-sensitive
  join onto the index's own folder). A missing shard is an error, not a pass:
  the verdict cannot cover bytes it has not seen (a partial download, or a name
  resolved by a case-insensitive file system to something else);
* a diffusers ``model_index.json`` component whose library is a bare name must
  not be a Python module shipped in the folder (``unet/mymod.py``,
  ``mymod/__init__.py``): diffusers before the ``trust_remote_code`` check
  imported such a custom component as soon as the pipeline loaded.

The configs are read again through the sources the scan read them from. In
``verify`` those are the recording sources of :mod:`weightguard.integrity.binding`,
so these bytes are bound to the digests exactly like the scan's reads (a
config rewritten in between is "changed while verified"). Files over
``max_header_bytes`` or not strict JSON are skipped here: the per-file scan
already reported them, and that report blocks.

Not handled here: the per-file checks, and listing the folder (the sources).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from weightguard.findings import Finding
from weightguard.formats import repo_codes as codes
from weightguard.formats._json import parse_json
from weightguard.formats.loader_configs import (
    DIFFUSERS_INDEXES,
    KNOWN_LIBRARIES,
    PIPELINE_MODULE,
    base_name,
    component_libraries,
    is_shard_index,
    shard_names,
)
from weightguard.sources.interface import ArtifactFile

_SHOWN = 10


def folder_findings(files: Sequence[ArtifactFile], max_bytes: int) -> list[Finding]:
    """Findings about what the folder's shard indexes and pipeline indexes make the loader read."""
    listed = {a.relpath for a in files}
    out: list[Finding] = []
    for artifact in files:
        name = base_name(artifact.relpath)
        is_index = is_shard_index(name)
        if not (is_index or name in DIFFUSERS_INDEXES) or artifact.size > max_bytes:
            continue
        parsed = parse_json(_read(artifact), allow_constants=True)
        if not parsed.ok:
            continue
        folder = posixpath.dirname(artifact.relpath)
        if is_index:
            out.extend(_missing_shards(artifact.relpath, folder, shard_names(parsed.value), listed))
        if name in DIFFUSERS_INDEXES:
            out.extend(_shipped_components(artifact.relpath, parsed.value, listed))
    return out


def _read(artifact: ArtifactFile) -> bytes:
    try:
        return artifact.source.read_at(0, artifact.size)
    finally:
        # A local file's descriptor is opened again for this read; release it as the scan does.
        close = getattr(artifact.source, "close", None)
        if callable(close):
            close()


def _missing_shards(relpath: str, folder: str, shards: list[str], listed: set[str]) -> list[Finding]:
    missing = [s for s in shards if (posixpath.join(folder, s) if folder else s) not in listed]
    if not missing:
        return []
    shown = ", ".join(repr(s[:200]) for s in missing[:_SHOWN])
    more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
    message = f"{len(missing)} shard(s) named by the index are not in the folder: {shown}{more}"
    return [codes.INDEX_MISSING_SHARD.at(relpath, message, files=shown)]


def _shipped_components(relpath: str, value: object, listed: set[str]) -> list[Finding]:
    out = []
    for component, library in component_libraries(value):
        if library in KNOWN_LIBRARIES or not PIPELINE_MODULE.fullmatch(library):
            continue  # known, or already refused by the per-file check
        module, package = f"{library}.py", [library, "__init__.py"]
        shipped = sorted(p for p in listed if base_name(p) == module or p.split("/")[-2:] == package)
        if shipped:
            shown = ", ".join(shipped[:_SHOWN])
            message = f"component {component!r} library {library!r} is Python code in the folder: {shown}"
            out.append(codes.DIFFUSERS_CUSTOM_CODE.at(relpath, message, library=library, files=shown))
    return out
