"""``weightguard probe``: exit codes and machine output (the command registered on a bare app)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from weightguard.cli import probe


def _app() -> typer.Typer:
    app = typer.Typer()
    probe.register(app)

    @app.callback()
    def _root() -> None:
        """Test root so the command keeps its name."""

    return app


def test_a_directory_that_cannot_be_probed_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["probe", str(tmp_path), "--device", "cpu", "--format", "json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["verdict"] == "not-probed"


def test_a_backdoored_model_exits_1_with_the_trigger_in_json_under_the_default_policy(probe_models) -> None:
    root = probe_models("lm-backdoor")
    result = CliRunner().invoke(_app(), ["probe", str(root), "--device", "cpu", "--format", "json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["verdict"] == "block"
    assert any(s["trigger"] == "deployment" and s["level"] == "block" for s in report["suspects"])


def test_format_html_writes_the_probe_evidence_judged_by_the_policy(probe_models, tmp_path: Path, write_policy) -> None:
    pytest.importorskip("matplotlib")
    root = probe_models("lm-backdoor")
    # A policy file with the user's own prompts (instead of the built-ins): the HTML must come from that policy.
    prompts = json.loads((root / "probe_inputs.json").read_text())["prompts"]
    policy = write_policy("probes:\n  inputs:\n    use_builtin: false\n    prompts: " + json.dumps(prompts))
    out = tmp_path / "probe.html"
    result = CliRunner().invoke(
        _app(),
        [
            "probe",
            str(root),
            "--device",
            "cpu",
            "-f",
            "html",
            "-o",
            str(out),
            "--policy",
            str(policy),
            "--budget",
            "300",
        ],
    )
    assert result.exit_code == 1, result.output
    page = out.read_text()
    assert re.search(r"<h1>weightguard probe: <span[^>]*>REJECTED</span>", page), page[:2000]
    assert "deployment" in page and "WG-PRB-" in page
    assert "<svg" in page and "<script" not in page  # the plots are inline SVG, and nothing runs


@pytest.mark.skipif(torch.cuda.is_available(), reason="the point is a machine without a GPU")
def test_asking_for_cuda_without_a_gpu_is_an_error_not_a_verdict(probe_models, tmp_path: Path) -> None:
    root = shutil.copytree(probe_models("text-clean"), tmp_path / "m")
    result = CliRunner().invoke(_app(), ["probe", str(root), "--device", "cuda"])
    assert result.exit_code == 2 and "no CUDA device" in result.output
