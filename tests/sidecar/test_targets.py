"""admit_target: local paths only inside model roots (never touched otherwise), hf:// passed through."""

from __future__ import annotations

from pathlib import Path

import pytest

from weightguard.sidecar.targets import TargetRefused, admit_target


def test_paths_inside_a_root_are_canonicalised(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    assert admit_target(f"{tmp_path}/x/../m", [tmp_path]) == str((tmp_path / "m").resolve())


def test_outside_paths_are_403_even_when_missing(tmp_path: Path) -> None:
    with pytest.raises(TargetRefused) as info:
        admit_target("/no/such/place", [tmp_path])
    assert info.value.status == 403


@pytest.mark.parametrize("target", ["hf://gpt2", "hf://org/name@0123abc", "hf://org/na.me@refs/pr/1"])
def test_hugging_face_references_pass_through(tmp_path: Path, target: str) -> None:
    assert admit_target(target, [tmp_path]) == target


@pytest.mark.parametrize("target", ["hf://", "hf://a/b/c", "hf://org/../x", "http://x", "rel", "/bad\x00", ""])
def test_malformed_targets_are_422(tmp_path: Path, target: str) -> None:
    with pytest.raises(TargetRefused) as info:
        admit_target(target, [tmp_path])
    assert info.value.status == 422
