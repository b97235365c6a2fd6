"""The public Python API: scan targets and judge files under a policy.

This module wires the stages together for library users and the CLI; it owns
no logic of its own beyond choosing the default detector and analyzers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from weightguard import __version__
from weightguard.analysis.registry import default_analyzers
from weightguard.analysis.scanner import FileScan, Scanner, ScanSettings
from weightguard.findings import Finding
from weightguard.formats.detect import detect, detection_findings
from weightguard.formats.model_folder import folder_findings
from weightguard.integrity.binding import ChangedWhileHashedError, changed_finding, unchanged
from weightguard.policy.load import LoadedPolicy, load_policy
from weightguard.policy.rules import SeverityGate
from weightguard.report.build import build_report
from weightguard.report.model import Report
from weightguard.sources.interface import ArtifactFile, BytesSource
from weightguard.sources.local import LocalSource


def make_scanner(loaded: LoadedPolicy) -> Scanner:
    """Build the default scanner for a policy."""
    return Scanner(ScanSettings.from_policy(loaded.policy), detect, default_analyzers(), detection_findings)


def scan(paths: Sequence[Path], policy: LoadedPolicy | None = None, *, command: str = "scan") -> Report:
    """Scan files and directories (recursively) and judge them under ``policy``.

    Raises:
        SourceError: a target does not exist or cannot be listed.
        PolicyError: the default policy cannot be loaded.
    """
    loaded = policy or load_policy(None)
    scanner = make_scanner(loaded)
    scans: list[FileScan] = []
    extra: list[Finding] = []
    for target in paths:
        listing = LocalSource(target).collect()
        prefix = target if target.is_dir() else target.parent
        extra.extend(dataclasses.replace(f, path=_display(prefix, f.path)) for f in listing.findings)
        for artifact in listing.files:
            shown = dataclasses.replace(artifact, relpath=_display(prefix, artifact.relpath))
            scans.append(scanner.scan(shown))
            # scan does not hash, but a file rewritten or cut while it was read (its reads then
            # came back as zeros) must not pass: fstat of the same descriptor says so.
            if reason := unchanged(artifact.source):
                extra.append(changed_finding(ChangedWhileHashedError(shown.relpath, reason)))
            close = getattr(artifact.source, "close", None)
            if callable(close):
                close()
        if target.is_dir():  # what the folder's indexes make a loader read (see model_folder)
            folder = folder_findings(listing.files, scanner.settings.limits.max_header_bytes)
            extra.extend(dataclasses.replace(f, path=_display(prefix, f.path)) for f in folder)
    return build_report(
        command=command,
        targets=[str(p) for p in paths],
        loaded=loaded,
        scans=scans,
        extra_findings=extra,
        version=__version__,
        now=dt.datetime.now(dt.UTC),
    )


def scan_file_bytes(data: bytes, relpath: str, loaded: LoadedPolicy) -> FileScan:
    """Scan exactly ``data`` (the bytes a caller will load next) as file ``relpath``."""
    return make_scanner(loaded).scan(ArtifactFile(relpath, len(data), BytesSource(data)))


def file_blocking(scan: FileScan, loaded: LoadedPolicy) -> tuple[Finding, ...]:
    """Return what blocks ``scan`` under the policy; an empty tuple means approved."""
    gate = SeverityGate.from_policy(loaded.policy)
    everything = [*scan.outcome.findings, *scan.outcome.errors, *scan.outcome.skipped]
    return gate.judge(everything, dt.datetime.now(dt.UTC).date()).blocking


def _display(prefix: Path, relpath: str) -> str:
    return (prefix / relpath).as_posix() if str(prefix) not in ("", ".") else relpath
