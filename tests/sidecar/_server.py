"""Launch a sidecar for the tests: the real `weightguard serve`, or create_app with test fakes.

Selected by environment variables (documented here because the tests rely on them):

- ``WG_TEST_VERIFIER`` unset: run the real ``weightguard serve`` command with this script's
  arguments (settings from flags and ``WEIGHTGUARD_*``), verifying with the real pipeline.
- ``WG_TEST_VERIFIER=fake``: serve ``create_app(load_settings(), verifier=FakeVerifier())``:
  the fake sleeps ``WG_TEST_DELAY`` seconds (default 0), then runs the real pipeline on the
  target (on ``sample_models/approved`` for an ``hf://`` target, since the tests are offline),
  and appends one line ``<target>`` to ``WG_TEST_LOG`` per *completed* verification, so a test
  can count how many times each job really finished (a local target is logged as the real path
  of the folder it read through its descriptor).
- ``WG_TEST_WRITEBACK_LOG``: with the fake, MLflow write-back appends JSON lines there instead of
  calling an MLflow server.
- ``WG_TEST_NOFILE``: set the process's descriptor limit (soft and hard) to this many first, as a
  small container would (the slow-client tests flood it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class FakeVerifier:
    def __init__(self) -> None:
        from weightguard.policy.load import load_builtin
        from weightguard.sidecar.verifier import PipelineVerifier

        self.inner = PipelineVerifier({"default": load_builtin("default"), "strict": load_builtin("strict")})
        self.delay = float(os.environ.get("WG_TEST_DELAY", "0"))
        self.log = os.environ.get("WG_TEST_LOG")

    def __call__(self, target: str, policy_name: str):
        time.sleep(self.delay)
        local = str(REPO / "sample_models" / "approved") if target.startswith("hf://") else target
        report = self.inner(local, policy_name if policy_name in self.inner.policies else "default")
        if self.log:
            with Path(self.log).open("a", encoding="utf-8") as out:
                # A local target comes pinned as /proc/self/fd/N (issue 16): log the folder really read.
                out.write((os.path.realpath(target) if target.startswith("/proc/self/fd/") else target) + "\n")
        return report


class FileWriteback:
    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, name: str, version: str, report) -> None:
        with Path(self.path).open("a", encoding="utf-8") as out:
            out.write(json.dumps({"name": name, "version": version, "verdict": report.verdict}) + "\n")


def main() -> None:
    if os.environ.get("WG_TEST_NOFILE"):
        import resource

        limit = int(os.environ["WG_TEST_NOFILE"])
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    if not os.environ.get("WG_TEST_VERIFIER"):
        import typer

        from weightguard.cli.serve import register

        app = typer.Typer()
        register(app)

        @app.callback()
        def _root() -> None:
            """Test entry point."""

        app(["serve", *sys.argv[1:]])
        return
    from weightguard.sidecar import create_app, load_settings
    from weightguard.sidecar.server import run

    settings = load_settings(None)
    log = os.environ.get("WG_TEST_WRITEBACK_LOG")
    app = create_app(settings, FakeVerifier(), writeback=FileWriteback(log) if log else None)
    run(app, settings, log_level="warning")


if __name__ == "__main__":
    main()
