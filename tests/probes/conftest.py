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


def _default_spec(model_dir: Path, **overrides: object):
    """The DEFAULT probes policy on CPU: built-in inputs only, no user data (what a user runs; issue 19)."""
    from weightguard.policy.sections.probes import ProbesSpec

    assert model_dir.is_dir()
    return ProbesSpec(device="cpu", **overrides)


def _user_spec(model_dir: Path, **overrides: object):
    """A policy with the user's own in-distribution inputs and no built-ins (for tests that say why they need it)."""
    from weightguard.policy.sections.probes import ProbeInputs, ProbesSpec

    data = (
        json.loads((model_dir / "probe_inputs.json").read_text()) if (model_dir / "probe_inputs.json").exists() else {}
    )
    inputs = ProbeInputs(text=data.get("text", []), prompts=data.get("prompts", []), use_builtin=False)
    return ProbesSpec(device="cpu", inputs=inputs, **overrides)


@pytest.fixture(scope="session")
def default_spec():
    """Build the default probes policy for a model directory (see ``_default_spec``)."""
    return _default_spec


@pytest.fixture(scope="session")
def user_spec():
    """Build a policy with the user's own inputs (see ``_user_spec``); a pure function, so shared."""
    return _user_spec
