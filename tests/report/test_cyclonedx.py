"""``--format cyclonedx``: a CycloneDX 1.6 ML-BOM that validates and says what weightguard found.

Every BOM here is checked with cyclonedx-python-lib's own strict JSON schema
validator, and its content against the files on disk: each file's SHA-256 is
the digest of its bytes, the model's verdict and OMS root digest are those of
the JSON report of the same run.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from safetensors.numpy import save_file
from typer.testing import CliRunner

from weightguard import __version__
from weightguard.cli import build_app
from weightguard.errors import MissingExtraError
from weightguard.report.model import Report

# A protocol-0 pickle that would call os.system when loaded (never loaded here: it is only scanned).
MALICIOUS_PICKLE = b"cos\nsystem\n(S'echo pwned'\ntR."


def _validate(body: str) -> dict[str, Any]:
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(body)
    assert error is None, error
    doc: dict[str, Any] = json.loads(body)
    return doc


def _props(component: dict[str, Any], name: str) -> list[str]:
    return [p["value"] for p in component.get("properties", []) if p["name"] == f"weightguard:{name}"]


def _files(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["components"] if c["type"] == "file"}


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_app(), list(args))
    return result.exit_code, result.stdout


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "bert-mini"
    (root / "tokenizer").mkdir(parents=True)
    save_file({"w": np.arange(12, dtype=np.float32).reshape(3, 4)}, str(root / "model.safetensors"))
    (root / "config.json").write_text('{"model_type": "bert"}')
    (root / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    return root


def test_verify_writes_a_valid_ml_bom_whose_digests_are_the_files_digests(model: Path) -> None:
    code, body = _run("verify", str(model), "--format", "cyclonedx")
    assert code == 0
    doc = _validate(body)
    assert doc["specVersion"] == "1.6" and doc["serialNumber"].startswith("urn:uuid:")
    subject = doc["metadata"]["component"]
    assert subject["type"] == "machine-learning-model" and subject["name"] == "bert-mini"
    assert _props(subject, "verdict") == ["approved"]
    tools = doc["metadata"]["tools"]["components"]
    assert [(t["name"], t["version"]) for t in tools] == [("weightguard", __version__)]

    files = _files(doc)
    on_disk = {p.relative_to(model).as_posix(): p for p in model.rglob("*") if p.is_file()}
    assert set(files) == set(on_disk)
    for rel, path in on_disk.items():
        assert files[rel]["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(path.read_bytes()).hexdigest()}]
        assert _props(files[rel], "size") == [str(path.stat().st_size)]
        assert _props(files[rel], "verdict") == ["passed"]
    assert _props(files["model.safetensors"], "format") == ["safetensors"]
    assert _props(files["config.json"], "format") == ["json"]
    # The model depends on every file it is made of.
    (model_deps,) = [d for d in doc["dependencies"] if d["ref"] == subject["bom-ref"]]
    assert sorted(model_deps["dependsOn"]) == sorted(c["bom-ref"] for c in files.values())

    code, report = _run("verify", str(model), "--format", "json")
    root_digest = json.loads(report)["subject"]["root_digest"]
    assert _props(subject, "oms-root-digest") == [root_digest]


def test_a_blocked_file_carries_its_findings_and_the_model_its_rejection(model: Path) -> None:
    (model / "pytorch_model.bin").write_bytes(MALICIOUS_PICKLE)
    code, body = _run("verify", str(model), "--format", "cyclonedx")
    assert code == 1
    doc = _validate(body)
    assert _props(doc["metadata"]["component"], "verdict") == ["rejected"]
    bad = _files(doc)["pytorch_model.bin"]
    assert bad["hashes"][0]["content"] == hashlib.sha256(MALICIOUS_PICKLE).hexdigest()
    assert _props(bad, "verdict") == ["blocked"]
    assert _props(bad, "format") == ["pickle"]
    findings = _props(bad, "finding")
    assert findings and any("(blocking)" in f and "system" in f for f in findings)
    assert _props(_files(doc)["config.json"], "verdict") == ["passed"]


def test_scan_lists_files_without_digests_it_never_computed(model: Path) -> None:
    code, body = _run("scan", str(model), "--format", "cyclonedx")
    assert code == 0
    doc = _validate(body)
    files = list(doc["components"])
    assert len(files) == 3 and all("hashes" not in c for c in files)
    assert sorted(v for c in files for v in _props(c, "format")) == ["json", "safetensors", "text"]


def test_render_turns_a_saved_report_into_the_same_bom_every_time(model: Path, tmp_path: Path) -> None:
    saved = tmp_path / "report.json"
    assert _run("verify", str(model), "--format", "json", "--output", str(saved))[0] == 0
    first = _run("render", str(saved), "--format", "cyclonedx")
    second = _run("render", str(saved), "--format", "cyclonedx")
    assert first == second and first[0] == 0
    doc = _validate(first[1])
    report = Report.model_validate_json(saved.read_bytes())
    assert report.subject is not None
    assert {n: c["hashes"][0]["content"] for n, c in _files(doc).items()} == report.subject.files


def test_the_validator_used_here_does_reject_a_broken_bom(model: Path) -> None:
    _, body = _run("verify", str(model), "--format", "cyclonedx")
    broken = json.loads(body)
    broken["metadata"]["component"]["type"] = "neural-network"
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(broken)) is not None


def test_verify_many_lists_every_model_with_its_files_nested(
    model: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    models = model.parent
    bad = models / "gpt-evil"
    bad.mkdir()
    (bad / "pytorch_model.bin").write_bytes(MALICIOUS_PICKLE)
    database = f"sqlite:///{tmp_path_factory.mktemp('cache')}/results.db"  # outside the models' folder
    code, body = _run("verify-many", str(models), "--database", database, "--workers", "1", "-f", "cyclonedx")
    assert code == 1
    doc = _validate(body)
    by_name = {c["name"]: c for c in doc["components"]}
    assert set(by_name) == {"bert-mini", "gpt-evil"}
    assert {c["type"] for c in by_name.values()} == {"machine-learning-model"}
    assert _props(by_name["bert-mini"], "verdict") == ["approved"]
    assert _props(by_name["gpt-evil"], "verdict") == ["rejected"]
    (evil,) = by_name["gpt-evil"]["components"]
    assert evil["hashes"][0]["content"] == hashlib.sha256(MALICIOUS_PICKLE).hexdigest()
    assert _props(evil, "verdict") == ["blocked"]
    nested = {c["name"]: c for c in by_name["bert-mini"]["components"]}
    assert nested["model.safetensors"]["hashes"][0]["content"] == (
        hashlib.sha256((model / "model.safetensors").read_bytes()).hexdigest()
    )


def test_without_the_bom_extra_the_command_says_which_extra_to_install(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cyclonedx.model", None)  # as if cyclonedx-python-lib were absent
    monkeypatch.delitem(sys.modules, "weightguard.report.cyclonedx", raising=False)
    result = CliRunner().invoke(build_app(), ["scan", str(model), "--format", "cyclonedx"])
    assert result.exit_code == 2 and result.stdout == ""
    assert "pip install 'weightguard[bom]'" in result.stderr
    with pytest.raises(MissingExtraError):
        importlib.import_module("weightguard.report.cyclonedx")


def test_cyclonedx_golden_over_the_shared_report(report: Report, golden) -> None:
    from weightguard.report.cyclonedx import render_cyclonedx

    body = render_cyclonedx(report)
    golden("report.cdx.json", body)
    doc = _validate(body)
    assert _props(doc["metadata"]["component"], "verdict") == ["rejected"]
    findings = [v for c in doc["components"] for v in _props(c, "finding")]
    assert any("WG-TST-901" in f and "(blocking)" in f for f in findings)
    assert any("WG-TST-902" in f and "(suppressed: known vendor quirk)" in f for f in findings)
