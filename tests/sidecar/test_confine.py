"""Issue 16: local targets are opened from the model root's descriptor, never through a link, for the whole job."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from weightguard.policy.load import load_builtin
from weightguard.report.model import Report
from weightguard.sidecar.confine import TargetRefused, TargetReplaced, pin
from weightguard.sidecar.executor import JobExecutor
from weightguard.sidecar.jobstore import JobRecord
from weightguard.sidecar.verifier import PipelineVerifier

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """``root/org/model`` (the approved sample) and ``outside/org/model`` (the blocked one, other file names)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    shutil.copytree(REPO / "sample_models" / "approved", root / "org" / "model")
    shutil.copytree(REPO / "sample_models" / "blocked", outside / "org" / "model")
    (outside / "org" / "model" / "outside-only.bin").write_bytes(b"\x80\x04N.")
    return root, outside


def swap_for_link(folder: Path, to: Path) -> Path:
    """Rename ``folder`` aside (still inside the root) and put a link to ``to`` in its place."""
    aside = folder.with_name(folder.name + ".orig")
    folder.rename(aside)
    folder.symlink_to(to, target_is_directory=True)
    return aside


def test_a_pinned_folder_is_read_through_its_descriptor(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with pin(str(root / "org" / "model"), [root]) as pinned:
        assert pinned.path.startswith("/proc/self/fd/")
        assert sorted([p.name for p in Path(pinned.path).iterdir()]) == [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
        ]
        pinned.check_unchanged()


@pytest.mark.parametrize("level", ["folder", "parent"])
def test_a_folder_swapped_for_a_link_after_pinning_is_never_read_and_is_reported(
    layout: tuple[Path, Path], level: str
) -> None:
    root, outside = layout
    with pin(str(root / "org" / "model"), [root]) as pinned:
        if level == "folder":
            swap_for_link(root / "org" / "model", outside / "org" / "model")
        else:
            swap_for_link(root / "org", outside / "org")
        assert "outside-only.bin" in [
            p.name for p in (root / "org" / "model").iterdir()
        ]  # the name now leads outside...
        assert "outside-only.bin" not in [p.name for p in Path(pinned.path).iterdir()]  # ...the descriptor does not
        with pytest.raises(TargetReplaced):
            pinned.check_unchanged()


@pytest.mark.parametrize("level", ["folder", "parent"])
def test_a_link_on_the_way_is_refused_at_admission(layout: tuple[Path, Path], level: str) -> None:
    root, outside = layout
    if level == "folder":
        swap_for_link(root / "org" / "model", outside / "org" / "model")
    else:
        swap_for_link(root / "org", outside / "org")
    with pytest.raises(TargetRefused) as info:
        pin(str(root / "org" / "model"), [root]).close()
    assert info.value.status == 403


def test_special_files_and_missing_paths_are_422_and_files_are_pinned_by_their_folder(
    layout: tuple[Path, Path],
) -> None:
    root, _ = layout
    os.mkfifo(root / "fifo")
    for name in ("fifo", "missing", "org/model/config.json/below"):
        with pytest.raises(TargetRefused) as info:
            pin(str(root / name), [root]).close()
        assert info.value.status == 422, name
    with pin(str(root / "org" / "model" / "config.json"), [root]) as pinned:
        assert pinned.name == "config.json" and Path(pinned.path).read_bytes()


def _job(target: str) -> JobRecord:
    now = dt.datetime.now(dt.UTC)
    return JobRecord("j", "verify", target, None, "{}", "running", 1, now, now, None, None, None)


def _executor(tmp: Path, root: Path, during: Callable[[], None], seen: list[Report]) -> JobExecutor:
    real = PipelineVerifier({"default": load_builtin("default")})

    def verifier(target: str, policy: str) -> Report:
        during()  # the swap happens while the job runs, before the pipeline reads anything
        seen.append(real(target, policy))
        return seen[-1]

    return JobExecutor(verifier, database=f"sqlite:///{tmp / 'db.sqlite'}", first_stage="canary", roots=[root])


@pytest.mark.parametrize("level", ["folder", "parent"])
def test_issue_16_a_swap_during_the_job_reads_nothing_outside_and_fails_the_job(
    tmp_path: Path, layout: tuple[Path, Path], level: str
) -> None:
    root, outside = layout
    seen: list[Report] = []

    def swap() -> None:
        if level == "folder":
            swap_for_link(root / "org" / "model", outside / "org" / "model")
        else:
            swap_for_link(root / "org", outside / "org")

    executor = _executor(tmp_path, root, swap, seen)
    with pytest.raises(TargetReplaced):
        executor(_job(str(root / "org" / "model")))
    (report,) = seen
    assert sorted(report.subject.files if report.subject else ()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert "outside" not in report.model_dump_json()


def test_an_unswapped_job_reports_the_targets_own_paths(tmp_path: Path, layout: tuple[Path, Path]) -> None:
    root, _ = layout
    target = str(root / "org" / "model")
    result = _executor(tmp_path, root, lambda: None, [])(_job(target))
    assert result.report.verdict == "approved" and result.report.targets == [target]
    assert result.report.subject is not None and result.report.subject.uri == target
    assert all(f.path.startswith(target + "/") for f in result.report.files)
    assert "/proc/self/fd" not in result.report.model_dump_json()
