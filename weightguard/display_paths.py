"""How paths in findings are shown: as the user named the target (repo-relative in CI, for SARIF).

Pure string work over records; not handled here: resolving targets or reading files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from weightguard.findings import Finding, Outcome

if TYPE_CHECKING:
    from weightguard.analysis.scanner import FileScan
    from weightguard.pipeline import ResolvedTarget


def shown_scan(scan: FileScan, shown: Callable[[str], str]) -> FileScan:
    """The scan with every path rewritten by ``shown`` (for display)."""

    def move(findings: tuple[Finding, ...]) -> tuple[Finding, ...]:
        return tuple(dataclasses.replace(f, path=shown(f.path)) for f in findings)

    outcome = Outcome(move(scan.outcome.findings), move(scan.outcome.errors), move(scan.outcome.skipped))
    return dataclasses.replace(scan, relpath=shown(scan.relpath), outcome=outcome)


def display_paths(target: str, resolved: ResolvedTarget) -> Callable[[str], str]:
    """Paths in findings are shown as the user named them (repo-relative in CI, for SARIF)."""
    if target.startswith(("hf://", "oci://")):  # remote targets: paths relative to the model
        return lambda rel: rel
    base = Path(target) if Path(target).is_dir() else Path(target).parent
    if str(base) in ("", "."):
        return lambda rel: rel
    return lambda rel: base.as_posix() if rel in ("", ".") else (base / rel).as_posix()
