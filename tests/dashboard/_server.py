"""Serve the real sidecar app with the dashboard mounted behind its bearer token, for the browser test.

Usage: ``_server.py MODEL_ROOT DATABASE_URL PORT`` with ``WG_TEST_TOKEN`` set. The verifier is a fake
that returns the report stored as ``report.json`` in the target folder, so the test decides each verdict;
everything else (job store, rollout registration, auth, the dashboard) is the real code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import uvicorn
from fastapi import Depends

from weightguard.report.model import Report
from weightguard.sidecar import create_app
from weightguard.sidecar.settings import SidecarSettings
from weightguard.sidecar_dashboard import dashboard_router
from weightguard.sidecar_dashboard.jobs_table import JobsTableVerifications
from weightguard.verdict.store import RolloutStore


def stored_report(target: str, _policy: str) -> Report:
    return Report.model_validate_json((Path(target) / "report.json").read_text())


def main() -> None:
    root, database, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    settings = SidecarSettings(
        host="127.0.0.1",
        port=port,
        model_roots=[Path(root)],
        database=database,
        api_token=os.environ["WG_TEST_TOKEN"],
        workers=1,
    )
    app = create_app(settings, verifier=stored_report)
    auth = app.state.context.auth
    app.include_router(
        dashboard_router(
            lambda: RolloutStore(database), lambda: JobsTableVerifications(database), dependencies=[Depends(auth)]
        )
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
