"""Request and response bodies of the sidecar's own API and webhook receivers.

Our own bodies are strict (``extra="forbid"``, frozen); bodies defined by
other projects (Harbor, MLflow) live next to their routes and accept unknown
fields, because their senders add fields over time. A finished job carries
the same :class:`~weightguard.report.model.Report` the CLI prints.
Not handled here: behaviour.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Literal

from pydantic import Field

from weightguard.policy.base import StrictModel
from weightguard.report.model import Report, Verdict
from weightguard.sidecar.jobstore import JobRecord, JobStatus
from weightguard.sidecar.targets import MAX_TARGET_CHARS


class VerificationRequest(StrictModel):
    """``POST /v1/verifications``."""

    target: str = Field(
        min_length=1,
        max_length=MAX_TARGET_CHARS,
        description="absolute local path inside a model root, or hf://org/name@REVISION",
    )
    policy: str | None = Field(
        default=None, max_length=128, description="a configured policy name (default: 'default')"
    )


class Accepted(StrictModel):
    """A job was accepted (202) or already known (200 for a duplicate delivery)."""

    id: str
    status: JobStatus
    location: str


class JobError(StrictModel):
    """Why a job could not be done."""

    message: str
    hint: str | None = None


class VerificationStatus(StrictModel):
    """``GET /v1/verifications/{id}``: where a job stands, and its report once done."""

    id: str
    kind: str
    status: JobStatus
    target: str
    policy: str | None
    attempts: int
    submitted_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    verdict: Verdict | None = None
    report: Report | None = None
    error: JobError | None = None

    @classmethod
    def of(cls, job: JobRecord) -> VerificationStatus:
        """Render a stored job."""
        report = Report.model_validate_json(job.report) if job.report else None
        stored = json.loads(job.error) if job.error else None
        # Only the message and hint are shown; the stored ``kind`` is for the Harbor adapter's status code.
        error = JobError(message=stored["message"], hint=stored.get("hint")) if stored else None
        return cls(
            id=job.id,
            kind=job.kind,
            status=job.status,
            target=job.target,
            policy=job.policy,
            attempts=job.attempts,
            submitted_at=job.submitted_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            verdict=report.verdict if report else None,
            report=report,
            error=error,
        )


class Approval(StrictModel):
    """``GET /v1/approvals/{digest}?stage=S``, shaped for an Argo Rollouts web metric (``jsonPath: "{$.approved}"``)."""

    digest: str
    stage: str
    approved: bool
    current_stage: str | None
    attestation: str | None = Field(default=None, description="sha256 of the latest promotion attestation")
    reason: str


class HookResult(StrictModel):
    """What a webhook delivery caused."""

    jobs: list[str] = Field(default_factory=list)
    ignored: str | None = None
    duplicate: bool = False


class Problem(StrictModel):
    """An error answer."""

    detail: str
    hint: str | None = None


class Health(StrictModel):
    """``/healthz`` and ``/readyz``."""

    status: Literal["ok", "starting", "unavailable"]
    queue_depth: int = 0
    running: int = 0


__all__ = [
    "Accepted",
    "Approval",
    "Health",
    "HookResult",
    "JobError",
    "Problem",
    "VerificationRequest",
    "VerificationStatus",
]
