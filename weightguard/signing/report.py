"""The signature section of the report: a pydantic rendering of one :class:`SignatureCheck`.

It states who signed, what the signature covers (serialization, root digest,
the signer's ignore paths and which were applied), what differs on disk
(mismatched, missing, extra, tolerated, unsafe names) and every finding.
Its finding model mirrors the Report's, kept local so the report package can
embed this section without an import cycle. Not handled here: rendering text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from weightguard.finding_model import FindingFields
from weightguard.findings import Finding, RuleKind, Severity
from weightguard.policy.base import StrictModel
from weightguard.signing import codes

if TYPE_CHECKING:  # the verifier (and cryptography) is not needed to read or render a report
    from weightguard.signing.model_signing import SignatureCheck

_TITLES = {r.code: r.title for r in codes.RULES}


class SignatureFinding(FindingFields):
    """One finding about a signature; ``blocking`` when it makes the signature not hold."""

    evidence: dict[str, str] = Field(default_factory=dict)
    blocking: bool


class SignerModel(StrictModel):
    """Who signed."""

    kind: str
    description: str
    key_hint: str = ""
    subject: str = ""
    issuer: str = ""
    anchor: str = ""


class ManifestModel(StrictModel):
    """What the signed statement says."""

    predicate_type: str
    legacy: bool
    method: str
    hash_type: str
    shard_size: int | None
    root_digest: str
    resources: int
    ignore_paths: list[str]
    ignore_paths_applied: list[str]


class DiffModel(StrictModel):
    """How the model on disk differs from the signature (resource names)."""

    matched: int
    mismatched: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    extra: list[str] = Field(default_factory=list)
    tolerated: list[str] = Field(default_factory=list)
    unsafe: list[str] = Field(default_factory=list)


class SignatureReport(StrictModel):
    """The result of checking one signature file."""

    signature: str
    holds: bool
    signer: SignerModel | None = None
    manifest: ManifestModel | None = None
    diff: DiffModel | None = None
    findings: list[SignatureFinding] = Field(default_factory=list)


def _finding(f: Finding) -> SignatureFinding:
    return SignatureFinding(
        code=f.code,
        title=_TITLES.get(f.code, f.code),
        severity=f.severity,
        kind=f.kind,
        path=f.path,
        member=f.member,
        message=f.message,
        evidence=dict(f.evidence),
        blocking=f.kind is not RuleKind.FINDING or f.severity is not Severity.INFO,
    )


def signature_report(check: SignatureCheck) -> SignatureReport:
    """Build the report section for ``check``."""
    signer = check.signer
    m = check.manifest
    d = check.diff
    return SignatureReport(
        signature=check.signature,
        holds=check.holds,
        signer=None
        if signer is None
        else SignerModel(
            kind=signer.kind.value,
            description=signer.description,
            key_hint=signer.key_hint,
            subject=signer.subject,
            issuer=signer.issuer,
            anchor=signer.anchor,
        ),
        manifest=None
        if m is None
        else ManifestModel(
            predicate_type=m.predicate_type,
            legacy=m.legacy,
            method=m.method.value,
            hash_type=m.hash_type,
            shard_size=m.shard_size,
            root_digest=m.root_digest,
            resources=len(m.resources),
            ignore_paths=list(m.ignore_paths),
            ignore_paths_applied=list(check.ignore_paths_applied),
        ),
        diff=None
        if d is None
        else DiffModel(
            matched=len(d.matched),
            mismatched=list(d.mismatched),
            missing=list(d.missing),
            extra=list(d.extra),
            tolerated=list(d.tolerated),
            unsafe=list(d.unsafe),
        ),
        findings=[_finding(f) for f in check.findings],
    )


def render_text(report: SignatureReport) -> str:
    """A short human summary of the section."""
    lines = [f"signature {report.signature}: {'HOLDS' if report.holds else 'DOES NOT HOLD'}"]
    if report.signer is not None:
        lines.append(f"  signer: {report.signer.description}")
    if report.manifest is not None:
        m = report.manifest
        shard = f", shard size {m.shard_size}" if m.shard_size else ""
        lines.append(f"  manifest: {m.method}/{m.hash_type}{shard}, {m.resources} resource(s), root {m.root_digest}")
        if m.ignore_paths_applied:
            lines.append(f"  signer-excluded paths (not covered): {', '.join(m.ignore_paths_applied)}")
    for f in report.findings:
        if f.severity is Severity.INFO and f.code == codes.SIGNED_BY.code:
            continue
        where = f"{f.path}:{f.member}" if f.member else f.path
        lines.append(f"  [{f.code} {f.severity.value}] {where}: {f.message}")
    return "\n".join(lines) + "\n"
