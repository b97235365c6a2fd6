"""Reports: one versioned model and pure renderers over it (text, JSON, SARIF)."""

from weightguard.report.model import Report

__all__ = ["Report"]
