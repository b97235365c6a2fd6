"""Serve the real sidecar app (its dashboard behind the bearer token or a sign-in session), for the browser test.

Usage: ``_server.py MODEL_ROOT DATABASE_URL PORT`` with ``WG_TEST_TOKEN`` set. The verifier is a fake
that returns the report stored as ``report.json`` in the target folder, so the test decides each verdict;
everything else (job store, rollout registration, auth, the dashboard) is the real code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import uvicorn

from weightguard.report.model import Report
from weightguard.sidecar import create_app
from weightguard.sidecar.settings import SidecarSettings


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
    app = create_app(settings, verifier=stored_report)  # the dashboard and its sign-in are the app's own
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
