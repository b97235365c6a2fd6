"""Everything one sidecar app holds, passed explicitly to its routers (no module globals).

Not handled here: building it (:func:`weightguard.sidecar.app.create_app`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException

from weightguard.policy.load import LoadedPolicy
from weightguard.sidecar.auth import BearerAuth
from weightguard.sidecar.jobs import JobRunner, QueueFull
from weightguard.sidecar.jobstore import IdempotencyKey, JobRecord, KeyReused
from weightguard.sidecar.metrics import SidecarMetrics
from weightguard.sidecar.settings import SidecarSettings


@dataclass(slots=True)
class SidecarContext:
    """The collaborators of one app (mutable only in ``credentials``)."""

    settings: SidecarSettings
    policies: dict[str, LoadedPolicy]
    database: str
    runner: JobRunner
    metrics: SidecarMetrics
    auth: BearerAuth
    roots: tuple[Path, ...]
    credentials: dict[str, str] = field(default_factory=dict)

    def submit(
        self,
        kind: str,
        target: str,
        policy: str | None,
        request: str,
        job_id: str | None = None,
        key: IdempotencyKey | None = None,
        *,
        credential: str | None = None,
    ) -> JobRecord:
        """Submit a job, turning a full queue into 429 with ``Retry-After`` and a reused key into 422.

        A ``credential`` (a Harbor pull authorization) is kept in memory under the job's id before
        the job is queued, and the job is reserved for this process, which alone holds it.

        Raises:
            HTTPException: 429 when the queue is full, 422 when ``key`` named another request.
        """
        if credential is not None:
            job_id = job_id or str(uuid.uuid4())
            self.credentials[job_id] = credential  # before a worker can pick the job up
        try:
            job = self.runner.submit(kind, target, policy, request, job_id, key, reserve=credential is not None)
        except KeyReused as exc:
            self._forget(job_id, credential)
            raise HTTPException(status_code=422, detail=exc.message) from exc
        except QueueFull as exc:
            self._forget(job_id, credential)
            self.metrics.rejected_requests.inc()
            raise HTTPException(
                status_code=429,
                detail=f"the verification queue is full ({exc.message})",
                headers={"Retry-After": str(self.settings.retry_after_s)},
            ) from exc
        except Exception:
            self._forget(job_id, credential)
            raise
        return job

    def _forget(self, job_id: str | None, credential: str | None) -> None:
        """Drop the credential kept for a job that was not queued."""
        if credential is not None and job_id is not None:
            self.credentials.pop(job_id, None)

    def policy_name(self, requested: str | None) -> str:
        """The configured policy a request names (422 for an unknown one).

        Raises:
            HTTPException: 422 when no policy has that name.
        """
        name = requested or "default"
        if name not in self.policies:
            raise HTTPException(
                status_code=422, detail=f"unknown policy {name!r}; configured: {', '.join(sorted(self.policies))}"
            )
        return name


__all__ = ["SidecarContext"]
