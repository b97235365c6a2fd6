"""Issue 15: weightguard blocks every container trick the real loaders fall for, proved loader by loader.

For each recipe in :mod:`tests.corpus.container_loader_cases` the real loader
(``torch.load(weights_only=False)``, through ``tarfile`` or ``zipfile`` for the
nested ones) runs in a subprocess and must create the marker; then
``weightguard.api.scan`` must reject the file, with the finding that names the
ambiguity where there is one. Nothing is loaded in this process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.corpus.container_loader_cases import LOADER_BENIGN, LOADER_CASES, LOADERS
from tests.corpus.spec import CaseSpec, Payload
from weightguard.api import scan

pytest.importorskip("torch")
pytestmark = pytest.mark.timeout(300)

# The finding that names the lookup ambiguity, besides the pickle engine's own.
_NAMED = {
    "loaders/torch_zip_case_duplicate_data_pkl.pt": "WG-ZIP-014",
    "loaders/torch_zip_exact_duplicate_data_pkl.pt": "WG-ZIP-002",
    "loaders/legacy_tar_duplicate_pickle.tar": "WG-ARC-008",
    "loaders/nested_tar_duplicate_pickle.tar": "WG-ARC-008",
}


def _write(spec: CaseSpec, tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED_MARKER"
    built = spec.build(Payload(marker))
    assert isinstance(built, bytes)
    path = tmp_path / Path(spec.relpath).name
    path.write_bytes(built)
    return path, marker


@pytest.mark.parametrize("spec", list(LOADER_CASES), ids=lambda s: s.relpath)
def test_the_real_loader_runs_the_payload_and_weightguard_rejects_the_file(spec: CaseSpec, tmp_path: Path) -> None:
    path, marker = _write(spec, tmp_path)
    report = scan([path])
    assert not marker.exists(), "scanning ran the payload"
    blocking = {f.code for f in report.findings if f.blocking}
    assert report.verdict == "rejected", blocking
    assert any(c.startswith("WG-PKL") for c in blocking), blocking  # the payload itself is found
    if spec.relpath in _NAMED:
        assert _NAMED[spec.relpath] in blocking
    run = subprocess.run(
        [sys.executable, "-c", LOADERS[spec.relpath], str(path)], capture_output=True, timeout=120, cwd=tmp_path
    )
    assert marker.exists(), f"the real loader did not run the payload: {run.stderr.decode()[-500:]}"


@pytest.mark.parametrize("spec", list(LOADER_BENIGN), ids=lambda s: s.relpath)
def test_a_plain_legacy_tar_without_tricks_is_approved_and_loads(spec: CaseSpec, tmp_path: Path) -> None:
    path, _ = _write(spec, tmp_path)
    report = scan([path])
    assert report.verdict == "approved", [(f.code, f.message) for f in report.findings]
    code = "import sys, torch; print(torch.load(sys.argv[1], weights_only=False))"
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0 and b"{'a': 1}" in run.stdout, run.stderr.decode()[-500:]
