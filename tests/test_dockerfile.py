"""The Dockerfile and its lock files, checked statically (issue 18): Docker itself is not needed.

Pinned and hash-checked dependencies in a layer before the code, the project built from this
source only, a base image by digest, OCI labels, no healthcheck on the one-shot CLI image.
The slow test at the end runs the core stage's own commands in a fresh virtual environment.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCKS = {
    "requirements.lock": (),
    "requirements-sidecar.lock": ("sidecar", "postgres"),
    "requirements-probes.lock": ("sidecar", "postgres", "probes"),
}
BUILD_LOCK = "requirements-build.lock"
STAGE_LOCKS = {"core": "requirements.lock", "sidecar": "requirements-sidecar.lock", "torch": "requirements-probes.lock"}
SOURCE_COPIES = ("pyproject.toml", "weightguard", "policies", "--from=wheel")
OCI_LABELS = ("title", "description", "version", "revision", "created", "licenses", "base.name", "base.digest")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    return _norm(re.split(r"[<>=!~\[;\s]", spec, maxsplit=1)[0])


def _lock(name: str) -> dict[str, list[str]]:
    """``{package: [hashes]}`` of a lock file; fails on any line that is not a pinned, hashed requirement."""
    pins: dict[str, list[str]] = {}
    text = (REPO / name).read_text()
    for entry in re.sub(r"\\\n\s*", " ", text).splitlines():
        entry = entry.split("#", 1)[0].strip()
        if not entry:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)", entry)
        assert m, f"{name}: not a pinned, hashed requirement: {entry[:100]}"
        pins[_norm(m.group(1))] = re.findall(r"sha256:([0-9a-f]{64})", m.group(3))
    return pins


def _stages() -> dict[str, list[str]]:
    """The Dockerfile's instructions per stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if m := re.match(r"FROM \S+ AS (\w+)$", line):
            current = stages.setdefault(m.group(1), [])
        current.append(line)
    return stages


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.mark.parametrize("name", [*LOCKS, BUILD_LOCK])
def test_every_lock_line_is_pinned_with_hashes_and_made_by_the_lock_script(name: str) -> None:
    pins = _lock(name)
    assert pins and all(pins.values())
    assert "weightguard" not in pins, "the project is built from this source, never fetched by name"
    assert "#    ci/lock-requirements" in (REPO / name).read_text()
    assert f"-o {name}" in (REPO / "ci" / "lock-requirements").read_text()


@pytest.mark.parametrize("name", list(LOCKS))
def test_each_lock_covers_the_core_dependencies_and_its_extras(name: str) -> None:
    project = _pyproject()["project"]
    wanted = list(project["dependencies"])
    for extra in LOCKS[name]:
        wanted += project["optional-dependencies"][extra]
    missing = sorted({_requirement_name(d) for d in wanted} - set(_lock(name)))
    assert missing == [], f"{name} lacks {missing}: rerun ci/lock-requirements"
    script = (REPO / "ci" / "lock-requirements").read_text()
    [line] = [ln for ln in script.splitlines() if f"-o {name}" in ln]
    assert sorted(re.findall(r"--extra (\w+)", line)) == sorted(LOCKS[name])


def test_the_build_lock_covers_the_build_backend() -> None:
    requires = {_requirement_name(r) for r in _pyproject()["build-system"]["requires"]}
    assert requires <= set(_lock(BUILD_LOCK))


def test_the_core_image_stays_free_of_the_gpu_stack() -> None:
    assert not {"torch", "transformers", "fastapi", "uvicorn"} & set(_lock("requirements.lock"))


def test_every_base_image_is_pinned_by_digest() -> None:
    stages = _stages()
    for line in (ln for lines in stages.values() for ln in lines if ln.startswith("FROM ")):
        image = line.split()[1]
        if image in stages:
            continue  # an earlier stage of this file
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), line


def test_the_oci_labels_name_the_image_and_its_base_digest() -> None:
    base = " ".join(_stages()["base"])
    for label in OCI_LABELS:
        assert f"org.opencontainers.image.{label}=" in base, label
    digest = re.search(r"@(sha256:[0-9a-f]{64})", base)
    assert digest and f'org.opencontainers.image.base.digest="{digest.group(1)}"' in base


@pytest.mark.parametrize("stage", list(STAGE_LOCKS))
def test_each_image_installs_its_locked_dependencies_before_any_source(stage: str) -> None:
    lines = _stages()[stage]
    installs = [i for i, ln in enumerate(lines) if ln.startswith("RUN pip install")]
    sources = [i for i, ln in enumerate(lines) if ln.startswith("COPY") and any(s in ln for s in SOURCE_COPIES)]
    assert installs and sources
    first = lines[installs[0]]
    assert first == f"RUN pip install --require-hashes -r {STAGE_LOCKS[stage]}", first
    assert installs[0] < min(sources), "the dependency layer must come before the code"
    assert lines[installs[-1]] == "RUN pip install --no-deps --no-index /dist/*.whl"
    assert len(installs) == 2


def test_the_wheel_is_built_from_this_source_with_the_locked_backend_only() -> None:
    lines = _stages()["wheel"]
    assert lines.index(f"RUN pip install --require-hashes -r {BUILD_LOCK}") < lines.index(
        "COPY weightguard ./weightguard"
    )
    assert "RUN pip wheel --no-deps --no-build-isolation --no-index --wheel-dir /dist ." in lines


def test_no_install_asks_the_index_for_weightguard_or_anything_unlocked() -> None:
    for stage, lines in _stages().items():
        for line in (ln for ln in lines if re.match(r"RUN .*\bpip (install|wheel)\b", ln)):
            args = shlex.split(line)[3:]
            assert "--require-hashes" in args or "--no-index" in args, (stage, line)
            assert not [a for a in args if "weightguard" in a], (stage, line)


def test_the_cli_image_has_no_healthcheck_and_the_sidecars_have_one() -> None:
    stages = _stages()
    assert not [ln for ln in stages["core"] if ln.startswith("HEALTHCHECK")]
    for sidecar in ("sidecar", "torch"):
        [check] = [ln for ln in stages[sidecar] if ln.startswith("HEALTHCHECK")]
        assert "/healthz" in check


@pytest.mark.parametrize("stage", list(STAGE_LOCKS))
def test_each_image_runs_weightguard_as_a_non_root_user(stage: str) -> None:
    lines = _stages()[stage]
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] == "weightguard"
    assert 'ENTRYPOINT ["weightguard"]' in lines


@pytest.mark.slow
def test_the_core_stage_commands_install_a_working_cli_without_torch(tmp_path: Path) -> None:
    """Runs the wheel and core stages' COPY/RUN lines in fresh virtual environments (needs the package index)."""
    stages = _stages()
    root = tmp_path / "image"  # absolute paths of the image (/dist, /opt/weightguard) live under here
    for stage in ("wheel", "core"):
        venv = tmp_path / f"venv-{stage}"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        workdir = root / "opt" / "weightguard"
        workdir.mkdir(parents=True, exist_ok=True)
        for line in stages[stage]:
            words = shlex.split(line)
            if words[0] == "COPY" and words[1] == "--from=wheel":
                continue  # /dist already lies under root from the wheel stage
            if words[0] == "COPY":
                for src in words[1:-1]:
                    target = workdir / words[-1] / src if words[-1].endswith("/") else workdir / words[-1]
                    copy = shutil.copytree if (REPO / src).is_dir() else shutil.copy
                    copy(REPO / src, target)
            elif words[0] == "RUN" and words[1] == "pip" and words[2] in ("install", "wheel"):
                command = " ".join(words[1:]).replace("/dist", str(root / "dist"))
                run = subprocess.run(
                    f"{venv / 'bin'}/{command}", shell=True, cwd=workdir, capture_output=True, text=True, timeout=1500
                )
                assert run.returncode == 0, (line, run.stderr[-2000:])
    cli = tmp_path / "venv-core" / "bin"
    check = subprocess.run(
        [str(cli / "python"), "-c", "import importlib.util as u; print(u.find_spec('torch'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.strip() == "None", "the core image must not pull torch"
    verdict = subprocess.run(
        [str(cli / "weightguard"), "verify", str(REPO / "sample_models" / "blocked")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert verdict.returncode == 1 and "WG-PKL-001" in verdict.stderr
