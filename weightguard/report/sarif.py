"""SARIF 2.1.0 rendering for GitHub code scanning and other SARIF consumers.

Model files are binary, so every result points at the file (line 1) and names
the archive member or tensor as a logical location, as grype does for
non-source targets. Fingerprints are computed here (the upload action cannot
derive them from binary content). Artifact URIs are relative to
``%SRCROOT%`` (the folder weightguard ran in, usually the checkout, described
in ``originalUriBaseIds``) so code scanning maps them onto the repository;
only a file outside that root gets an absolute ``file:`` URI, and a file of an
``hf://`` or ``oci://`` model is named by the model's own URI. Hand-written
over plain dicts because no maintained SARIF library covers 2.1.0 with
GitHub's properties; the output is validated against the official schema in
the tests.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from weightguard.catalog import all_rules
from weightguard.findings import Rule, Severity
from weightguard.report.model import FindingModel, Report

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SRCROOT = "%SRCROOT%"
_REMOTE = ("hf://", "oci://")
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "1.0",
}
_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
_PRECISION = {Severity.CRITICAL: "very-high", Severity.HIGH: "high", Severity.MEDIUM: "medium"}


def _rule_descriptor(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.code,
        "name": "".join(w.capitalize() for w in rule.title.replace("-", " ").split()),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.summary},
        "help": {"text": rule.help or rule.summary, "markdown": f"**{rule.title}**\n\n{rule.summary}\n\n{rule.help}"},
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {
            "tags": ["security", "ml-model", rule.kind.value],
            "precision": _PRECISION.get(rule.severity, "low"),
            "security-severity": _SECURITY_SEVERITY[rule.severity],
        },
    }


def _fingerprint(f: FindingModel) -> str:
    identity = "\x00".join((f.code, f.path, f.member, f.evidence.get("global", ""), f.evidence.get("offset", "")))
    return hashlib.sha256(identity.encode()).hexdigest() + ":1"


def artifact_location(path: str, root: Path | None, model_uri: str | None = None) -> dict[str, str]:
    """Where a finding's file is, as a SARIF artifactLocation.

    Relative to ``%SRCROOT%`` when the file lies under ``root`` (the folder weightguard ran in;
    a relative display path is taken from there); an absolute ``file:`` URI only for a file
    outside it; under ``model_uri`` for the files of a remote (hf://, oci://) model.
    """
    posix = path.replace("\\", "/")
    if model_uri is not None and not PurePosixPath(posix).is_absolute():
        norm = posixpath.normpath(posix)
        return {"uri": model_uri if norm == "." else f"{model_uri.rstrip('/')}/{quote(norm)}"}
    pure = PurePosixPath(posix)
    if not pure.is_absolute():
        norm = posixpath.normpath(posix)
        if norm != ".." and not norm.startswith("../"):
            return {"uri": "" if norm == "." else quote(norm), "uriBaseId": SRCROOT}
        if root is None:  # outside the root, which is not known: the path as given, still relative
            return {"uri": quote(norm), "uriBaseId": SRCROOT}
        pure = PurePosixPath(posixpath.normpath(posixpath.join(root.as_posix(), posix)))
    elif root is not None and pure.is_relative_to(root.as_posix()):
        rel = pure.relative_to(root.as_posix()).as_posix()
        return {"uri": "" if rel == "." else quote(rel), "uriBaseId": SRCROOT}
    return {"uri": "file://" + quote(pure.as_posix())}


def _result(f: FindingModel, index: dict[str, int], where: dict[str, str]) -> dict[str, Any]:
    location: dict[str, Any] = {
        "physicalLocation": {
            "artifactLocation": where,
            "region": {"startLine": 1, "startColumn": 1},
        }
    }
    if f.member:
        location["logicalLocations"] = [
            {"fullyQualifiedName": f"{f.path}:{f.member}", "name": f.member, "kind": "member"}
        ]
    result: dict[str, Any] = {
        "ruleId": f.code,
        "level": _LEVEL[f.severity] if f.blocking or f.severity.at_least(Severity.MEDIUM) else "note",
        "message": {"text": f.message},
        "locations": [location],
        "partialFingerprints": {"primaryLocationLineHash": _fingerprint(f)},
        "properties": {"severity": f.severity.value, "blocking": f.blocking, "kind": f.kind.value, **f.evidence},
    }
    result["ruleIndex"] = index[f.code]
    if f.suppressed_by is not None:
        result["suppressions"] = [{"kind": "external", "justification": f.suppressed_by}]
    return result


def _rules_for(report: Report) -> list[Rule]:
    # Only the rules the results use, as grype does: keeps uploads small and stable.
    catalogue = {r.code: r for r in all_rules()}
    rules: dict[str, Rule] = {}
    for f in report.findings:
        if f.code not in rules:
            rules[f.code] = catalogue.get(f.code) or Rule(f.code, f.title, f.severity, f.title, kind=f.kind)
    return [rules[c] for c in sorted(rules)]


def sarif_log(
    *,
    version: str,
    rules: list[dict[str, Any]],
    results: list[dict[str, Any]],
    automation_id: str,
    invocation: dict[str, Any],
    properties: dict[str, Any],
    root: Path | None = None,
) -> dict[str, Any]:
    """A SARIF 2.1.0 log holding one weightguard run: the skeleton every rendering shares."""
    base: dict[str, Any] = {"description": {"text": "the folder weightguard ran in (the checkout in CI)"}}
    if root is not None:
        base["uri"] = "file://" + quote(root.as_posix().rstrip("/") + "/")
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "weightguard",
                        "version": version,
                        "semanticVersion": version,
                        "informationUri": "https://github.com/weightguard/weightguard",
                        "rules": rules,
                    }
                },
                "automationDetails": {"id": automation_id},
                "originalUriBaseIds": {SRCROOT: base},
                "invocations": [invocation],
                "results": results,
                "properties": properties,
            }
        ],
    }


def _model_uri(report: Report) -> str | None:
    subject = report.subject
    return subject.uri if subject is not None and subject.uri.startswith(_REMOTE) else None


def render_sarif_dict(report: Report, *, root: Path | None = None) -> dict[str, Any]:
    """Return the SARIF log as a dict; ``root`` is ``%SRCROOT%``, the absolute folder paths are relative to."""
    rules = _rules_for(report)
    index = {r.code: i for i, r in enumerate(rules)}
    name = report.targets[0] if len(report.targets) == 1 else "multiple"
    remote = _model_uri(report)
    return sarif_log(
        version=report.tool.version,
        rules=[_rule_descriptor(r) for r in rules],
        results=[
            # An expired ignore points at the (local) policy file, even for a remote model.
            _result(f, index, artifact_location(f.path, root, remote if f.path != report.policy.origin else None))
            for f in report.findings
        ],
        root=root,
        automation_id=f"weightguard/{name}/",
        invocation={
            "executionSuccessful": report.verdict != "incomplete",
            "commandLine": report.command,
            "properties": {
                "verdict": report.verdict,
                "policy": report.policy.name,
                "policySha256": report.policy.sha256,
            },
        },
        properties={"verdict": report.verdict, "exitCode": report.exit_code},
    )


def render_sarif(report: Report, *, root: Path | None = None) -> str:
    """Return the SARIF log as JSON text (``root``: see :func:`render_sarif_dict`)."""
    return json.dumps(render_sarif_dict(report, root=root), indent=2) + "\n"
