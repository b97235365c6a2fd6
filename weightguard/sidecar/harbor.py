"""Harbor Pluggable Scanner Adapter API v1.2 (goharbor/pluggable-scanner-spec, scanner-adapter-openapi-v1.2.yaml).

``GET /api/v1/metadata`` describes the scanner; ``POST /api/v1/scan`` queues
a job (202 ``{"id"}``); ``GET /api/v1/scan/{id}/report`` answers 302 with
``Refresh-After`` (the header Harbor's client reads) and ``Retry-After``
(the README's) while the job runs, then the report: a
``HarborVulnerabilityReport`` whose items are weightguard findings (rule id
as ``id``, file inside the image as ``package``, the file's sha256 as
``version``), or weightguard's own Report as the ``raw`` type. A job that
could not be done answers 500, one whose artifact could not be pulled (a
wrong pull credential, a missing manifest) 422, both in the spec's
``ErrorResponse`` shape; Harbor records either as a failed scan.
Severity: weightguard's levels map one to one (info -> Negligible); a
blocking finding is raised to at least High and a report that is not
approved is at least High overall, so a project set to prevent pulls at High
blocks anything weightguard did not approve (fail closed).
The artifact's pull credential is kept in memory only, never in the database.
Not handled here: pulling the image (:mod:`weightguard.sidecar.fetch`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from functools import partial
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from weightguard import __version__
from weightguard.findings import Severity
from weightguard.report.model import FindingModel, Report
from weightguard.sidecar.context import SidecarContext
from weightguard.sidecar.jobstore import JobRecord

METADATA_TYPE = "application/vnd.scanner.adapter.metadata+json; version=1.1"
SCAN_RESPONSE_TYPE = "application/vnd.scanner.adapter.scan.response+json; version=1.0"
ERROR_TYPE = "application/vnd.scanner.adapter.error+json; version=1.0"
VULN_REPORT_TYPE = "application/vnd.security.vulnerability.report; version=1.1"
HARBOR_REPORT_TYPE = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
RAW_REPORT_TYPE = "application/vnd.scanner.adapter.vuln.report.raw"
CONSUMES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")
PRODUCES = (VULN_REPORT_TYPE, HARBOR_REPORT_TYPE, RAW_REPORT_TYPE)

HarborSeverity = Literal["Unknown", "Negligible", "Low", "Medium", "High", "Critical"]
_ORDER: tuple[HarborSeverity, ...] = ("Unknown", "Negligible", "Low", "Medium", "High", "Critical")
_MAP: dict[Severity, HarborSeverity] = {
    Severity.INFO: "Negligible",
    Severity.LOW: "Low",
    Severity.MEDIUM: "Medium",
    Severity.HIGH: "High",
    Severity.CRITICAL: "Critical",
}
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


class _Inbound(BaseModel):
    # The spec's schemas do not forbid extra properties and Harbor's client sends more than
    # the spec lists, so inbound bodies ignore unknown fields (our own outbound ones are exact).
    model_config = ConfigDict(extra="ignore", frozen=True)


class Registry(_Inbound):
    """``Registry``: where to pull from, with an optional Authorization header value."""

    url: str = ""
    authorization: str | None = Field(default=None, repr=False)


class Artifact(_Inbound):
    """``Artifact``: what to scan."""

    repository: str = Field(min_length=1, max_length=255)
    digest: str
    tag: str | None = None
    mime_type: str | None = None


class Capability(_Inbound):
    """One item of ``enabled_capabilities``."""

    type: str
    produces_mime_types: list[str] | None = None


class ScanRequest(_Inbound):
    """``ScanRequest``."""

    registry: Registry
    artifact: Artifact
    enabled_capabilities: list[Capability] | None = None


class VulnerabilityItem(BaseModel):
    """``VulnerabilityItem``, one per weightguard finding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    package: str
    version: str
    fix_version: str = ""
    severity: HarborSeverity
    description: str
    links: list[str] = Field(default_factory=list)
    cwe_ids: list[str] = Field(default_factory=list)
    vendor_attributes: dict[str, object] = Field(default_factory=dict)


class HarborVulnerabilityReport(BaseModel):
    """``HarborVulnerabilityReport``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    generated_at: dt.datetime
    artifact: dict[str, str]
    scanner: dict[str, str]
    severity: HarborSeverity
    vulnerabilities: list[VulnerabilityItem]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": {"message": message}})
    return Response(body, status_code=status, media_type=ERROR_TYPE, headers=headers)


def _at_least(level: HarborSeverity, floor: HarborSeverity) -> HarborSeverity:
    return level if _ORDER.index(level) >= _ORDER.index(floor) else floor


def _item(finding: FindingModel, files: dict[str, str], report: Report) -> VulnerabilityItem:
    level = _MAP[finding.severity]
    return VulnerabilityItem(
        id=finding.code,
        package=f"{finding.path}:{finding.member}" if finding.member else finding.path,
        version=files.get(finding.path, ""),
        severity=_at_least(level, "High") if finding.blocking else level,
        description=f"{finding.title}: {finding.message}",
        vendor_attributes={
            "weightguard_severity": finding.severity.value,
            "kind": finding.kind.value,
            "blocking": finding.blocking,
            "evidence": dict(finding.evidence),
            "verdict": report.verdict,
            "policy": f"{report.policy.name}@sha256:{report.policy.sha256}",
        },
    )


def vulnerability_report(report: Report, artifact: dict[str, str]) -> HarborVulnerabilityReport:
    """Map a weightguard Report to Harbor's vulnerability report."""
    files = report.subject.files if report.subject is not None else {}
    items = [_item(f, files, report) for f in report.findings if f.suppressed_by is None]
    top: HarborSeverity = "Unknown"
    for item in items:
        top = _at_least(top, item.severity)
    if report.verdict != "approved":
        top = _at_least(top, "High")
    return HarborVulnerabilityReport(
        generated_at=report.generated_at,
        artifact=artifact,
        scanner={"name": "weightguard", "vendor": "weightguard", "version": __version__},
        severity=top,
        vulnerabilities=items,
    )


def _accepted_type(accept: str) -> str | None:
    """The report type to answer with (first one we produce, in the client's order)."""
    for part in (p.strip() for p in accept.split(",")):
        if not part or part.startswith("*/*") or part.startswith("application/*"):
            return VULN_REPORT_TYPE
        normalized = re.sub(r"\s*;\s*", "; ", part)
        if normalized in PRODUCES:
            return normalized
        if normalized.split(";")[0] == RAW_REPORT_TYPE:
            return RAW_REPORT_TYPE
    return None if accept.strip() else VULN_REPORT_TYPE


def harbor_router(ctx: SidecarContext) -> APIRouter:
    """Build the ``/api/v1`` routes of the Harbor adapter around ``ctx``."""
    router = APIRouter(prefix="/api/v1", dependencies=[Depends(ctx.auth)], tags=["harbor"])
    default = ctx.policies["default"]

    @router.get("/metadata")
    def metadata() -> Response:
        """Scanner metadata and capabilities (``ScannerAdapterMetadata``)."""
        body = {
            "scanner": {"name": "weightguard", "vendor": "weightguard", "version": __version__},
            "capabilities": [
                {"type": "vulnerability", "consumes_mime_types": list(CONSUMES), "produces_mime_types": list(PRODUCES)}
            ],
            "properties": {
                "harbor.scanner-adapter/scanner-type": "model-weights",
                "weightguard/policy": default.name,
                "weightguard/policy-digest": f"sha256:{default.sha256}",
            },
        }
        return Response(json.dumps(body), media_type=METADATA_TYPE)

    @router.post("/scan", status_code=202)
    async def scan(request: Request) -> Response:
        """Accept a scan request: validate, persist, queue, answer 202 ``{"id": ...}``."""
        try:
            parsed = ScanRequest.model_validate(json.loads(await request.body()))
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested past the parser's stack
            if isinstance(exc, ValidationError):
                fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
                return _error(422, f"invalid field(s): {fields}")
            return _error(400, "the body is not valid JSON")
        artifact = parsed.artifact
        if not _DIGEST.match(artifact.digest):
            return _error(422, "artifact.digest must be sha256:<64 hex digits>")
        if artifact.mime_type is not None and artifact.mime_type not in CONSUMES:
            return _error(501, f"cannot scan artifacts of type {artifact.mime_type}")
        caps = parsed.enabled_capabilities
        if caps is not None and not any(c.type == "vulnerability" for c in caps):
            return _error(501, "only the vulnerability capability is provided")
        shown = f"{parsed.registry.url.rstrip('/')}/{artifact.repository}@{artifact.digest}"
        stored = {"registry_url": parsed.registry.url, "repository": artifact.repository, "digest": artifact.digest}
        stored |= {"tag": artifact.tag or "", "mime_type": artifact.mime_type or ""}
        from starlette.concurrency import run_in_threadpool  # noqa: PLC0415 - the DB write must not block the loop

        # The credential is kept before the job is queued (a worker may start it at once), and the job
        # is reserved for this process: another sidecar on the database has no credential (issue 17).
        job = await run_in_threadpool(
            partial(ctx.submit, credential=parsed.registry.authorization or None),
            "harbor",
            shown,
            "default",
            json.dumps(stored),
        )
        return Response(json.dumps({"id": job.id}), status_code=202, media_type=SCAN_RESPONSE_TYPE)

    @router.get("/scan/{scan_request_id}/report")
    def report(scan_request_id: str, request: Request) -> Response:
        """The report: 302 + ``Refresh-After`` while running, 200 when done, 500 if the scan failed."""
        job = ctx.runner.store.get(scan_request_id) if len(scan_request_id) <= 64 else None
        if job is None or job.kind != "harbor":
            return _error(404, f"no scan request {scan_request_id!r}")
        if request.query_params.get("sbom_media_type"):
            return _error(501, "this scanner does not produce SBOMs")
        wanted = _accepted_type(request.headers.get("accept", ""))
        if wanted is None:
            return _error(501, f"cannot produce {request.headers.get('accept', '')[:200]!r}")
        if job.status in ("queued", "running"):
            wait = str(ctx.settings.retry_after_s)
            return Response(status_code=302, headers={"Refresh-After": wait, "Retry-After": wait})
        if job.status == "failed" or job.report is None:
            error = json.loads(job.error) if job.error else {}
            # The artifact could not be pulled (a wrong or expired credential, say): the request's
            # fault, not the adapter's, so 422 rather than 500; either way Harbor records a failed scan.
            status = 422 if error.get("kind") == "FetchError" else 500
            return _error(status, str(error.get("message", "the scan failed")))
        return _render(job, wanted)

    return router


def _render(job: JobRecord, wanted: str) -> Response:
    report = Report.model_validate_json(job.report or "")
    if wanted == RAW_REPORT_TYPE:
        return Response(report.model_dump_json(), media_type=RAW_REPORT_TYPE)
    artifact = {k: job.request_field(k) for k in ("repository", "digest", "tag", "mime_type") if job.request_field(k)}
    body = vulnerability_report(report, artifact)
    return Response(body.model_dump_json(), media_type=wanted)


__all__ = ["ScanRequest", "harbor_router", "vulnerability_report"]
