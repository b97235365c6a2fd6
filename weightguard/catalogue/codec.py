"""Lossless JSON encoding of a file's scan, independent of where the file sits in a model.

A file unit scans the content under the placeholder path :data:`UNIT_PATH`;
:func:`relocate` swaps the placeholder for the file's real relative path in
every string of the scan (finding paths, messages, evidence, part locations),
so one cached scan serves every model holding the same bytes, under any name.
This relies on the scanner never deciding anything from a file's name (format
detection reads bytes only; a test in ``tests/test_codebase.py`` enforces it).
Not handled here: storing encoded scans (:mod:`.cache`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import cast

from weightguard.analysis.interface import DetectedPart, Location
from weightguard.analysis.scanner import FileScan
from weightguard.errors import AnalysisError
from weightguard.findings import Finding, Outcome, RuleKind, Severity
from weightguard.formats.interface import Candidate, Confidence, Detection, FileFormat

# Chosen so that no real relative path or analyzer message contains it.
UNIT_PATH = "\u241fwg-unit\u241f"

Json = dict[str, object]


def encode_finding(f: Finding) -> Json:
    """Return ``f`` as a JSON-ready dict."""
    return {
        "code": f.code,
        "severity": f.severity.value,
        "kind": f.kind.value,
        "path": f.path,
        "message": f.message,
        "member": f.member,
        "evidence": dict(f.evidence),
    }


def decode_finding(data: Mapping[str, object]) -> Finding:
    """Rebuild a finding from :func:`encode_finding`'s dict."""
    return Finding(
        code=str(data["code"]),
        severity=Severity(data["severity"]),
        kind=RuleKind(data["kind"]),
        path=str(data["path"]),
        message=str(data["message"]),
        member=str(data["member"]),
        evidence={str(k): str(v) for k, v in cast("dict[str, object]", data["evidence"]).items()},
    )


def _encode_part(part: DetectedPart) -> Json:
    return {
        "path": part.location.path,
        "members": list(part.location.members),
        "candidates": [[c.format.value, c.confidence.value, c.evidence] for c in part.detection.candidates],
    }


def _decode_part(data: Mapping[str, object]) -> DetectedPart:
    candidates = tuple(
        Candidate(FileFormat(str(fmt)), Confidence(str(conf)), str(evidence))
        for fmt, conf, evidence in cast("list[list[object]]", data["candidates"])
    )
    members = tuple(str(m) for m in cast("list[object]", data["members"]))
    return DetectedPart(Location(str(data["path"]), members), Detection(candidates))


def encode_scan(scan: FileScan) -> str:
    """Return ``scan`` as JSON text (keys sorted, so equal scans encode equally)."""
    outcome = scan.outcome
    data: Json = {
        "relpath": scan.relpath,
        "size": scan.size,
        "format": scan.format.value,
        "parts": [_encode_part(p) for p in scan.parts],
        "findings": [encode_finding(f) for f in (*outcome.findings, *outcome.errors, *outcome.skipped)],
        "seconds": scan.seconds,
    }
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def decode_scan(text: str) -> FileScan:
    """Rebuild a scan from :func:`encode_scan`'s text.

    Raises:
        AnalysisError: the text is not an encoded scan (a corrupt cache row).
    """
    try:
        data = cast("Json", json.loads(text))
        return FileScan(
            relpath=str(data["relpath"]),
            size=int(cast("int", data["size"])),
            format=FileFormat(str(data["format"])),
            parts=tuple(_decode_part(p) for p in cast("list[Json]", data["parts"])),
            outcome=Outcome.of(decode_finding(f) for f in cast("list[Json]", data["findings"])),
            seconds=float(cast("float", data["seconds"])),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise AnalysisError(f"a cached scan result cannot be read: {exc}", hint="delete the results cache") from exc


def relocate(scan: FileScan, relpath: str) -> FileScan:
    """Return ``scan`` as if the file had been scanned at ``relpath`` (see the module docstring)."""

    def move(text: str) -> str:
        return text.replace(UNIT_PATH, relpath)

    def finding(f: Finding) -> Finding:
        return dataclasses.replace(
            f,
            path=move(f.path),
            message=move(f.message),
            member=move(f.member),
            evidence={k: move(v) for k, v in f.evidence.items()},
        )

    parts = tuple(
        DetectedPart(
            Location(move(p.location.path), tuple(move(m) for m in p.location.members)),
            Detection(tuple(dataclasses.replace(c, evidence=move(c.evidence)) for c in p.detection.candidates)),
        )
        for p in scan.parts
    )
    outcome = Outcome(
        tuple(finding(f) for f in scan.outcome.findings),
        tuple(finding(f) for f in scan.outcome.errors),
        tuple(finding(f) for f in scan.outcome.skipped),
    )
    return dataclasses.replace(scan, relpath=move(scan.relpath), parts=parts, outcome=outcome)
