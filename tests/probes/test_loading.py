"""P0 preconditions: offline, safetensors only, no custom code, the model's own preprocessing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from weightguard.policy.sections.probes import ProbesSpec
from weightguard.probes.loading import NotProbedError, check_directory, load_model
from weightguard.probes.suite import probe_directory


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_a_directory_without_safetensors_is_not_probed(probe_models, tmp_path: Path) -> None:
    root = _copy(probe_models("text-clean"), tmp_path / "m")
    (root / "model.safetensors").unlink()
    (root / "pytorch_model.bin").write_bytes(b"PK\x03\x04 not loaded")
    with pytest.raises(NotProbedError) as info:
        check_directory(root)
    assert info.value.reason == "no-safetensors"


def test_a_config_asking_for_remote_code_is_not_probed(probe_models, tmp_path: Path) -> None:
    root = _copy(probe_models("text-clean"), tmp_path / "m")
    config = json.loads((root / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.Evil"}
    (root / "config.json").write_text(json.dumps(config))
    report = probe_directory(root, ProbesSpec(device="cpu"))
    assert report.verdict == "not-probed" and report.exit_code == 2
    assert report.findings[0].code == "WG-PRB-010" and "custom code" in report.findings[0].message


def test_python_files_in_the_directory_are_refused(probe_models, tmp_path: Path) -> None:
    root = _copy(probe_models("text-clean"), tmp_path / "m")
    (root / "modeling_x.py").write_text("raise SystemExit('never run')\n")
    with pytest.raises(NotProbedError, match="Python files"):
        check_directory(root)


def test_an_unsupported_architecture_is_not_probed(probe_models, tmp_path: Path) -> None:
    root = _copy(probe_models("text-clean"), tmp_path / "m")
    config = json.loads((root / "config.json").read_text())
    config["architectures"] = ["BertForTokenClassification"]
    (root / "config.json").write_text(json.dumps(config))
    report = probe_directory(root, ProbesSpec(device="cpu"))
    assert report.verdict == "not-probed" and "not a supported family" in report.reason


def test_a_missing_tokenizer_is_not_probed_never_clean(probe_models, tmp_path: Path) -> None:
    root = _copy(probe_models("text-clean"), tmp_path / "m")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (root / name).unlink()
    report = probe_directory(root, ProbesSpec(device="cpu"))
    assert report.verdict == "not-probed" and report.exit_code == 2


def test_an_image_model_without_preprocessor_config_is_not_probed(probe_models, tmp_path: Path) -> None:
    root = _copy(probe_models("image-clean"), tmp_path / "m")
    (root / "preprocessor_config.json").unlink()
    with pytest.raises(NotProbedError) as info:
        load_model(root)
    assert info.value.reason == "no-preprocessing"


def test_malformed_config_json_is_not_probed(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(NotProbedError) as info:
        check_directory(tmp_path)
    assert info.value.reason == "bad-config"
