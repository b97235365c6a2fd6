"""The approval attestation of a report: the checks it records, and its signed Sigstore bundle.

One writer for both ``verify --attest`` (:mod:`weightguard.pipeline`) and the
sidecar's pushed approvals (:mod:`weightguard.sidecar.attach`), so the two
statements cannot drift apart. The policy fields come from ``report.policy``,
which :func:`weightguard.report.build.policy_ref` fills from the loaded policy.
Not handled here: building the statement and signing it (:mod:`.attestation`).
"""

from __future__ import annotations

import datetime as dt

from weightguard import __version__
from weightguard.report.model import Report
from weightguard.signing.keys import PrivateKey
from weightguard.verdict.attestation import AttestationInput, build_statement, sign_statement


def approval_bundle(
    report: Report, key: PrivateKey, *, model_name: str, resource_uri: str, time_verified: dt.datetime
) -> bytes:
    """The Sigstore bundle of the attestation for ``report`` (its subject, policy, verdict and checks)."""
    subject = report.subject
    assert subject is not None  # callers attest only judged subjects
    assert subject.root_digest is not None
    statement = build_statement(
        AttestationInput(
            model_name=model_name,
            root_digest=subject.root_digest,
            files=subject.files,
            resource_uri=resource_uri,
            policy_uri=report.policy.origin,
            policy_sha256=report.policy.sha256,
            policy_layers=tuple((layer.origin, layer.sha256) for layer in report.policy.layers),
            verdict=report.verdict,
            checks=attestation_checks(report),
            time_verified=time_verified,
            version=__version__,
        )
    )
    return sign_statement(statement, key)


def attestation_checks(report: Report) -> dict[str, str]:
    """The checks an attestation records, by the names rollout requirements use."""
    result = {"passed": "PASSED", "failed": "FAILED", "incomplete": "FAILED", "skipped": "SKIPPED"}
    by_stage = {s.name: result[s.status] for s in report.stages}
    checks = {
        "scan": by_stage.get("analysis", "SKIPPED"),
        "integrity": by_stage.get("integrity", "SKIPPED"),
        "conversion": by_stage.get("conversion", "SKIPPED"),
        "probes": by_stage.get("probes", "SKIPPED"),
    }
    if report.signatures:
        checks["signature"] = "PASSED" if all(s.holds for s in report.signatures) else "FAILED"
    else:
        checks["signature"] = "SKIPPED"
    return checks


__all__ = ["approval_bundle", "attestation_checks"]
