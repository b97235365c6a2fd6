"""`verify` with the probe stage: a backdoored model is rejected by probes, its clean twin approved."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from weightguard.pipeline import verify
from weightguard.policy.load import load_policy


def _policy(tmp_path: Path, model_dir: Path) -> Path:
    assert model_dir.is_dir()
    doc = {
        "apiVersion": "weightguard/v1alpha1",
        "kind": "VerificationPolicy",
        "metadata": {"name": "probes"},
        "spec": {
            "probes": {
                "run": "required",
                "device": "cpu",
            }
        },
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(("name", "verdict"), [("text-rare", "rejected"), ("text-clean", "approved")])
def test_verify_runs_the_probes_the_policy_requires(probe_models, tmp_path: Path, name: str, verdict: str) -> None:
    model = probe_models(name)
    report = verify(str(model), load_policy(_policy(tmp_path, model)))
    assert report.verdict == verdict, report.reasons
    assert [s.name for s in report.stages][-2:] == ["probes", "verdict"]
    assert report.probes is not None
    if verdict == "rejected":
        assert any(f.code.startswith("WG-PRB") and f.blocking for f in report.findings)
        assert any(s.level == "block" for s in report.probes.suspects)


def test_a_model_that_cannot_be_probed_is_incomplete(tmp_path: Path) -> None:
    model = tmp_path / "not-a-model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "no-such-architecture"}')
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "apiVersion: weightguard/v1alpha1\nkind: VerificationPolicy\nmetadata: {name: p}\nspec:\n  probes: {run: required, device: cpu}\n"
    )
    report = verify(str(model), load_policy(policy))
    assert (report.verdict, report.exit_code) == ("incomplete", 2)
    assert report.probes is not None and report.probes.verdict == "not-probed"
