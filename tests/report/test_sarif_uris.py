"""SARIF artifact URIs: relative to %SRCROOT% where possible, absolute file URIs only outside it (issue 18).

Code scanning maps a result onto the repository only through a relative URI and its base
(``originalUriBaseIds``); an absolute path of the CI runner maps onto nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from weightguard.api import scan
from weightguard.report.model import Report, SubjectModel
from weightguard.report.sarif import SRCROOT, artifact_location, render_sarif_dict

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_models"
SCHEMA = REPO / "tests" / "data" / "sarif-schema-2.1.0.json"


def _valid(log: dict[str, Any]) -> dict[str, Any]:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(log)
    return log


def _locations(log: dict[str, Any]) -> list[dict[str, str]]:
    return [r["locations"][0]["physicalLocation"]["artifactLocation"] for r in log["runs"][0]["results"]]


def test_a_file_under_the_root_is_relative_to_srcroot_and_the_base_is_described() -> None:
    # Scanned by absolute path, as CI does with ${{ github.workspace }}/model.
    log = _valid(render_sarif_dict(scan([SAMPLES / "blocked"]), root=REPO))
    assert _locations(log) == [{"uri": "sample_models/blocked/pytorch_model.bin", "uriBaseId": SRCROOT}]
    base = log["runs"][0]["originalUriBaseIds"][SRCROOT]
    assert base["uri"] == REPO.as_uri() + "/"


def test_a_file_outside_the_root_gets_an_absolute_file_uri(tmp_path: Path) -> None:
    log = _valid(render_sarif_dict(scan([SAMPLES / "blocked"]), root=tmp_path))
    assert _locations(log) == [{"uri": (SAMPLES / "blocked" / "pytorch_model.bin").as_uri()}]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("model/w.bin", {"uri": "model/w.bin", "uriBaseId": SRCROOT}),
        ("./model/../w 1.bin", {"uri": "w%201.bin", "uriBaseId": SRCROOT}),
        ("/ci/work/repo/m/w.bin", {"uri": "m/w.bin", "uriBaseId": SRCROOT}),
        ("../elsewhere/w.bin", {"uri": "file:///ci/work/elsewhere/w.bin"}),
        ("/tmp/w.bin", {"uri": "file:///tmp/w.bin"}),
    ],
)
def test_display_paths_become_artifact_locations(path: str, expected: dict[str, str]) -> None:
    assert artifact_location(path, Path("/ci/work/repo")) == expected


def test_files_of_a_remote_model_are_named_by_the_models_uri(report: Report) -> None:
    uri = "hf://org/name@" + "a" * 40
    remote = report.model_copy(update={"subject": SubjectModel(name="name", uri=uri)})
    log = _valid(render_sarif_dict(remote, root=Path("/ci/work/repo")))
    assert {loc["uri"] for loc in _locations(log)} == {f"{uri}/model/pytorch_model.bin", f"{uri}/model/weird.bin"}


def test_the_cli_writes_srcroot_relative_uris_for_a_target_named_by_absolute_path(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "weightguard", "scan", str(SAMPLES / "blocked"), "-f", "sarif"],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
    )
    assert result.returncode == 1, result.stderr
    log = _valid(json.loads(result.stdout))
    assert _locations(log) == [{"uri": "sample_models/blocked/pytorch_model.bin", "uriBaseId": SRCROOT}]
