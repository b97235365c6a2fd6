"""`weightguard serve`: refuses to start without a token, with a clear message and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_serve_without_a_token_exits_2_with_a_hint(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIGHTGUARD_")}
    code = "import typer\nfrom weightguard.cli.serve import register\napp = typer.Typer()\nregister(app)\n@app.callback()\ndef r() -> None: pass\napp()"
    result = subprocess.run(
        [sys.executable, "-c", code, "serve", "--database", f"sqlite:///{tmp_path / 'db'}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert (
        "bearer token" in result.stderr
        and "WEIGHTGUARD_API_TOKEN" in result.stderr
        and "Traceback" not in result.stderr
    )
