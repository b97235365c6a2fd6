"""PyTorch checkpoints: zip (torch.save >= 1.6, TorchScript) and legacy (stacked pickles, tar).

:class:`TorchZipAnalyzer` reads the archive with the strict zip reader, checks
the layout ``torch.load`` expects (one root folder taken from the first
central-directory record, directory or not; ``data.pkl``, ``version`` or
``.data/version``, ``byteorder``, ``data/<key>`` storages), compares names as
torch's miniz lookup does (ASCII case ignored, so ``DATA.PKL`` is ``data.pkl``;
see :mod:`weightguard.formats.zip_names`), analyses EVERY pickle member, every
case variant included, with the pickle engine, and checks each
persistent id of the root pickles against the storage records (existence and
``numel x element size``). Tensor storages are not read beyond their first six
bytes (and, below ``CRC_SKIP_BYTES``, their CRC): a storage that starts with the
``.npy`` magic is what ``np.load`` reads as an array from the same zip taken as an
npz, so it is analysed as that ``.npy`` file. TorchScript ``code/`` is reported
because it runs on load.

:class:`LegacyTorchAnalyzer` walks the five stacked pickles of the pre-1.6
format (magic number, protocol version, sys_info, the object, the storage
keys) and then the raw storages that follow them, each an 8-byte element
count and its bytes: those are tensor data, not trailing garbage, but their
declared sizes must account for every remaining byte. The older tar format
(``storages``, ``tensors``, ``pickle`` members) is walked the same way,
chosen as torch chooses it: whenever ``tarfile`` opens the file (issue 15),
with names compared as ``TarFile.getmember`` does and every copy of a
duplicate walked (:func:`walk_tar`, also used for plain tars, which
``torch.load`` treats the same way).

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
from weightguard.formats.archives import ZipMember, open_member, read_zip_directory
from weightguard.formats.detect import LEGACY_TORCH_MAGIC, NUMPY_MAGIC, detect
from weightguard.formats.interface import Confidence, FileFormat
from weightguard.formats.tar_reader import LEGACY_TORCH_MEMBERS, member_key, tar_opens
from weightguard.formats.zip_names import miniz_key
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
        # torch takes the root from the first central-directory record (directory or not)
        # and finds every record as <root>/<name> with miniz's ASCII-case-blind match.
        first = directory.members[0]
        root = first.name.partition("/")[0] if first.index == 0 and "/" in first.name else ""
        yield from self._layout(directory.members, root, where)
        prefix = _fold(f"{root}/data/")
        storages = {_key(m)[len(prefix) :]: m for m in files if root and _key(m).startswith(prefix)}
        expected = {_fold(f"{root}/{name}") for name in ("data.pkl", "constants.pkl", "attributes.pkl")}
        pids: list[tuple[str, ...]] = []
        for member in files:
            ctx.check_time()
            at = where.child(member.name)
            key = _key(member)
            if root and key.startswith(prefix):
                # A large stored storage opens as a window with no read; a small or compressed one is CRC-checked.
                opened = open_member(source, member, ctx, path=at.path, member_path=at.member)
                yield from opened.findings
                # torch reads a storage as raw bytes, but np.load opens any zip as an npz and reads a member
                # that starts with the .npy magic as an array, unpickling an object array under
                # allow_pickle=True (red team, issue 15): such a storage is analysed as the .npy numpy sees.
                if opened.source is not None and opened.source.read_at(0, len(NUMPY_MAGIC)) == NUMPY_MAGIC:
                    yield from ctx.nested(opened.source, at)
                continue
            opened = open_member(source, member, ctx, path=at.path, member_path=at.member)
            yield from opened.findings
            if opened.source is None:
                continue
            # Every candidate torch could unpickle goes to the pickle engine, whatever its case.
            is_pickle = key.rpartition(".")[2] in ("pkl", "debug_pkl") or opened.source.read_at(0, 1) == b"\x80"
            if not is_pickle:
                yield from ctx.nested(opened.source, at)
                continue
            trace, findings = _stream(opened.source, 0, at, ctx)
            yield from findings
            if _also_another_format(opened.source, ctx):
                # A member that is also a joblib file (or any non-plain pickle) is loaded by other
                # loaders once extracted; torch's reading above is not theirs (differential fuzzing).
                yield from ctx.nested(opened.source, at)
            if trace.complete and trace.end < opened.source.size:
                yield codes.TRC_TRAILING_PICKLE_DATA.at(
                    at.path, f"{opened.source.size - trace.end} bytes after STOP", member=at.member, offset=trace.end
                )
            if key in expected:
                pids.extend(trace.persistent_ids)
            elif not key.startswith(_fold(f"{root}/code/")):
                yield codes.TRC_STRAY_PICKLE.at(at.path, "pickle member torch.load does not read", member=at.member)
        yield from _check_storages(pids, storages, where)

    def _layout(self, members: tuple[ZipMember, ...], root: str, where: Location) -> Iterator[Finding]:
        names = {_key(m) for m in members if not m.is_dir}
        roots = {_key(m).partition("/")[0] for m in members if "/" in m.name}
        base = _fold(root)
        if not root or len(roots) > 1 or any("/" not in n for n in names):
            yield codes.TRC_LAYOUT.at(
                where.path, "records are not all under one root folder", member=where.member, roots=sorted(roots)
            )
        if f"{base}/data.pkl" not in names:
            yield codes.TRC_LAYOUT.at(where.path, f"no {root}/data.pkl in the first record's root", member=where.member)
        stray = sorted(n for n in names if n.rpartition("/")[2] == "data.pkl" and n != f"{base}/data.pkl")
        for name in stray:
            yield codes.TRC_STRAY_PICKLE.at(where.path, "data.pkl outside the root torch reads", member=name)
        if f"{base}/version" not in names and f"{base}/.data/version" not in names:
            yield codes.TRC_LAYOUT_INCOMPLETE.at(where.path, "no version record", member=where.member)
        if f"{base}/byteorder" not in names:
            yield codes.TRC_LAYOUT_INCOMPLETE.at(where.path, "no byteorder record (old writer)", member=where.member)
        code = sorted(n for n in names if n.startswith(f"{base}/code/") and n.rpartition(".")[2] == "py")
        if code:
            yield codes.TRC_TORCHSCRIPT_CODE.at(
                where.path, f"{len(code)} TorchScript source files", member=where.member, first=code[0]
            )


def _fold(name: str) -> str:
    """``name`` as torch's zip lookup compares it (ASCII letters folded, see ``zip_names``)."""
    return miniz_key(name.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")


def _key(member: ZipMember) -> str:
    raw = member.raw or member.name.encode("utf-8", "surrogateescape")
    return miniz_key(raw).decode("utf-8", "surrogateescape")


def _check_storages(pids: list[tuple[str, ...]], storages: dict[str, ZipMember], where: Location) -> Iterator[Finding]:
    referenced: set[str] = set()
    for pid in pids:
        if len(pid) < 5 or pid[0] != "storage":
            yield codes.TRC_BAD_PERSISTENT_ID.at(where.path, f"persistent id {pid!r}", member=where.member)
            continue
        storage_type, key, numel_text = pid[1], pid[2], pid[4]
        referenced.add(_fold(key))
        member = storages.get(_fold(key))
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


_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"})
_MEMO_OPS = frozenset({"PROTO", "FRAME", "BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"})


def storage_keys(data: bytes) -> list[str] | None:
    """Return the legacy storage-key list when the keys pickle is a plain list of strings, else None.

    pickletools only splits the bytes into opcodes here; which opcodes are allowed
    and what they build is decided below, for the one shape ``torch.save`` writes
    (a list of strings built with MARK/APPENDS or APPEND, memo writes ignored).
    The list only drives the accounting of the raw storage bytes after the pickles,
    which torch reads as tensor data and never unpickles; any other shape is None
    (reported, not guessed). The pickle itself is analysed by the pickle engine.
    """
    stack: list[object] = []
    mark = object()
    try:
        for op, arg, _ in pickletools.genops(BytesIO(data)):
            name = op.name
            if name in _MEMO_OPS:
                continue
            if name in _STRING_OPS and isinstance(arg, str):
                stack.append(arg)
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name == "MARK":
                stack.append(mark)
            elif name in ("LIST", "APPENDS") and mark in stack:
                at = len(stack) - 1 - stack[::-1].index(mark)
                items, stack = stack[at + 1 :], stack[:at]
                if name == "LIST":
                    stack.append(items)
                elif not stack or not isinstance(stack[-1], list):
                    return None
                else:
                    stack[-1].extend(items)
            elif name == "APPEND" and len(stack) >= 2 and isinstance(stack[-2], list):
                stack[-2].append(stack.pop())
            elif name == "STOP" and len(stack) == 1 and isinstance(stack[0], list):
                keys = stack[0]
                return keys if all(isinstance(k, str) for k in keys) else None
            else:
                return None
    except ValueError:
        return None
    return None


def pickle_strings(data: bytes) -> list[str]:
    """Return the legacy storage-key list of a keys pickle ([] when it is not a plain list of strings)."""
    return storage_keys(data) or []


class LegacyTorchAnalyzer:
    """Analyzer for ``pytorch-legacy`` files (stacked pickles or the tar format)."""

    name = "torch-legacy"
    formats = frozenset({FileFormat.PYTORCH_LEGACY})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield findings for every pickle and for the storage layout."""
        if tar_opens(source, ctx.limits):
            # torch's _legacy_load tries tarfile first and takes the tar path whenever it opens (issue 15).
            yield from walk_tar(source, where, ctx, legacy=True)
            if source.read_at(0, 1) != b"\x80":
                return
            # A tar whose first name is a pickle: torch unpickles the stacked format from
            # offset 0 when the tar path fails midway with a TarError, so walk that too.
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
        keys = storage_keys(source.read_at(keys_trace.start, keys_trace.end - keys_trace.start))
        if keys is None:
            yield _bad(where, "the storage-key pickle is not a list of strings")
            return
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


def walk_tar(source: ByteSource, where: Location, ctx: ScanContext, *, legacy: bool) -> Iterator[Finding]:
    """Walk a tar as ``torch.load`` would and analyse every member.

    torch's legacy loader opens any tar and unpickles the members ``storages``,
    ``tensors`` and ``pickle`` that ``TarFile.getmember`` returns (the last of
    equal normalised names). Every member with one of those names (and
    ``sys_info``) is walked as the legacy record format, all copies of a
    duplicate included (iter_tar reports the duplicate); every other member is
    handed to the scanner. ``legacy`` (detection said torch legacy) adds the
    layout findings even when no such member is present.
    """
    # Imported here: containers owns the tar walk and imports this module lazily too.
    from weightguard.analysis.containers import iter_tar

    members: dict[str, list[tuple[Location, SliceSource]]] = {}
    others: list[tuple[Location, SliceSource]] = []
    for item in iter_tar(source, where, ctx):
        if isinstance(item, Finding):
            yield item
            continue
        name, data = item
        key = member_key(name)
        if key in LEGACY_TORCH_MEMBERS or key == "sys_info":
            members.setdefault(key, []).append((where.child(name), data))
        else:
            others.append((where.child(name), data))
    legacy = legacy or bool(members.keys() & LEGACY_TORCH_MEMBERS)
    for at, data in others:
        if legacy:
            yield codes.TRC_LAYOUT.at(where.path, "unexpected member in legacy tar", member=at.member)
        yield from ctx.nested(data, at)
    for key in ("sys_info", "pickle"):
        for at, data in members.get(key, ()):
            _, findings = _stream(data, 0, at, ctx)
            yield from findings
    for at, data in members.get("storages", ()):
        yield from _walk_records(data, at, ctx, _storage_record, views=True)
    for at, data in members.get("tensors", ()):
        yield from _walk_records(data, at, ctx, _tensor_record, views=False)
    if legacy and LEGACY_TORCH_MEMBERS - set(members):
        yield _bad(where, "legacy tar without storages, tensors and pickle members")


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


def _walk_records(
    source: ByteSource, where: Location, ctx: ScanContext, record: _Record, *, views: bool
) -> Iterator[Finding]:
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
    if views and offset < source.size:
        trace, findings = _stream(source, offset, where, ctx)  # the storage-views list
        yield from findings
        offset = trace.end
    if offset != source.size:
        yield codes.TRC_LEGACY_STORAGE.at(where.path, f"{source.size - offset} unexplained bytes", member=where.member)


__all__ = ["ELEMENT_SIZES", "LegacyTorchAnalyzer", "TorchZipAnalyzer", "pickle_strings", "storage_keys", "walk_tar"]


def _also_another_format(source: ByteSource, ctx: ScanContext) -> bool:
    """True when detection finds more in a pickle member than a plain pickle (joblib, say)."""
    detection = detect(source, ctx.limits)
    return any(
        c.format is not FileFormat.PICKLE and c.confidence is not Confidence.POSSIBLE for c in detection.candidates
    )
