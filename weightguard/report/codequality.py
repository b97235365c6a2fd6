"""GitLab code-quality rendering (the Code Climate subset GitLab reads).

Each finding becomes one issue with a stable fingerprint; GitLab shows them in
merge requests. Pure function of the Report, like every renderer.
"""

from __future__ import annotations

import hashlib
import json

from weightguard.findings import Severity
from weightguard.report.model import Report

_SEVERITY = {
    Severity.CRITICAL: "blocker",
    Severity.HIGH: "critical",
    Severity.MEDIUM: "major",
    Severity.LOW: "minor",
    Severity.INFO: "info",
}


def render_codequality(report: Report) -> str:
    """Return the report as a GitLab code-quality JSON array."""
    issues = []
    for f in report.findings:
        if f.suppressed_by is not None:
            continue
        identity = "\x00".join((f.code, f.path, f.member, f.message))
        issues.append(
            {
                "description": f"{f.code} {f.title}: {f.message}" + (f" ({f.member})" if f.member else ""),
                "check_name": f.code,
                "fingerprint": hashlib.sha256(identity.encode()).hexdigest(),
                "severity": _SEVERITY[f.severity],
                "location": {"path": f.path, "lines": {"begin": 1}},
            }
        )
    return json.dumps(issues, indent=2) + "\n"
