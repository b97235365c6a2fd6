"""What each command may import: start-up is paid again on every pre-commit hook and CI step.

Each case runs the real entry point (``weightguard.cli.main``, what the console
script calls) in a fresh interpreter on this checkout and lists ``sys.modules``
when it exits. A module in the case's forbidden list fails the test. No timing
is asserted here; ``benchmarks/startup.py`` measures the seconds.

Why each module is forbidden where it is:

* everywhere below (none of these commands signs, serves, converts, probes or
  touches the network):
  ``torch``/``transformers`` (the probe and conversion extras, seconds of import),
  ``fastapi``/``uvicorn``/``starlette``/``prometheus_client`` (``serve`` only),
  ``cryptography``/``sigstore``/``model_signing``/``OpenSSL`` (signatures and
  attestations only), ``httpx``/``requests``/``huggingface_hub`` (``oci://`` and
  ``hf://`` sources), ``ray``/``mlflow`` (``verify-many`` engine, write-back),
  ``safetensors`` (conversion writes with it; the analyzer parses headers itself),
  ``fickling`` (the pickle engine is our own) and the weightguard modules that
  wrap them (``sidecar``, ``catalogue``, ``signing.keys``, ``convert.run``,
  ``probes.suite``, ``sources.oci_registry``, ``verdict.store``);
* ``--version``: everything but ``weightguard`` and ``weightguard.cli``
  (``main`` answers before typer is imported);
* ``--help`` and ``completion bash``: the pydantic models (``policy.base`` is
  the root of every policy and report model), yaml (policy files), rich report
  rendering, numpy and jinja2; help lists commands, it parses no policy and
  renders no report. Every command module is imported (help shows each one's
  summary), so those modules import the library inside their functions;
* ``scan small.pkl``: numpy (only rebuilding a dtype of a joblib or ``.npy``
  array needs it), jinja2 (chat templates and HTML output only), the pipeline
  of ``verify`` (integrity, signatures, probes) and every other command's
  module (commands are registered lazily). It does use the policy and report
  models: it loads the default policy and builds a Report.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

NEVER = (
    "torch",
    "transformers",
    "fastapi",
    "uvicorn",
    "starlette",
    "prometheus_client",
    "cryptography",
    "sigstore",
    "model_signing",
    "OpenSSL",
    "httpx",
    "requests",
    "huggingface_hub",
    "ray",
    "mlflow",
    "safetensors",
    "fickling",
    "weightguard.sidecar",
    "weightguard.catalogue",
    "weightguard.signing.keys",
    "weightguard.convert.run",
    "weightguard.probes.suite",
    "weightguard.sources.oci_registry",
    "weightguard.verdict.store",
)
NO_LIBRARY = (
    "weightguard.policy.base",
    "weightguard.policy.schema",
    "weightguard.report.model",
    "weightguard.api",
    "yaml",
    "numpy",
    "jinja2",
    "weightguard.report.text",
)
OTHER_COMMANDS = tuple(
    f"weightguard.cli.{m}"
    for m in ("verify", "verify_many", "convert", "probe", "hash", "lock", "sign", "verify_signature", "rollout")
)

_RUN = """
import json, sys
out = sys.argv[1]
sys.argv = ["weightguard", *sys.argv[2:]]
try:
    from weightguard.cli import main
    main()
except SystemExit:
    pass
finally:
    with open(out, "w") as f:
        json.dump(sorted(sys.modules), f)
"""


def imported_by(args: list[str], tmp_path: Path) -> list[str]:
    """The modules loaded by ``weightguard ARGS`` run through the console entry point."""
    out = tmp_path / "modules.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(out), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.exists(), done.stderr
    modules: list[str] = json.loads(out.read_text())
    return modules


def offending(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    """The forbidden names that were imported (a package counts when any of its submodules was)."""
    return sorted({f for f in forbidden for m in modules if m == f or m.startswith(f + ".")})


@pytest.fixture
def small_pickle(tmp_path: Path) -> Path:
    path = tmp_path / "small.pkl"
    path.write_bytes(pickle.dumps({"weights": [0.5, -1.25], "step": 7}, protocol=4))
    return path


def test_version_imports_nothing_but_the_package(tmp_path: Path) -> None:
    modules = imported_by(["--version"], tmp_path)
    ours = sorted(m for m in modules if m.startswith("weightguard"))
    assert ours == ["weightguard", "weightguard.cli"]
    assert offending(modules, (*NEVER, "typer", "click", "rich", "pydantic", "yaml")) == []


def test_help_imports_command_modules_but_no_model_policy_or_report(tmp_path: Path) -> None:
    modules = imported_by(["--help"], tmp_path)
    assert offending(modules, (*NEVER, *NO_LIBRARY)) == []
    # help shows every command's summary, so every command module is loaded
    assert "weightguard.cli.scan" in modules and "weightguard.cli.rollout" in modules


def test_completion_script_imports_no_model_policy_or_report(tmp_path: Path) -> None:
    modules = imported_by(["completion", "bash"], tmp_path)
    assert offending(modules, (*NEVER, *NO_LIBRARY, *OTHER_COMMANDS)) == []


def test_scan_of_a_pickle_imports_only_what_scanning_a_pickle_needs(tmp_path: Path, small_pickle: Path) -> None:
    modules = imported_by(["scan", str(small_pickle)], tmp_path)
    forbidden = (*NEVER, "numpy", "jinja2", "weightguard.pipeline", "weightguard.report.html", *OTHER_COMMANDS)
    assert offending(modules, forbidden) == []
    # it did scan: the pickle engine, the default policy and the report model were loaded
    assert {"weightguard.analysis.pickle_analyzer", "weightguard.policy.schema", "weightguard.report.model"} <= set(
        modules
    )
