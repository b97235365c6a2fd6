"""The sidecar's own API: submit and poll verifications, and answer rollout approval questions.

``POST /v1/verifications`` admits the target (see
:mod:`weightguard.sidecar.targets`), persists a job and answers 202 with its
id; a retry carrying the same ``Idempotency-Key`` gets the same job;
``GET /v1/verifications/{id}`` shows the job and, once done, the Report.
``GET /v1/approvals/{digest}?stage=S`` reads the rollout record and says
whether the model has reached stage S, flat so an Argo Rollouts web metric
can use ``jsonPath: "{$.approved}"`` and ``successCondition: result == true``.
Not handled here: authentication (the router's dependency) or running jobs.
"""

from __future__ import annotations

import hashlib
import json
import re

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from weightguard.sidecar.context import SidecarContext
from weightguard.sidecar.jobstore import IdempotencyKey
from weightguard.sidecar.schemas import Accepted, Approval, Problem, VerificationRequest, VerificationStatus
from weightguard.sidecar.targets import TargetRefused, admit_target
from weightguard.verdict.store import RolloutStore

_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_DIGEST = re.compile(r"^(?:sha256:)?([a-f0-9]{64})$")
_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem},
    413: {"model": Problem},
    422: {"model": Problem},
    429: {"model": Problem},
}


def admit(ctx: SidecarContext, target: str) -> str:
    """Admit ``target`` or answer with the refusal's status.

    Raises:
        HTTPException: 403 outside the model roots, 422 malformed or missing.
    """
    try:
        return admit_target(target, ctx.roots)
    except TargetRefused as exc:
        raise HTTPException(status_code=exc.status, detail=exc.message) from exc


def idempotency_key(request: Request, body: VerificationRequest) -> IdempotencyKey | None:
    """The request's ``Idempotency-Key`` (IETF httpapi draft) with a fingerprint of its body, or None.

    Raises:
        HTTPException: 400 for a key that is not 1 to 255 visible ASCII characters.
    """
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    if not _KEY.fullmatch(raw):
        raise HTTPException(status_code=400, detail="Idempotency-Key must be 1 to 255 visible ASCII characters")
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return IdempotencyKey("v1/verifications", raw, hashlib.sha256(canonical.encode()).hexdigest())


def api_router(ctx: SidecarContext) -> APIRouter:
    """Build the ``/v1`` routes around ``ctx``."""
    router = APIRouter(prefix="/v1", dependencies=[Depends(ctx.auth)], responses=_ERRORS, tags=["verifications"])

    @router.post("/verifications", status_code=202, response_model=Accepted)
    def submit(body: VerificationRequest, request: Request, response: Response) -> Accepted:
        """Queue a verification of a local model (inside a model root) or an ``hf://`` revision.

        With an ``Idempotency-Key`` header a retried request gets the same job (and the same
        answer); the same key with a different body is refused with 422.
        """
        key = idempotency_key(request, body)
        policy = ctx.policy_name(body.policy)
        target = admit(ctx, body.target)
        job = ctx.submit("verify", target, policy, json.dumps({"target": body.target}), key=key)
        location = str(request.url_for("verification", job_id=job.id).path)
        response.headers["Location"] = location
        return Accepted(id=job.id, status=job.status, location=location)

    @router.get("/verifications/{job_id}", name="verification", response_model=VerificationStatus)
    def status(job_id: str) -> VerificationStatus:
        """Where a verification stands; the Report once it is done."""
        job = ctx.runner.store.get(job_id) if len(job_id) <= 64 else None
        if job is None:
            raise HTTPException(status_code=404, detail=f"no verification job {job_id!r}")
        return VerificationStatus.of(job)

    @router.get("/approvals/{digest}", response_model=Approval, tags=["rollout"])
    def approval(digest: str, stage: str = Query(..., max_length=64)) -> Approval:
        """Whether the model with this OMS root digest has reached ``stage`` in the rollout record."""
        match = _DIGEST.match(digest)
        if match is None:
            raise HTTPException(status_code=422, detail="digest must be 64 hex digits, optionally prefixed sha256:")
        spec = ctx.policies["default"].policy.spec.rollout
        if stage not in spec.stages:
            raise HTTPException(status_code=422, detail=f"unknown stage {stage!r}; stages are {', '.join(spec.stages)}")
        hexdigest = match.group(1)
        store = RolloutStore(ctx.database, first_stage=spec.stages[0])
        try:
            state = store.state(hexdigest)
            events = store.history(hexdigest) if state is not None else []
        finally:
            store.close()
        attestation = next((e.attestation_sha256 for e in reversed(events) if e.attestation_sha256), None)
        if state is None:
            return Approval(
                digest=hexdigest, stage=stage, approved=False, current_stage=None, reason="not in the rollout record"
            )
        reached = state.stage in spec.stages and spec.stages.index(state.stage) >= spec.stages.index(stage)
        reason = f"in {state.stage} since {state.entered_at.isoformat()}"
        return Approval(
            digest=hexdigest,
            stage=stage,
            approved=reached,
            current_stage=state.stage,
            attestation=attestation,
            reason=reason if reached else f"{reason}; {stage} not reached",
        )

    return router


__all__ = ["admit", "api_router", "idempotency_key"]
