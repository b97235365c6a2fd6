"""Judge pickle streams by allowlist: turn a :class:`PickleTrace` into findings.

:func:`analyze_stream` walks one stream with :func:`walk_pickle` and reports
every global outside :mod:`weightguard.analysis.allowlist` (CRITICAL when
:func:`classify` knows it is dangerous), every parse or stack anomaly, and
analyses constants that hold nested pickles or archives. It is the one entry
point other analyzers (torch zip, legacy torch, numpy, joblib) use for their
streams. :class:`PickleAnalyzer` handles a raw pickle file: stacked streams and
data after STOP.

fickling is used only for evidence: when ``ctx.pickle.fickling_evidence`` is
set and a small stream has blocking findings, fickling's decompiled Python is
attached to the first blocking finding so a human can read what the payload
does. fickling never decides anything here: it does not influence which
findings exist, their severity or the verdict, and if it fails the evidence
is simply absent. Nothing in this module executes or imports what a stream names.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import sys
from collections.abc import Iterator
from typing import Any

from weightguard.analysis import codes
from weightguard.analysis.allowlist import Danger, classify, is_allowed
from weightguard.analysis.cpython_unpickler import Reach, model_load
from weightguard.analysis.interface import Location, ScanContext
from weightguard.analysis.opcodes import OPCODE_NAMES, AnomalyKind, CallRef, GlobalRef, PickleTrace, walk_pickle
from weightguard.errors import LimitExceeded
from weightguard.findings import Finding, Rule, RuleKind, Severity
from weightguard.formats.interface import FileFormat
from weightguard.sources.interface import ByteSource, BytesSource, SliceSource

_FICKLING_MAX_BYTES = 1 << 20  # decompile only small streams (evidence, not analysis)
_FICKLING_MAX_OPCODES = 100_000  # fickling interprets about 3 us per opcode: 10^6 opcodes cost seconds
_FICKLING_MAX_NODES = 20_000  # fickling's AST shares memo nodes; unparsing a DAG can explode
_DECOMPILED_CHARS = 2000
_MAX_STREAMS = 64  # stacked streams analysed in one raw pickle file before the rest counts as trailing data

# Anomalies that only say the bytes do not parse: alone they do not make a constant a pickle.
_PARSE_ERRORS = frozenset({
    AnomalyKind.INVALID_OPCODE, AnomalyKind.TRUNCATED, AnomalyKind.MISSING_STOP, AnomalyKind.STACK_UNDERFLOW,
    AnomalyKind.MEMO_MISS, AnomalyKind.BAD_ARGUMENT, AnomalyKind.UNKNOWN_PROTOCOL, AnomalyKind.TOO_MANY,
})  # fmt: skip

_ANOMALY_RULES: dict[AnomalyKind, Rule] = {
    AnomalyKind.NONCONST_GLOBAL: codes.INDIRECT_GLOBAL,
    AnomalyKind.INDIRECT_CALL: codes.INDIRECT_GLOBAL,
    AnomalyKind.EXTENSION: codes.EXTENSION_CODE,
    AnomalyKind.GLOBAL_MUTATION: codes.GLOBAL_MUTATION,
    AnomalyKind.UNUSED_VALUES: codes.UNUSED_VALUES,
}


def analyze_stream(
    source: ByteSource, start: int, where: Location, ctx: ScanContext
) -> tuple[PickleTrace, list[Finding]]:
    """Walk ONE pickle stream from ``start`` and return its trace and findings.

    Args:
        source: The bytes holding the stream.
        start: Offset of the stream's first opcode.
        where: Location used for the findings.
        ctx: Limits, pickle policy and nested dispatch.

    Returns:
        The trace (``trace.end`` is where the stream stopped) and the findings.

    Raises:
        LimitExceeded: a limit was reached (the scanner records it as an ERROR finding).
    """
    trace = walk_pickle(source, start, ctx)
    return trace, judge(trace, source, where, ctx)


def judge(trace: PickleTrace, source: ByteSource, where: Location, ctx: ScanContext) -> list[Finding]:
    """Turn a trace into findings (allowlist, anomalies, refuse mode, nested constants)."""
    findings: list[Finding] = []
    if ctx.pickle.mode == "refuse":
        findings.append(_at(codes.PICKLE_REFUSED, where, "pickle streams are refused by policy", offset=trace.start))
    findings.extend(_global_findings(trace, where, ctx))
    findings.extend(_anomaly_findings(trace, where))
    findings.extend(_nested_findings(trace, source, where, ctx))
    if ctx.pickle.fickling_evidence:
        findings = _with_decompiled(findings, trace, source)
    return findings


def _at(rule: Rule, where: Location, message: str, **evidence: object) -> Finding:
    found = rule.at(where.path, message, member=where.member)
    return dataclasses.replace(found, evidence={k: str(v) for k, v in evidence.items()})


def _global_findings(trace: PickleTrace, where: Location, ctx: ScanContext) -> Iterator[Finding]:
    calls: dict[tuple[str, str], CallRef] = {}
    for call in trace.calls:
        calls.setdefault((call.callee.module, call.callee.qualname), call)
    seen: dict[tuple[str, str], list[GlobalRef]] = {}
    for ref in trace.globals:
        seen.setdefault((ref.module, ref.qualname), []).append(ref)
    for (module, qualname), refs in seen.items():
        first = refs[0]
        evidence: dict[str, object] = {"global": first.name, "opcode": first.opcode, "offset": first.offset}
        evidence["count"] = len(refs)
        called = calls.get((module, qualname))
        if called is not None:
            evidence["call"] = f"{called.opcode}@{called.offset}"
        if is_allowed(module, qualname):
            continue
        if is_allowed(module, qualname, ctx.pickle.extra_allowed):
            yield _at(codes.EXTRA_ALLOWED, where, f"{first.name} allowed by spec.pickle.allowed_globals", **evidence)
            continue
        yield _denied(first, where, evidence)


def _denied(ref: GlobalRef, where: Location, evidence: dict[str, object]) -> Finding:
    known = classify(ref.module, ref.qualname)
    called = f", called by {evidence['call']}" if "call" in evidence else ""
    if known is not None:
        evidence.update(danger=known.danger.value, reason=known.reason)
    if "." in ref.qualname:
        message = f"pickle walks attributes to reach {ref.name} ({ref.opcode} at offset {ref.offset}{called})"
        found = _at(codes.ATTRIBUTE_WALK, where, message, **evidence)
        return found if known is None else dataclasses.replace(found, severity=Severity.CRITICAL)
    if known is None:
        message = f"pickle imports {ref.name}, which is not allowlisted ({ref.opcode} at offset {ref.offset}{called})"
        return _at(codes.GLOBAL_NOT_ALLOWED, where, message, **evidence)
    rule = (
        codes.NESTED_DESERIALIZATION if known.danger is Danger.NESTED_DESERIALIZATION else codes.CODE_EXECUTION_GLOBAL
    )
    message = f"pickle imports {ref.name}: {known.reason} ({ref.opcode} at offset {ref.offset}{called})"
    return _at(rule, where, message, **evidence)


def _anomaly_findings(trace: PickleTrace, where: Location) -> Iterator[Finding]:
    grouped: dict[AnomalyKind, list[int]] = {}
    for anomaly in trace.anomalies:
        grouped.setdefault(anomaly.kind, []).append(anomaly.offset)
    for kind, offsets in grouped.items():
        first = next(a for a in trace.anomalies if a.kind is kind)
        rule = _ANOMALY_RULES.get(kind, codes.MALFORMED_STREAM)
        message = f"{kind.value} at offset {first.offset} ({first.opcode}): {first.detail}"
        yield _at(
            rule, where, message, anomaly=kind.value, opcode=first.opcode, offset=first.offset, count=len(offsets)
        )


def _nested_findings(trace: PickleTrace, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
    for blob in trace.embedded:
        inner = where.child(f"{blob.opcode}@{blob.offset}")
        if inner.depth > ctx.limits.max_nesting_depth:
            raise LimitExceeded("max_nesting_depth", ctx.limits.max_nesting_depth, inner.depth)
        nested: ByteSource = (
            BytesSource(blob.data) if blob.data is not None else SliceSource(source, blob.offset, blob.length)
        )
        evidence = {"offset": blob.offset, "length": blob.length, "opcode": blob.opcode}
        if not blob.pickle_like:
            yield _at(codes.NESTED_CONTENT, where, f"constant at offset {blob.offset} holds an archive", **evidence)
            yield from ctx.nested(nested, inner)
            continue
        inner_trace, inner_findings = analyze_stream(nested, 0, inner, ctx)
        if not _is_nested_pickle(inner_trace, nested, ctx):
            continue
        yield _at(codes.NESTED_CONTENT, where, f"constant at offset {blob.offset} holds a pickle", **evidence)
        yield from inner_findings
        if not any(_blocking(f) for f in inner_findings):
            walk = model_load(nested, 0, ctx.limits)
            if walk.runs_code or walk.reach is Reach.LIMIT:  # fail closed: the walk saw less than a loader
                message = f"nested pickle at offset {blob.offset}: CPython's unpickler reaches {walk.reach.value}"
                yield _at(codes.MALFORMED_STREAM, inner, message, offset=walk.offset, reach=walk.reach.value)


def _is_nested_pickle(trace: PickleTrace, nested: ByteSource, ctx: ScanContext) -> bool:
    """Whether a pickle-looking constant is a pickle a loader would act on (issue 15).

    Random tensor bytes and sentences ("(see below).") can start like a pickle, so a parse
    error alone does not make one. It is one when the walk names a global or reaches STOP,
    when it records an anomaly that is not a parse error (a frame split, an indirect call,
    an extension code...), or when CPython's unpickler, modelled by :func:`model_load`, does
    not certainly raise before any code: it reaches a global, the extension registry, a
    frame split, a STOP, or a limit. A parse anomaly the model agrees with is an error that
    every loader raises before resolving any name: the bytes are inert.
    """
    if trace.globals or trace.stopped or any(a.kind not in _PARSE_ERRORS for a in trace.anomalies):
        return True
    return model_load(nested, 0, ctx.limits).reach is not Reach.ERROR


def _with_decompiled(findings: list[Finding], trace: PickleTrace, source: ByteSource) -> list[Finding]:
    index = next((i for i, f in enumerate(findings) if _blocking(f)), None)
    if index is None or trace.end - trace.start > _FICKLING_MAX_BYTES or trace.opcodes > _FICKLING_MAX_OPCODES:
        return findings
    text = _decompile(source.read_at(trace.start, trace.end - trace.start))
    if text is not None:
        evidence = {**findings[index].evidence, "decompiled": text[:_DECOMPILED_CHARS]}
        findings[index] = dataclasses.replace(findings[index], evidence=evidence)
    return findings


def _blocking(finding: Finding) -> bool:
    return finding.kind is RuleKind.FINDING and finding.severity.at_least(Severity.MEDIUM)


def _decompile(data: bytes) -> str | None:
    """Return fickling's decompiled view of ``data``, or None when fickling cannot produce one.

    This is the single seam to fickling, a foreign library run on hostile bytes: it may raise anything
    (its own errors, ValueError, RecursionError, ...), and its failure must only drop the evidence.
    fickling also writes warnings about malformed streams straight to ``sys.stdout`` (a STACK_GLOBAL
    whose operands are not strings, issue 15: it corrupted ``--format json``) and ``sys.stderr``
    (interpretation errors, its resource limits). They are dropped (see :func:`_quiet_fickle`),
    because the analysis stage never prints: the findings already say it.
    """
    try:
        fickle = _quiet_fickle()
        tree = fickle.Pickled.load(data).ast
        # fickling returns an empty module when it gave up (malformed stream, its own limits).
        if not tree.body or _too_big(tree):
            return None
        return ast.unparse(tree)
    except Exception:  # noqa: BLE001 - see docstring: fickling's failures only remove evidence
        return None


class _Discard(io.TextIOBase):
    """A text stream that drops what is written to it."""

    def write(self, text: str) -> int:
        return len(text)


class _QuietSys:
    """Stands in for ``sys`` inside ``fickling.fickle``: its stdout and stderr drop writes; the rest is ``sys``.

    ``contextlib.redirect_stdout`` would swap the process-wide ``sys.stdout`` for the duration of a
    call: another thread writing a report meanwhile would lose it, and two overlapping redirections
    can restore each other's stand-in for good. This stand-in is seen only by fickling's module, for
    every thread, and the process's own streams are never touched.
    """

    stdout = _Discard()
    stderr = _Discard()

    def __getattr__(self, name: str) -> object:
        return getattr(sys, name)


def _quiet_fickle() -> Any:
    """Import ``fickling.fickle`` (only when evidence is wanted) with its writes dropped."""
    import fickling.fickle as fickle  # noqa: PLC0415 - optional evidence, import only when needed

    if not isinstance(fickle.sys, _QuietSys):
        fickle.sys = _QuietSys()  # its only uses: version checks, stdlib names, and these warnings
    return fickle


def _too_big(tree: ast.AST) -> bool:
    """True when the AST, expanded as a tree (shared nodes counted each time), exceeds the node cap."""
    todo, count = [tree], 0
    while todo:
        count += 1
        if count > _FICKLING_MAX_NODES:
            return True
        todo.extend(ast.iter_child_nodes(todo.pop()))
    return False


class PickleAnalyzer:
    """Analyzer for a raw pickle file: every stream in it, and whatever follows the last STOP."""

    name = "pickle"
    formats = frozenset({FileFormat.PICKLE})

    def analyze(self, source: ByteSource, where: Location, ctx: ScanContext) -> Iterator[Finding]:
        """Yield findings for each stream of ``source`` and for trailing data."""
        pos = 0
        for index in range(_MAX_STREAMS + 1):
            if index:
                head = source.read_at(pos, 1)
                if index == _MAX_STREAMS or not head or head[0] not in OPCODE_NAMES:
                    message = f"{source.size - pos} bytes after STOP at offset {pos} are not analysed as pickle"
                    yield _at(codes.TRAILING_DATA, where, message, offset=pos, length=source.size - pos)
                    return
                message = f"pickle stream #{index + 1} starts at offset {pos} after the previous STOP"
                yield _at(codes.STACKED_STREAMS, where, message, offset=pos, stream=index + 1)
            trace, findings = analyze_stream(source, pos, where, ctx)
            yield from findings
            if trace.persistent_ids:
                ids = "; ".join("/".join(p) for p in trace.persistent_ids[:3])
                yield _at(codes.PERSISTENT_ID, where, f"persistent ids in a plain pickle: {ids}", offset=trace.start)
            if not trace.stopped or trace.end >= source.size:
                return
            pos = trace.end
