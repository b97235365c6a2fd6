"""Builders for pickle tests: contexts, hand-made opcode streams and real benign checkpoints.

Every malicious stream here is only ever walked, never loaded. Payloads are harmless
(they would create a marker file) and exist as bytes only.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections.abc import Callable, Iterator

from weightguard.analysis.interface import Location, PickleSettings, ScanContext
from weightguard.analysis.opcodes import PickleTrace, walk_pickle
from weightguard.analysis.pickle_analyzer import PickleAnalyzer
from weightguard.findings import Finding, RuleKind, Severity
from weightguard.limits import Limits
from weightguard.sources.interface import ByteSource, BytesSource

MARKER = "touch /tmp/weightguard-test-marker"


def make_ctx(
    limits: Limits | None = None,
    settings: PickleSettings | None = None,
    nested: list[tuple[ByteSource, Location]] | None = None,
    clock: Callable[[], float] | None = None,
    deadline: float = float("inf"),
) -> ScanContext:
    """A context whose dispatch records nested calls (and analyses nothing)."""

    def dispatch(source: ByteSource, where: Location) -> Iterator[Finding]:
        if nested is not None:
            nested.append((source, where))
        return iter(())

    ctx = ScanContext(limits=limits or Limits(), pickle=settings or PickleSettings(), dispatch=dispatch)
    if clock is not None:
        ctx.clock = clock
    ctx.deadline = deadline
    return ctx


def walk(data: bytes, ctx: ScanContext | None = None) -> PickleTrace:
    return walk_pickle(BytesSource(data), 0, ctx or make_ctx())


def scan(data: bytes, ctx: ScanContext | None = None) -> list[Finding]:
    return list(PickleAnalyzer().analyze(BytesSource(data), Location("model.pkl"), ctx or make_ctx()))


def blocking(findings: list[Finding]) -> list[Finding]:
    """Findings that block under the default policy (fail_on: medium) or fail closed."""
    return [f for f in findings if f.kind is not RuleKind.FINDING or f.severity.at_least(Severity.MEDIUM)]


def codes_of(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings}


def names(trace: PickleTrace) -> set[str]:
    return {g.name for g in trace.globals}


# ---- opcode assembly -----------------------------------------------------------------------
def su(text: str) -> bytes:
    """SHORT_BINUNICODE."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def binbytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def proto0_call(module: str, name: str, arg: str) -> bytes:
    """``module.name(arg)`` as a protocol-0 stream (GLOBAL + REDUCE)."""
    return f"c{module}\n{name}\n(S'{arg}'\ntR.".encode()


def proto4_call(module: str, name: str, arg: str) -> bytes:
    """``module.name(arg)`` as a protocol-4 stream (STACK_GLOBAL + REDUCE)."""
    return b"\x80\x04" + su(module) + su(name) + b"\x93" + su(arg) + b"\x85R."


def reduce_pickle(func: object, args: tuple[object, ...], protocol: int = 4) -> bytes:
    """Pickle a call of ``func(*args)`` the way a malicious ``__reduce__`` does (dumping is safe)."""

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return func, args

    return pickle.dumps(Payload(), protocol=protocol)


def torch_data_pkl(obj: object) -> bytes:
    """``torch.save(obj)`` and return the archive's data.pkl member."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as archive:
        member = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        return archive.read(member)
