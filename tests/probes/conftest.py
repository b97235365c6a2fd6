"""Session-scoped tiny probe models, trained once per run by the sample generator (fixed seeds, CPU)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

GENERATOR = Path(__file__).resolve().parents[2] / "sample_models" / "probes" / "make_probe_models.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_probe_models", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def probe_models(tmp_path_factory: pytest.TempPathFactory):
    """name -> directory; each model is built on first use and shared for the session."""
    gen = _generator()
    root = tmp_path_factory.mktemp("probe_models")
    return lambda name: gen.build(name, root)


def _user_spec(model_dir: Path, **overrides: object):
    """The probes policy a user of this task would write: CPU, their own in-distribution inputs."""
    from weightguard.policy.sections.probes import ProbeInputs, ProbesSpec

    data = (
        json.loads((model_dir / "probe_inputs.json").read_text()) if (model_dir / "probe_inputs.json").exists() else {}
    )
    inputs = ProbeInputs(text=data.get("text", []), prompts=data.get("prompts", []), use_builtin=False)
    return ProbesSpec(device="cpu", inputs=inputs, **overrides)


@pytest.fixture(scope="session")
def user_spec():
    """Build the user's probes policy for a model directory (see ``_user_spec``); a pure function, so shared."""
    return _user_spec
