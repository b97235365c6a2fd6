"""HDF5 checks: Keras model configs in root attributes, and references to other files.

Legacy Keras ``.h5`` files keep the model's architecture as JSON in the root
attributes ``model_config`` and ``training_config``; a Lambda layer there is
marshalled Python bytecode (CVE-2024-3660). With h5py (the ``[test]`` extra,
not a core dependency) the file is opened read-only through a file-like view
of the scanned bytes (never re-opened by path), each attribute's size is
checked against ``max_header_bytes`` (before reading it when stored inline,
right after for variable-length strings, which are bounded by the file), and the attributes
go through the same checks as a Keras 3 ``config.json``
(:func:`weightguard.formats.keras.check_keras_objects`). The object tree is
walked for external links, external dataset storage and virtual datasets,
which make a reader open other files.

Without h5py only a bounded byte search for Lambda markers is possible, and
a SKIPPED finding says so, so the run fails closed.

Not handled here: dataset contents (weights are data) and objects stored as
opaque bytes inside datasets (e.g. pandas' pickled HDFStore columns).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

from weightguard.analysis.interface import Location, ScanContext
from weightguard.errors import LimitExceeded
from weightguard.findings import Finding, Rule
from weightguard.formats import header_codes as codes
from weightguard.formats._json import parse_json
from weightguard.formats.interface import FileFormat
from weightguard.formats.keras import check_keras_objects
from weightguard.sources.interface import ByteSource, SourceFile

CONFIG_ATTRIBUTES = ("model_config", "training_config")
_LAMBDA_MARKERS = (b'"class_name": "Lambda"', b'"class_name":"Lambda"', b"__lambda__", b'"function_type": "lambda"')
_CHUNK = 1 << 20
# What h5py raises on a file it cannot parse (HDF5 errors surface as OSError/KeyError/ValueError/RuntimeError).
_H5_ERRORS = (OSError, ValueError, KeyError, RuntimeError, TypeError, IndexError, OverflowError)


def _load_h5py() -> ModuleType | None:
    try:
        return importlib.import_module("h5py")
    except ImportError:
        return None


class HDF5Analyzer:
    """Analyzer for HDF5 files (legacy Keras ``.h5`` models and weight files)."""

    name = "hdf5"
    formats = frozenset({FileFormat.HDF5})

    def __init__(self, *, use_h5py: bool = True) -> None:
        """Create the analyzer.

        Args:
            use_h5py: Use h5py when importable; False forces the byte-search fallback (tests).
        """
        self._use_h5py = use_h5py

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield Keras config findings, references to other files, or the fallback's findings."""
        ctx.check_time()
        h5py = _load_h5py() if self._use_h5py else None
        if h5py is None:
            yield from _fallback(source, where, ctx)
            return
        try:
            with h5py.File(SourceFile(source), "r") as h5:
                findings = _config_findings(h5py, h5, where, ctx)
                findings.extend(_reference_findings(h5py, h5, where, ctx))
        except _H5_ERRORS as exc:
            yield _at(codes.H5_MALFORMED, where, f"h5py could not read the file: {str(exc)[:200]}")
            yield from _marker_findings(source, where, ctx)
            return
        yield from findings


def _config_findings(h5py: ModuleType, h5: object, where: Location, ctx: ScanContext) -> list[Finding]:
    findings: list[Finding] = []
    attrs = h5.attrs  # type: ignore[attr-defined]
    for name in CONFIG_ATTRIBUTES:
        if name not in attrs:
            continue
        size = h5py.h5a.open(h5.id, name.encode()).get_storage_size()  # type: ignore[attr-defined]
        if size > ctx.limits.max_header_bytes:
            message = f"{name} attribute of {size} bytes > max_header_bytes {ctx.limits.max_header_bytes}"
            findings.append(_at(codes.H5_ATTRIBUTE_TOO_LARGE, where, message, attribute=name, size=size))
            continue
        data = _as_bytes(attrs[name])
        if data is None:
            findings.append(_at(codes.H5_BAD_ATTRIBUTE, where, f"{name} is {type(attrs[name]).__name__}"))
            continue
        if len(data) > ctx.limits.max_header_bytes:
            # Variable-length strings live on the global heap: their size is known only once read
            # (bounded by the file size, since attributes cannot be compressed).
            message = f"{name} attribute of {len(data)} bytes > max_header_bytes {ctx.limits.max_header_bytes}"
            findings.append(_at(codes.H5_ATTRIBUTE_TOO_LARGE, where, message, attribute=name, size=len(data)))
            continue
        here = where.child(f"@{name}")
        parsed = parse_json(data, allow_constants=True)
        if not parsed.ok:
            findings.append(_at(codes.KERAS_MALFORMED, here, f"{name}: {parsed.error}"))
            continue
        if parsed.duplicates:
            keys = ", ".join(repr(k) for k in parsed.duplicates)
            findings.append(_at(codes.KERAS_DUPLICATE_KEY, here, f"keys appear more than once: {keys}", keys=keys))
        findings.extend(check_keras_objects(parsed.value, here))
    return findings


def _as_bytes(value: object) -> bytes | None:
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "size", 0) == 1:  # numpy scalar or 1-element array
        value = item()
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return None


def _reference_findings(h5py: ModuleType, h5: object, where: Location, ctx: ScanContext) -> list[Finding]:
    findings: list[Finding] = []
    pending: list[tuple[object, str]] = [(h5, "")]
    visited = 0
    while pending:
        group, path = pending.pop()
        for name in group:  # type: ignore[attr-defined]
            visited += 1
            if visited > ctx.limits.max_archive_members:
                raise LimitExceeded("max_archive_members", ctx.limits.max_archive_members, visited)
            if visited % 1024 == 0:
                ctx.check_time()
            child = f"{path}/{name}"
            link = group.get(name, getlink=True)  # type: ignore[attr-defined]
            if isinstance(link, h5py.ExternalLink):
                message = f"{child} links to {link.filename}:{link.path}"
                findings.append(_at(codes.H5_EXTERNAL_REFERENCE, where, message, object=child, file=link.filename))
                continue
            if isinstance(link, h5py.SoftLink):
                continue  # points inside this file; the target is visited on its own
            obj = group[name]  # type: ignore[index]
            if isinstance(obj, h5py.Group):
                pending.append((obj, child))
            elif isinstance(obj, h5py.Dataset):
                if obj.external:
                    files = sorted({str(entry[0]) for entry in obj.external})
                    message = f"{child} stores its data in external files {files}"
                    findings.append(_at(codes.H5_EXTERNAL_REFERENCE, where, message, object=child))
                if obj.is_virtual:
                    files = sorted({str(m.file_name) for m in obj.virtual_sources()})
                    message = f"{child} is a virtual dataset over {files}"
                    findings.append(_at(codes.H5_EXTERNAL_REFERENCE, where, message, object=child))
    return findings


def _fallback(source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
    yield _at(codes.H5_NOT_ANALYSED, where, "HDF5 not fully analysed (install h5py)")
    yield from _marker_findings(source, where, ctx)


def _marker_findings(source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
    # Bounded search: configs sit in the metadata near the start; reading all of a
    # multi-gigabyte weights file just for this would defeat the byte budget.
    end = min(source.size, ctx.limits.max_header_bytes)
    overlap = max(len(m) for m in _LAMBDA_MARKERS)
    found: set[bytes] = set()
    for start in range(0, end, _CHUNK):
        ctx.check_time()
        chunk = source.read_at(start, min(_CHUNK + overlap, end - start))
        found.update(m for m in _LAMBDA_MARKERS if m in chunk)
    for marker in sorted(found):
        shown = marker.decode()
        yield _at(codes.H5_LAMBDA_MARKER, where, f"found {shown} in the first {end} bytes", marker=shown)


def _at(rule: Rule, where: Location, message: str, **evidence: object) -> Finding:
    text = {k: str(v) for k, v in evidence.items()}
    return Finding(rule.code, rule.severity, rule.kind, where.path, message, where.member, text)
