"""The sidecar application factory: :func:`create_app` wires settings, jobs and routers into FastAPI.

Everything an app needs is built here and held by one
:class:`~weightguard.sidecar.context.SidecarContext`; there is no module-level
state, so tests can run several apps side by side. The app refuses oversized
bodies with 413 before any route sees them, answers every error as JSON (never
a traceback), and starts its job runner (re-queueing what a killed process
left behind) in the lifespan.
Not handled here: the HTTP server (``weightguard serve`` runs uvicorn).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from weightguard import __version__
from weightguard.errors import UsageError, WeightguardError
from weightguard.sidecar.api import api_router
from weightguard.sidecar.attach import ApprovalAttacher
from weightguard.sidecar.auth import BearerAuth
from weightguard.sidecar.context import SidecarContext
from weightguard.sidecar.dashboard_auth import DashboardAuth, login_router
from weightguard.sidecar.executor import JobExecutor
from weightguard.sidecar.fetch import ArtifactFetcher, FetchLimits, LocalOciLayoutFetcher
from weightguard.sidecar.harbor import harbor_router
from weightguard.sidecar.jobs import JobRunner
from weightguard.sidecar.jobstore import JobStore, JobStoreError
from weightguard.sidecar.metrics import SidecarMetrics
from weightguard.sidecar.schemas import Health
from weightguard.sidecar.settings import SidecarSettings
from weightguard.sidecar.verifier import PipelineVerifier, Verifier, load_policies
from weightguard.sidecar.webhooks import webhooks_router
from weightguard.sidecar.writeback import MlflowWriteback, RegistryWriteback
from weightguard.sidecar_dashboard.dashboard import dashboard_router
from weightguard.sidecar_dashboard.jobs_table import JobsTableVerifications
from weightguard.sources.oci_target import RegistryFetcher
from weightguard.state import database_url
from weightguard.verdict.store import RolloutStore

_log = logging.getLogger(__name__)


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes`` (declared or streamed), 408 for one slower than ``timeout_s``.

    The whole body must arrive within ``timeout_s`` of the request head (a deadline, not an idle
    timer): a client dripping a byte a second cannot hold a connection and its buffer for ever.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer the body (at most ``max_bytes``, within ``timeout_s``), then hand it to the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        # bytes.isdigit() is ASCII-only; the length bound keeps int() from refusing (a 500) 5,000 digits.
        if declared is not None and (not declared.isdigit() or len(declared) > 18 or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        deadline = anyio.current_time() + self.timeout_s
        while True:
            with anyio.move_on_after(deadline - anyio.current_time()) as waited:
                message = await receive()
            if waited.cancelled_caught:
                response = JSONResponse({"detail": f"the request body took over {self.timeout_s:g} s"}, 408)
                response.headers["connection"] = "close"
                await response(scope, receive, send)
                return
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"detail": f"request body is over {self.max_bytes} bytes"}, status_code=413)
        await response(scope, receive, send)


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the fields, never echo their (possibly huge or hostile) input back.
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(problems) or "invalid request"}, status_code=422)

    @app.exception_handler(JobStoreError)
    async def _store(_request: Request, exc: JobStoreError) -> JSONResponse:
        _log.error("jobs database: %s", exc.message)
        return JSONResponse(
            {"detail": "the jobs database is unavailable"}, status_code=503, headers={"Retry-After": "5"}
        )

    @app.exception_handler(WeightguardError)
    async def _weightguard(_request: Request, exc: WeightguardError) -> JSONResponse:
        return JSONResponse({"detail": exc.message, "hint": exc.hint}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        _log.exception("unexpected error", exc_info=exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)


def _fetcher(settings: SidecarSettings) -> ArtifactFetcher | None:
    """The Harbor adapter's fetcher: a live registry (issue 17), a local OCI layout root, or none.

    Raises:
        UsageError: both are configured (which one Harbor's scans read would be ambiguous).
    """
    limits = FetchLimits(settings.oci_max_bytes, settings.oci_max_members)
    if settings.oci_pull_from_registry:
        if settings.oci_layout_root is not None:
            raise UsageError(
                "oci_pull_from_registry and oci_layout_root are both set", hint="configure one source for Harbor scans"
            )
        return RegistryFetcher(
            limits, insecure_registries=settings.oci_insecure_registries, ca_bundle=settings.oci_ca_bundle
        )
    if settings.oci_layout_root is not None:
        return LocalOciLayoutFetcher(settings.oci_layout_root, limits)
    return None


def _attacher(settings: SidecarSettings, metrics: SidecarMetrics) -> ApprovalAttacher | None:
    """What pushes Harbor approvals back to the registry (issue 17), when ``attach_approvals`` is on.

    Raises:
        UsageError: attaching is asked for without a registry to pull from, a key, or with a model subfolder.
        TrustMaterialError: the key cannot be used (refused at start, not at the first approval).
    """
    if not settings.attach_approvals:
        return None
    if not settings.oci_pull_from_registry:
        raise UsageError("attach_approvals needs oci_pull_from_registry", hint="set WEIGHTGUARD_OCI_PULL_FROM_REGISTRY")
    if settings.attestation_key is None:
        raise UsageError("attach_approvals needs an attestation key", hint="set WEIGHTGUARD_ATTESTATION_KEY")
    if settings.oci_model_subdir:
        # `attestation verify oci://` hashes the whole artifact: an approval of one folder would never hold.
        raise UsageError("attach_approvals cannot be used with oci_model_subdir")
    from weightguard.verdict.attestation import load_attestation_key  # noqa: PLC0415 - only when attaching

    return ApprovalAttacher(
        load_attestation_key(settings.attestation_key),
        auth_file=settings.registry_auth_file,
        insecure_registries=settings.oci_insecure_registries,
        ca_bundle=settings.oci_ca_bundle,
        on_outcome=metrics.attachment,
    )


def create_app(
    settings: SidecarSettings,
    verifier: Verifier | None = None,
    *,
    fetcher: ArtifactFetcher | None = None,
    writeback: RegistryWriteback | None = None,
) -> FastAPI:
    """Build a sidecar app.

    Args:
        settings: the configuration.
        verifier: what verifies a target (default: the real pipeline under the configured policies).
        fetcher: how the Harbor adapter pulls artifacts (default: a local OCI layout root, if configured).
        writeback: how MLflow verdicts are written back (default: MLflow, if a tracking URI is configured).

    Raises:
        WeightguardError: a policy, the token file or the database cannot be used.
    """
    auth = BearerAuth(settings.tokens(), disabled=settings.unsafe_no_auth)
    policies = load_policies(settings)
    rollout = policies["default"].policy.spec.rollout
    database = database_url(settings.database, rollout.database)
    store = JobStore(database)
    if fetcher is None:
        fetcher = _fetcher(settings)
    if writeback is None and settings.mlflow_tracking_uri:
        writeback = MlflowWriteback(settings.mlflow_tracking_uri, settings.mlflow_alias)
    credentials: dict[str, str] = {}
    depth: list[JobRunner] = []
    metrics = SidecarMetrics(lambda: depth[0].depth() if depth else 0, lambda: depth[0].running() if depth else 0)
    executor = JobExecutor(
        verifier or PipelineVerifier(policies),
        database=database,
        first_stage=rollout.stages[0],
        fetcher=fetcher,
        writeback=writeback,
        model_subdir=settings.oci_model_subdir,
        credentials=credentials,
        roots=settings.model_roots,
        attacher=_attacher(settings, metrics),
    )
    runner = JobRunner(
        store,
        executor,
        workers=settings.workers,
        queue_size=settings.queue_size,
        timeout_s=settings.job_timeout_s,
        on_finish=metrics.finished,
        lease_s=settings.job_lease_s,
    )
    depth.append(runner)
    ctx = SidecarContext(
        settings=settings,
        policies=policies,
        database=database,
        runner=runner,
        metrics=metrics,
        auth=auth,
        roots=tuple(settings.model_roots),
        credentials=credentials,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        runner.start()
        try:
            yield
        finally:
            runner.stop()

    app = FastAPI(
        title="weightguard sidecar",
        version=__version__,
        description="Model-weight verification for registries: generic API, Harbor adapter, webhooks.",
        lifespan=lifespan,
        # The schema is served below behind the bearer token; no unauthenticated docs pages.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = ctx
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes, timeout_s=settings.body_timeout_s)
    _handlers(app)
    app.include_router(api_router(ctx))
    app.include_router(harbor_router(ctx))
    app.include_router(webhooks_router(ctx))
    # Browsers sign in once with the API token and get a session cookie (see dashboard_auth).
    dashboard_auth = DashboardAuth(auth)
    app.include_router(login_router(dashboard_auth))
    app.include_router(
        dashboard_router(
            lambda: RolloutStore(database, first_stage=rollout.stages[0]),
            lambda: JobsTableVerifications(database),
            dependencies=[Depends(dashboard_auth)],
            stages=rollout.stages,
        )
    )

    @app.get("/healthz", response_model=Health, tags=["operations"])
    def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok", queue_depth=runner.depth(), running=runner.running())

    @app.get("/readyz", response_model=Health, tags=["operations"], responses={503: {"model": Health}})
    def readyz() -> Response:
        """Readiness: workers started and the database answers and takes writes (issue 16)."""
        try:
            store.ping()
        except JobStoreError:
            return Response(Health(status="unavailable").model_dump_json(), 503, media_type="application/json")
        if runner.storage_error is not None:
            # A write failed (a full disk, say) and no heartbeat write has succeeded since.
            return Response(Health(status="unavailable").model_dump_json(), 503, media_type="application/json")
        if not runner.ready:
            return Response(Health(status="starting").model_dump_json(), 503, media_type="application/json")
        body = Health(status="ok", queue_depth=runner.depth(), running=runner.running())
        return Response(body.model_dump_json(), 200, media_type="application/json")

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(auth)])
    def openapi() -> JSONResponse:
        """The OpenAPI document of this app (bearer token required)."""
        return JSONResponse(app.openapi())

    @app.get("/metrics", tags=["operations"], dependencies=[Depends(auth)])
    def prometheus() -> Response:
        """Prometheus text exposition (bearer token required)."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


__all__ = ["BodyLimit", "create_app"]
