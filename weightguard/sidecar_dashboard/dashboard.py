"""The dashboard's routes: recent verifications, one page per model digest, the rollout board.

Every page is rendered on the server from the same templates and macros as
the HTML report, with autoescaping on (model names, paths and findings are
untrusted), and served with a Content-Security-Policy that allows no script
and no fetch. The pages only read: their one form is the sign-out button
(posted to the sidecar's own sign-in routes, :mod:`weightguard.sidecar.dashboard_auth`).
Authentication is the caller's: pass the sidecar's auth dependency in
``dependencies``. Not handled here: the API, running jobs, or writing the
rollout record.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.params import Depends
from fastapi.responses import HTMLResponse
from jinja2 import PackageLoader

from weightguard.errors import WeightguardError
from weightguard.report.html import CSP, finding_view, make_environment, render_html
from weightguard.sidecar_dashboard.interface import RolloutProvider, VerificationsProvider
from weightguard.verdict.stage import StageState

DEFAULT_STAGES = ("quarantine", "staging", "canary", "production")
_DIGEST = re.compile(r"^(?:sha256:)?([a-f0-9]{64})$")
PAGE_HEADERS = {
    # As the report's policy, except that the sign-out button may post to the sidecar itself.
    "Content-Security-Policy": CSP.replace("form-action 'none'", "form-action 'self'"),
    "X-Content-Type-Options": "nosniff",
    # Not "no-referrer": with it a browser sends "Origin: null" on the sign-in/out posts, which the
    # sidecar's cross-site check must refuse; "same-origin" keeps the Referer off every other site.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
CSRF_COOKIE = "wg_csrf"
_CSRF = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
_RUNS_SHOWN = 100  # how many of its verifications a model page lists, newest first


def dashboard_router(
    store_provider: RolloutProvider,
    jobs_provider: VerificationsProvider,
    *,
    prefix: str = "/dashboard",
    dependencies: Sequence[Depends] = (),
    stages: Sequence[str] = DEFAULT_STAGES,
    recent_limit: int = 50,
) -> APIRouter:
    """Build the read-only dashboard routes.

    Args:
        store_provider: opens the rollout record (called once per request, closed after).
        jobs_provider: opens the recent verifications (called once per request, closed after).
        prefix: where the pages live.
        dependencies: route dependencies, e.g. the sidecar's bearer-token check.
        stages: the rollout stages in order (the policy's ``spec.rollout.stages``).
        recent_limit: how many verifications the front page lists.
    """
    env = make_environment([PackageLoader("weightguard.sidecar_dashboard", "templates")])
    router = APIRouter(prefix=prefix, dependencies=list(dependencies), include_in_schema=False)

    def page(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:  # noqa: ANN401
        root = str(request.url_for("dashboard_index").path)
        # The sign-out form carries the browser's anti-forgery cookie back (see dashboard_auth).
        csrf = request.cookies.get(CSRF_COOKIE, "")
        body = env.get_template(template).render(root=root, csrf=csrf if _CSRF.fullmatch(csrf) else "", **values)
        return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)

    def guarded(request: Request, build: Callable[[], HTMLResponse]) -> HTMLResponse:
        # A database the dashboard cannot read is a 503 page, never a traceback.
        try:
            return build()
        except WeightguardError as exc:
            return page(request, "dashboard_error.html.j2", 503, title="Unavailable", message=exc.message)

    @router.get("/", name="dashboard_index", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        """Recent verifications with their verdicts."""

        def build() -> HTMLResponse:
            jobs = jobs_provider()
            try:
                entries = list(jobs.recent(recent_limit))
            finally:
                jobs.close()
            counts: dict[str, int] = {}
            for e in entries:
                counts[e.verdict or e.status] = counts.get(e.verdict or e.status, 0) + 1
            return page(
                request, "dashboard_index.html.j2", title="Recent verifications", entries=entries, counts=counts
            )

        return guarded(request, build)

    @router.get("/rollout", name="dashboard_rollout", response_class=HTMLResponse)
    def rollout(request: Request) -> HTMLResponse:
        """The rollout board: which model is in which stage."""

        def build() -> HTMLResponse:
            store = store_provider()
            try:
                board = list(store.board())
            finally:
                store.close()
            return page(request, "dashboard_rollout.html.j2", title="Rollout board", columns=_columns(board, stages))

        return guarded(request, build)

    @router.get("/models/{digest}", name="dashboard_model", response_class=HTMLResponse)
    def model(request: Request, digest: str) -> HTMLResponse:
        """One model digest: stage, history, attestation and the latest findings."""
        match = _DIGEST.match(digest)
        if match is None:
            return page(request, "dashboard_error.html.j2", 404, title="Not found", message="not a sha256 digest")
        hexdigest = match.group(1)

        def build() -> HTMLResponse:
            store = store_provider()
            try:
                state, history = store.state(hexdigest), list(store.history(hexdigest))
                name = next((n for n, s in store.board() if s.digest == hexdigest), None)
            finally:
                store.close()
            jobs = jobs_provider()
            try:
                runs = list(jobs.of_digest(hexdigest, _RUNS_SHOWN))
            finally:
                jobs.close()
            if state is None and not runs:
                return page(request, "dashboard_error.html.j2", 404, title="Not found", message="unknown model digest")
            latest = next((e for e in runs if e.report is not None), None)
            views = [finding_view(f) for f in latest.report.findings] if latest and latest.report else []
            return page(
                request,
                "dashboard_model.html.j2",
                title=f"Model {name or hexdigest[:12]}",
                digest=hexdigest,
                name=name,
                state=state,
                history=history,
                runs=runs,
                latest=latest,
                findings=views,
            )

        return guarded(request, build)

    @router.get("/verifications/{verification_id}", name="dashboard_verification", response_class=HTMLResponse)
    def verification(request: Request, verification_id: str) -> HTMLResponse:
        """The full HTML report of one verification (or where it stands)."""

        def build() -> HTMLResponse:
            jobs = jobs_provider()
            try:
                entry = jobs.get(verification_id) if len(verification_id) <= 64 else None
            finally:
                jobs.close()
            if entry is None:
                return page(request, "dashboard_error.html.j2", 404, title="Not found", message="no such verification")
            if entry.report is not None:
                return HTMLResponse(render_html(entry.report), headers=PAGE_HEADERS)
            return page(request, "dashboard_pending.html.j2", title=f"Verification {entry.id}", entry=entry)

        return guarded(request, build)

    return router


def _columns(
    board: Sequence[tuple[str, StageState]], stages: Sequence[str]
) -> list[tuple[str, list[tuple[str, StageState]]]]:
    """Group the board by stage, in rollout order; stages the policy no longer names come last."""
    order = list(stages) + sorted({s.stage for _, s in board} - set(stages))
    return [(stage, [(n, s) for n, s in board if s.stage == stage]) for stage in order]


__all__ = ["CSRF_COOKIE", "DEFAULT_STAGES", "PAGE_HEADERS", "dashboard_router"]
