"""Webhook receivers: the Hugging Face Hub and the MLflow Model Registry.

``POST /hooks/huggingface`` checks ``X-Webhook-Secret`` (the Hub sends the
secret verbatim; compared in constant time), parses the payload with
``huggingface_hub``'s ``WebhookPayload`` and, for ``repo.content`` updates of
model repositories, queues one verification per new revision pinned by
commit (``hf://{repo}@{newSha}``); a revision already queued or verified under
the same policy is not queued again (the job id is derived from it), so a
replayed or retried delivery answers 200 ``duplicate`` with the same job.
``POST /hooks/mlflow`` checks ``X-MLflow-Signature`` (HMAC-SHA256 over
``{delivery_id}.{timestamp}.{body}``, as ``mlflow/webhooks/delivery.py``
signs it), refuses timestamps older than ``mlflow_max_skew_s``, de-duplicates
on ``X-MLflow-Delivery-Id`` (the job id is derived from it), ignores the tag
and alias events weightguard's own write-back causes, and queues a
verification of each new model version's ``source`` when it is an ``hf://``
reference or a local path inside a model root.
A receiver whose secret is not configured answers 404. These routes take no
bearer token: neither sender can send one; their secrets authenticate them.
Not handled here: the write-back itself (:mod:`weightguard.sidecar.writeback`).
"""

from __future__ import annotations

import json
import re
import time
import uuid

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from huggingface_hub import WebhookPayload
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool

from weightguard.sidecar.api import admit
from weightguard.sidecar.auth import mlflow_signature_matches, secret_matches
from weightguard.sidecar.context import SidecarContext
from weightguard.sidecar.schemas import HookResult
from weightguard.sidecar.writeback import is_own_event

_STAMP = re.compile(r"[0-9]{1,12}")
_HF_NAMESPACE = uuid.UUID("3f6f2b8e-1c0d-4e51-8f7a-2d4b9c6e0a13")
_MLFLOW_NAMESPACE = uuid.UUID("9b1c3f0e-6a57-4d2b-9a43-5f2f1f0c7e11")


class MlflowEnvelope(BaseModel):
    """The body MLflow posts: ``{entity, action, timestamp, data}`` (+ ``workspace``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    entity: str
    action: str
    timestamp: str = ""
    data: dict[str, object]


def _answer(status: int, result: HookResult) -> JSONResponse:
    return JSONResponse(result.model_dump(), status_code=status)


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser's stack
        raise HTTPException(status_code=400, detail="the body is not valid JSON") from exc


def _mlflow_target(source: str) -> str | None:
    """The verifiable target of a model version source, or None for schemes the sidecar cannot read."""
    if source.startswith("hf://"):
        return source
    if source.startswith("file://"):
        return source.removeprefix("file://")
    if source.startswith("/"):
        return source
    return None


def webhooks_router(ctx: SidecarContext) -> APIRouter:
    """Build the ``/hooks`` routes around ``ctx``."""
    router = APIRouter(prefix="/hooks", tags=["webhooks"])
    settings = ctx.settings

    @router.post("/huggingface")
    async def huggingface(request: Request) -> JSONResponse:
        """Hub webhook: verify every pushed model revision."""
        if settings.huggingface_secret is None:
            raise HTTPException(status_code=404, detail="the Hugging Face receiver is not configured")
        if not secret_matches(request.headers.get("x-webhook-secret"), settings.huggingface_secret.get_secret_value()):
            raise HTTPException(status_code=401, detail="bad or missing X-Webhook-Secret")
        try:
            payload = WebhookPayload.model_validate(_json(await request.body()))
        except ValidationError as exc:
            raise HTTPException(
                status_code=422, detail=f"not a Hub webhook payload ({exc.error_count()} error(s))"
            ) from exc
        scope = payload.event.scope
        if scope != "repo.content" and not scope.startswith("repo.content."):
            return _answer(200, HookResult(ignored=f"scope {scope} is not repo.content"))
        if payload.repo.type != "model":
            return _answer(200, HookResult(ignored=f"{payload.repo.type} repositories are not verified"))
        shas = list(dict.fromkeys(r.newSha for r in payload.updatedRefs or [] if r.newSha))
        if not shas:
            return _answer(200, HookResult(ignored="no new revision"))
        policy = ctx.policy_name(settings.huggingface_policy)
        jobs = []
        created = False
        for sha in shas:
            target = admit(ctx, f"hf://{payload.repo.name}@{sha}")
            stored = json.dumps({"repo": payload.repo.name, "sha": sha})
            # The Hub sends no delivery id (``webhook.id`` names the webhook, not the delivery), so the
            # revision itself is the key: a replayed or retried delivery names the same job (issue 16).
            job_id = str(uuid.uuid5(_HF_NAMESPACE, f"{target}|{policy}"))
            job = await run_in_threadpool(ctx.runner.store.get, job_id)
            if job is None:
                created = True
                job = await run_in_threadpool(ctx.submit, "huggingface", target, policy, stored, job_id)
            jobs.append(job.id)
        return _answer(202 if created else 200, HookResult(jobs=jobs, duplicate=not created))

    @router.post("/mlflow")
    async def mlflow(request: Request) -> JSONResponse:
        """MLflow webhook: verify each new model version; ignore weightguard's own write-back events."""
        if settings.mlflow_secret is None:
            raise HTTPException(status_code=404, detail="the MLflow receiver is not configured")
        delivery = request.headers.get("x-mlflow-delivery-id", "")
        stamp = request.headers.get("x-mlflow-timestamp", "")
        signature = request.headers.get("x-mlflow-signature", "")
        # ASCII digits, bounded: str.isdigit() accepts "²" and int() refuses 5,000 digits (issue 16: 500s).
        if not (delivery and _STAMP.fullmatch(stamp) and signature) or len(delivery) > 128:
            raise HTTPException(status_code=401, detail="missing X-MLflow-Delivery-Id, -Timestamp or -Signature")
        if abs(time.time() - int(stamp)) > settings.mlflow_max_skew_s:
            raise HTTPException(status_code=401, detail="stale X-MLflow-Timestamp")
        body = await request.body()
        if not mlflow_signature_matches(settings.mlflow_secret.get_secret_value(), delivery, stamp, body, signature):
            raise HTTPException(status_code=401, detail="bad X-MLflow-Signature")
        try:
            envelope = MlflowEnvelope.model_validate(_json(body))
        except ValidationError as exc:
            raise HTTPException(status_code=422, detail="not an MLflow webhook payload") from exc
        event = f"{envelope.entity}.{envelope.action}"
        if is_own_event(event, envelope.data, settings.mlflow_alias):
            return _answer(200, HookResult(ignored="caused by weightguard's own write-back"))
        if event != "model_version.created":
            return _answer(200, HookResult(ignored=f"event {event} is not handled"))
        name, version = str(envelope.data.get("name", "")), str(envelope.data.get("version", ""))
        source = str(envelope.data.get("source", ""))
        if not name or not version:
            raise HTTPException(status_code=422, detail="model_version.created without name or version")
        target = _mlflow_target(source)
        if target is None:
            return _answer(200, HookResult(ignored=f"source {source!r} is not a local path or hf:// reference"))
        target = admit(ctx, target)
        policy = ctx.policy_name(settings.mlflow_policy)
        job_id = str(uuid.uuid5(_MLFLOW_NAMESPACE, delivery))
        existing = await run_in_threadpool(ctx.runner.store.get, job_id)
        if existing is not None:
            return _answer(200, HookResult(jobs=[job_id], duplicate=True))
        stored = json.dumps({"name": name, "version": version, "source": source, "delivery_id": delivery})
        job = await run_in_threadpool(ctx.submit, "mlflow", target, policy, stored, job_id)
        return _answer(202, HookResult(jobs=[job.id]))

    return router


__all__ = ["MlflowEnvelope", "webhooks_router"]
