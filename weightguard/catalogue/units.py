"""Running one work unit, in whatever worker an engine chose: the only code engines ship.

A file unit scans the file under the placeholder path (see :mod:`.codec`)
through a recording source, then hashes it, checking every range the scan read
and that the bytes still hash to the unit's key. A model unit decodes its files' scans and judges the model
(:mod:`.judge`). Either way the result is JSON text, ready for the cache.
A unit that cannot finish returns a :class:`UnitResult` with an ``error``
instead of raising, so that one bad unit never stops a catalogue; only a
crash of the worker process itself is left to the engine's retries.
Not handled here: scheduling, retries, caching.
"""

from __future__ import annotations

import time
from pathlib import Path

from weightguard.api import make_scanner
from weightguard.catalogue.codec import UNIT_PATH, decode_scan, encode_scan
from weightguard.catalogue.interface import FileUnit, ModelUnit, UnitResult, WorkUnit
from weightguard.catalogue.judge import judge_model
from weightguard.errors import AnalysisError, WeightguardError
from weightguard.integrity.binding import ChangedWhileHashedError, scan_recorded
from weightguard.integrity.hashing import HashRequest, hash_files
from weightguard.policy.load import LoadedPolicy
from weightguard.sources.interface import ArtifactFile
from weightguard.sources.local import open_source


def scan_file(unit: FileUnit, loaded: LoadedPolicy) -> str:
    """Scan the content of ``unit`` and return the encoded scan.

    Raises:
        SourceError: the file cannot be read.
        AnalysisError: the file's bytes no longer hash to the unit's key.
    """
    # The path may be a Hub snapshot's link into its blobs: follow it; the digest check below
    # makes sure the bytes are the ones the unit is about, wherever the link led.
    source = open_source(Path(unit.path).resolve())
    if source.size != unit.size:
        raise AnalysisError(f"{unit.path} changed after it was hashed", hint="run verify-many again")
    # Scan first through a recording source, then hash: the hashing checks every range the scan
    # read, so the cached scan is about exactly the bytes whose sha256 keys it (issue 16).
    scan, recorded = scan_recorded(make_scanner(loaded).scan, ArtifactFile(UNIT_PATH, source.size, source))
    try:
        digest = hash_files([recorded], HashRequest())[UNIT_PATH].digests["sha256"]
    except ChangedWhileHashedError as exc:
        raise AnalysisError(
            f"{unit.path} changed while it was scanned: {exc.reason}", hint="run verify-many again"
        ) from exc
    if digest != unit.sha256:
        raise AnalysisError(f"{unit.path} changed after it was hashed", hint="run verify-many again")
    return encode_scan(scan)


def judge(unit: ModelUnit, loaded: LoadedPolicy) -> str:
    """Judge the model of ``unit`` and return its report as JSON text.

    Raises:
        WeightguardError: the model cannot be resolved or changed during the run.
    """
    scans = {sha: decode_scan(text) for sha, text in unit.scans}
    convert_dir = Path(unit.convert_dir) if unit.convert_dir else None
    pulled = (Path(unit.pulled), unit.pinned) if unit.pulled else None
    report = judge_model(unit.target, loaded, unit.hashes, scans, convert_dir=convert_dir, pulled=pulled)
    return report.model_dump_json()


def execute_unit(unit: WorkUnit, loaded: LoadedPolicy) -> UnitResult:
    """Run ``unit``; never raises (a failure is the result's ``error``)."""
    started = time.monotonic()
    try:
        payload = scan_file(unit, loaded) if isinstance(unit, FileUnit) else judge(unit, loaded)
    except WeightguardError as exc:
        return UnitResult(unit.key, unit.kind, None, exc.diagnostics(), time.monotonic() - started)
    except Exception as exc:  # noqa: BLE001 - seam: a bug in one unit must not stop the catalogue
        return UnitResult(unit.key, unit.kind, None, f"internal error: {type(exc).__name__}: {exc}")
    return UnitResult(unit.key, unit.kind, payload, "", time.monotonic() - started)
