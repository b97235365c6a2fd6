"""JSON rendering: the Report model, serialised as is (the versioned contract)."""

from __future__ import annotations

from weightguard.report.model import Report


def render_json(report: Report) -> str:
    """Return the report as indented JSON."""
    return report.model_dump_json(indent=2) + "\n"
