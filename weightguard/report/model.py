"""The Report: one versioned pydantic model that every renderer and the API share.

``schema_version`` changes only when a field is removed or changes meaning;
adding optional fields keeps it. Not handled here: computing anything (the
report is assembled by :mod:`weightguard.report.build`) or rendering it.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field

from weightguard.convert.interface import ConversionProof
from weightguard.finding_model import FindingFields
from weightguard.integrity.report import IntegrityReport
from weightguard.policy.base import StrictModel
from weightguard.probes.report import ProbeReport
from weightguard.signing.report import SignatureReport

SCHEMA_VERSION: Literal["1"] = "1"

Verdict = Literal["approved", "rejected", "incomplete"]


class ToolInfo(StrictModel):
    """Which weightguard produced the report."""

    name: str = "weightguard"
    version: str


class PolicyLayerRef(StrictModel):
    """One ``--policy`` layer, in the order it was applied."""

    origin: str
    sha256: str


class PolicyRef(StrictModel):
    """The policy the run was judged against.

    ``sha256`` is the file's for one layer and the merged document's for several;
    ``layers`` lists every file (or built-in) it was composed from, first to last.
    """

    name: str
    origin: str
    sha256: str
    layers: list[PolicyLayerRef] = Field(default_factory=list)


class FindingModel(FindingFields):
    """One finding as reported."""

    evidence: dict[str, str] = Field(default_factory=dict)
    blocking: bool
    suppressed_by: str | None = Field(default=None, description="reason of the policy ignore that suppressed it")


class PartModel(StrictModel):
    """A format detected somewhere in a file (the file itself or a nested member)."""

    member: str
    format: str
    confidence: str
    evidence: str
    other_candidates: list[str] = Field(default_factory=list)


class FileReport(StrictModel):
    """One scanned file."""

    path: str
    size: int
    format: str
    polyglot: bool = False
    parts: list[PartModel] = Field(default_factory=list)
    seconds: float = 0.0
    sha256: str | None = None


class Summary(StrictModel):
    """Counts for a quick look."""

    files: int
    findings: int
    blocking: int
    errors: int
    skipped: int
    suppressed: int
    by_severity: dict[str, int] = Field(default_factory=dict)


StageName = Literal["source", "analysis", "integrity", "signatures", "conversion", "probes", "verdict"]
StageStatus = Literal["passed", "failed", "incomplete", "skipped"]


class StageModel(StrictModel):
    """One pipeline stage as it ran (``verify`` only)."""

    name: StageName
    status: StageStatus
    seconds: float = 0.0
    detail: str = ""
    notes: int = Field(default=0, description="findings below the policy's gate: shown as notes, never a failure")


class SubjectModel(StrictModel):
    """The model a ``verify`` run judged: where it came from and its digests."""

    name: str
    uri: str
    root_digest: str | None = Field(default=None, description="OMS root digest (sha256 hex) of the model's files")
    files: dict[str, str] = Field(default_factory=dict, description="relpath -> sha256 hex")


class AttestationRef(StrictModel):
    """Where the signed approval attestation was written."""

    path: str
    sha256: str
    verification_result: Literal["PASSED", "FAILED"]


class Report(StrictModel):
    """Everything one run of weightguard found, and its verdict."""

    schema_version: Literal["1"] = SCHEMA_VERSION
    tool: ToolInfo
    command: str
    generated_at: dt.datetime
    targets: list[str]
    policy: PolicyRef
    verdict: Verdict
    exit_code: int
    reasons: list[str] = Field(default_factory=list)
    summary: Summary
    files: list[FileReport] = Field(default_factory=list)
    findings: list[FindingModel] = Field(default_factory=list)
    stages: list[StageModel] = Field(default_factory=list)
    subject: SubjectModel | None = None
    attestation: AttestationRef | None = None
    integrity: IntegrityReport | None = None
    signatures: list[SignatureReport] = Field(default_factory=list)
    probes: ProbeReport | None = None
    conversion: ConversionProof | None = None


# Only verify approves a model: a scan of some files passes or blocks them (issue 18).
_SCAN_WORDS: dict[Verdict, str] = {"approved": "passed", "rejected": "blocked", "incomplete": "incomplete"}


def verdict_label(report: Report) -> str:
    """The verdict as people read it; the ``verdict`` field itself keeps its schema values."""
    return _SCAN_WORDS[report.verdict] if report.command == "scan" else report.verdict
