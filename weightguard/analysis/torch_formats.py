"""PyTorch checkpoints: zip (torch.save >= 1.6, TorchScript) and legacy (stacked pickles, tar).

:class:`TorchZipAnalyzer` reads the archive with the strict zip reader, checks
the layout ``torch.load`` expects (one root folder taken from the first
record, ``data.pkl``, ``version``, ``byteorder``, ``data/<key>`` storages),
analyses EVERY pickle member with the pickle engine, and checks each
persistent id of the root pickles against the storage records (existence and
``numel x element size``). Tensor storages are never read, only their sizes
(and, below ``CRC_SKIP_BYTES``, their CRC). TorchScript ``code/`` is reported
because it runs on load.

:class:`LegacyTorchAnalyzer` walks the five stacked pickles of the pre-1.6
format (magic number, protocol version, sys_info, the object, the storage
keys) and then the raw storages that follow them, each an 8-byte element
count and its bytes: those are tensor data, not trailing garbage, but their
declared sizes must account for every remaining byte. The older tar format
(``storages``, ``tensors``, ``pickle`` members) is walked the same way.

Not handled here: whether a pickle's globals are allowed (the pickle engine
decides) and the tensor values themselves.
"""

from __future__ import annotations

import pickletools
import struct
from collections.abc import Callable, Iterator
from io import BytesIO

from weightguard.analysis.interface import Location, ScanContext
from weightguard.analysis.opcodes import PickleTrace
from weightguard.findings import Finding
from weightguard.formats import codes
from weightguard.formats.archives import CRC_SKIP_BYTES, STORED, ZipMember, open_member, read_zip_directory
from weightguard.formats.detect import LEGACY_TORCH_MAGIC
from weightguard.formats.interface import FileFormat
from weightguard.sources.interface import ByteSource, SliceSource

LEGACY_PROTOCOL_VERSION = 1001
ELEMENT_SIZES = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "ComplexFloatStorage": 8,
    "ComplexDoubleStorage": 16,
    "QInt8Storage": 1,
    "QUInt8Storage": 1,
    "QInt32Storage": 4,
    "QUInt4x2Storage": 1,
    "QUInt2x4Storage": 1,
    "UntypedStorage": 1,
}


def _stream(source: ByteSource, start: int, where: Location, ctx: ScanContext) -> tuple[PickleTrace, list[Finding]]:
    # Imported here so this module loads even where the pickle engine is being replaced.
    from weightguard.analysis.pickle_analyzer import analyze_stream

    trace: PickleTrace
    findings: list[Finding]
    trace, findings = analyze_stream(source, start, where, ctx)
    return trace, findings


def _element_size(storage_type: str) -> int | None:
    return ELEMENT_SIZES.get(storage_type.rpartition(".")[2])


class TorchZipAnalyzer:
    """Analyzer for ``pytorch-zip`` and ``torchscript`` archives."""

    name = "torch-zip"
    formats = frozenset({FileFormat.PYTORCH_ZIP, FileFormat.TORCHSCRIPT})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield layout, storage and pickle findings for the archive."""
        directory = read_zip_directory(source, ctx.limits, path=where.path, member_prefix=where.member)
        yield from directory.findings
        files = [m for m in directory.members if not m.is_dir]
        if not files:
            return
        root = files[0].name.partition("/")[0] if "/" in files[0].name else ""
        yield from self._layout(files, root, where)
        prefix = f"{root}/data/"
        storages = {m.name[len(prefix) :]: m for m in files if root and m.name.startswith(prefix)}
        expected = {f"{root}/data.pkl", f"{root}/constants.pkl", f"{root}/attributes.pkl"}
        pids: list[tuple[str, ...]] = []
        for member in files:
            ctx.check_time()
            at = where.child(member.name)
            if root and member.name.startswith(prefix):
                if member.size <= CRC_SKIP_BYTES or member.method != STORED:
                    yield from open_member(source, member, ctx, path=at.path, member_path=at.member).findings
                continue
            opened = open_member(source, member, ctx, path=at.path, member_path=at.member)
            yield from opened.findings
            if opened.source is None:
                continue
            is_pickle = member.name.rpartition(".")[2] in ("pkl", "debug_pkl") or opened.source.read_at(0, 1) == b"\x80"
            if not is_pickle:
                yield from ctx.nested(opened.source, at)
                continue
            trace, findings = _stream(opened.source, 0, at, ctx)
            yield from findings
            if trace.complete and trace.end < opened.source.size:
                yield codes.TRC_TRAILING_PICKLE_DATA.at(
                    at.path, f"{opened.source.size - trace.end} bytes after STOP", member=at.member, offset=trace.end
                )
            if member.name in expected:
                pids.extend(trace.persistent_ids)
            elif not member.name.startswith(f"{root}/code/"):
                yield codes.TRC_STRAY_PICKLE.at(at.path, "pickle member torch.load does not read", member=at.member)
        yield from _check_storages(pids, storages, where)

    def _layout(self, files: list[ZipMember], root: str, where: Location) -> Iterator[Finding]:
        names = {m.name for m in files}
        roots = {m.name.partition("/")[0] for m in files if "/" in m.name}
        if not root or len(roots) > 1 or any("/" not in n for n in names):
            yield codes.TRC_LAYOUT.at(
                where.path, "records are not all under one root folder", member=where.member, roots=sorted(roots)
            )
        if f"{root}/data.pkl" not in names:
            yield codes.TRC_LAYOUT.at(where.path, f"no {root}/data.pkl in the first record's root", member=where.member)
        stray = sorted(n for n in names if n.rpartition("/")[2] == "data.pkl" and n != f"{root}/data.pkl")
        for name in stray:
            yield codes.TRC_STRAY_PICKLE.at(where.path, "data.pkl outside the root torch reads", member=name)
        if f"{root}/version" not in names and f"{root}/.data/version" not in names:
            yield codes.TRC_LAYOUT_INCOMPLETE.at(where.path, "no version record", member=where.member)
        if f"{root}/byteorder" not in names:
            yield codes.TRC_LAYOUT_INCOMPLETE.at(where.path, "no byteorder record (old writer)", member=where.member)
        code = sorted(n for n in names if n.startswith(f"{root}/code/") and n.rpartition(".")[2] == "py")
        if code:
            yield codes.TRC_TORCHSCRIPT_CODE.at(
                where.path, f"{len(code)} TorchScript source files", member=where.member, first=code[0]
            )


def _check_storages(pids: list[tuple[str, ...]], storages: dict[str, ZipMember], where: Location) -> Iterator[Finding]:
    referenced: set[str] = set()
    for pid in pids:
        if len(pid) < 5 or pid[0] != "storage":
            yield codes.TRC_BAD_PERSISTENT_ID.at(where.path, f"persistent id {pid!r}", member=where.member)
            continue
        storage_type, key, numel_text = pid[1], pid[2], pid[4]
        referenced.add(key)
        member = storages.get(key)
        if member is None:
            yield codes.TRC_MISSING_STORAGE.at(where.path, f"no record data/{key}", member=where.member, key=key)
            continue
        size = _element_size(storage_type)
        if not numel_text.isdigit():
            yield codes.TRC_BAD_PERSISTENT_ID.at(where.path, f"numel {numel_text!r} is not a count", member=member.name)
        elif size is not None and int(numel_text) * size != member.size:
            yield codes.TRC_STORAGE_SIZE.at(
                where.path,
                f"{member.size} bytes, declared {numel_text} x {size}",
                member=member.name,
                storage_type=storage_type,
            )
    for key in sorted(set(storages) - referenced):
        yield codes.TRC_UNREFERENCED_STORAGE.at(where.path, "storage no pickle references", member=storages[key].name)


def pickle_strings(data: bytes) -> list[str]:
    """Return the string constants of a small pickle in order (the legacy storage-key list).

    Uses pickletools' opcode walk, which never executes anything.
    """
    out: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(BytesIO(data)):
            if isinstance(arg, str) and op.name not in ("GLOBAL", "INST"):
                out.append(arg)
    except ValueError:
        return out
    return out


class LegacyTorchAnalyzer:
    """Analyzer for ``pytorch-legacy`` files (stacked pickles or the tar format)."""

    name = "torch-legacy"
    formats = frozenset({FileFormat.PYTORCH_LEGACY})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield findings for every pickle and for the storage layout."""
        if source.read_at(257, 5) == b"ustar" or source.read_at(0, 1) != b"\x80":
            yield from _legacy_tar(source, where, ctx)
            return
        offset = 0
        traces: list[PickleTrace] = []
        for _part in ("magic", "protocol", "sys_info", "object", "keys"):
            if offset >= source.size:
                break
            trace, findings = _stream(source, offset, where, ctx)
            yield from findings
            traces.append(trace)
            if not trace.complete:
                yield _bad(where, f"the {_part} pickle is incomplete")
                return
            offset = trace.end
        if len(traces) < 5:
            yield _bad(where, f"{len(traces)} of the 5 stacked pickles")
            return
        magic, version = traces[0].first_value, traces[1].first_value
        if magic != LEGACY_TORCH_MAGIC or version != LEGACY_PROTOCOL_VERSION:
            yield _bad(where, f"magic {magic!r} / protocol version {version!r}")
        keys_trace = traces[4]
        keys = pickle_strings(source.read_at(keys_trace.start, keys_trace.end - keys_trace.start))
        yield from _legacy_storages(source, offset, keys, traces[3].persistent_ids, where, ctx)


def _bad(where: Location, message: str) -> Finding:
    return codes.TRC_LEGACY_STRUCTURE.at(where.path, message, member=where.member)


def _legacy_storages(
    source: ByteSource,
    offset: int,
    keys: list[str],
    pids: tuple[tuple[str, ...], ...],
    where: Location,
    ctx: ScanContext,
) -> Iterator[Finding]:
    declared = {pid[2]: pid for pid in pids if len(pid) >= 5 and pid[0] == "storage"}
    for key in keys:
        ctx.check_time()
        pid = declared.get(key)
        if pid is None:
            yield codes.TRC_MISSING_STORAGE.at(where.path, f"key {key!r} not in the object pickle", member=where.member)
            return
        size = _element_size(pid[1])
        raw = source.read_at(offset, 8)
        if size is None or len(raw) < 8:
            yield codes.TRC_LEGACY_STORAGE.at(where.path, f"storage {key!r} unreadable", member=where.member)
            return
        (numel,) = struct.unpack("<q", raw)
        if str(numel) != pid[4]:
            yield codes.TRC_LEGACY_STORAGE.at(
                where.path, f"storage {key!r} holds {numel} elements, declared {pid[4]}", member=where.member
            )
        offset += 8 + max(numel, 0) * size
        if offset > source.size or numel < 0:
            yield codes.TRC_LEGACY_STORAGE.at(where.path, f"storage {key!r} runs past the end", member=where.member)
            return
    if offset != source.size:
        yield codes.TRC_LEGACY_STORAGE.at(
            where.path, f"{source.size - offset} bytes after the last storage", member=where.member, offset=offset
        )


_LEGACY_TAR_MEMBERS = frozenset({"sys_info", "pickle", "storages", "tensors"})


def _legacy_tar(source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
    # Imported here: containers owns the tar walk; the tar format is rare.
    from weightguard.analysis.containers import iter_tar

    members: dict[str, SliceSource] = {}
    for item in iter_tar(source, where, ctx):
        if isinstance(item, Finding):
            yield item
        else:
            name, data = item
            if name in _LEGACY_TAR_MEMBERS:
                members.setdefault(name, data)
            else:
                unexpected = where.child(name)
                yield codes.TRC_LAYOUT.at(where.path, "unexpected member in legacy tar", member=unexpected.member)
                yield from ctx.nested(data, where.child(name))
    for name in ("sys_info", "pickle"):
        if name in members:
            _, findings = _stream(members[name], 0, where.child(name), ctx)
            yield from findings
    if {"storages", "tensors", "pickle"} - set(members):
        yield _bad(where, "legacy tar without storages, tensors and pickle members")
        return
    yield from _walk_records(members["storages"], where.child("storages"), ctx, _storage_record)
    yield from _walk_records(members["tensors"], where.child("tensors"), ctx, _tensor_record)


def _storage_record(source: ByteSource, offset: int, trace: PickleTrace) -> int | None:
    types = [g.qualname for g in trace.globals if _element_size(g.qualname) is not None]
    raw = source.read_at(offset, 8)
    if not types or len(raw) < 8:
        return None
    (numel,) = struct.unpack("<q", raw)
    size = _element_size(types[-1]) or 1
    return None if numel < 0 else offset + 8 + numel * size


def _tensor_record(source: ByteSource, offset: int, trace: PickleTrace) -> int | None:
    del trace
    raw = source.read_at(offset, 4)
    if len(raw) < 4:
        return None
    (ndim,) = struct.unpack("<i", raw)
    return None if not 0 <= ndim <= 64 else offset + 8 + 16 * ndim + 8


_Record = Callable[[ByteSource, int, PickleTrace], "int | None"]


def _walk_records(source: ByteSource, where: Location, ctx: ScanContext, record: _Record) -> Iterator[Finding]:
    """Walk ``count`` pickle, then ``count`` x (args pickle + raw bytes), then (storages) a views pickle."""
    trace, findings = _stream(source, 0, where, ctx)
    yield from findings
    count = trace.first_value
    if not trace.complete or not isinstance(count, int) or not 0 <= count <= ctx.limits.max_archive_members:
        yield _bad(where, f"record count {count!r} is not usable")
        return
    offset = trace.end
    for _ in range(count):
        ctx.check_time()
        trace, findings = _stream(source, offset, where, ctx)
        yield from findings
        nxt = record(source, trace.end, trace) if trace.complete else None
        if not isinstance(nxt, int) or nxt > source.size:
            yield codes.TRC_LEGACY_STORAGE.at(where.path, "record runs past the member end", member=where.member)
            return
        offset = nxt
    if where.members[-1] == "storages" and offset < source.size:
        trace, findings = _stream(source, offset, where, ctx)  # the storage-views list
        yield from findings
        offset = trace.end
    if offset != source.size:
        yield codes.TRC_LEGACY_STORAGE.at(where.path, f"{source.size - offset} unexplained bytes", member=where.member)


__all__ = ["ELEMENT_SIZES", "LegacyTorchAnalyzer", "TorchZipAnalyzer", "pickle_strings"]
