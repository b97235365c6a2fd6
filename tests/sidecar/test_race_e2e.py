"""Issue 16: a real sidecar, its target swapped for a link out of the root at random moments, never reads outside.

A bounded run of ``benchmarks/sidecar_race.py`` (50 iterations): the target folder
or its parent is replaced by a symbolic link to a different model outside the
``--model-root`` while the job is admitted or running (sometimes put back before
the job ends). No report may name a path or digest of the outside model, and
nothing may crash; every job is refused, failed as swapped, or verified inside.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sidecar_support import REPO


def _race_module():  # noqa: ANN202 - a module loaded from its path
    spec = importlib.util.spec_from_file_location("sidecar_race", REPO / "benchmarks" / "sidecar_race.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_issue_16_a_target_swapped_for_a_link_out_of_the_root_mid_job_is_never_read_from_outside(
    tmp_path: Path,
) -> None:
    counts = _race_module().race(50, tmp_path)
    assert counts["leaked"] == 0
    assert counts["crashed"] == 0
    assert counts.get("failed: other", 0) == 0, counts
    assert counts["approved"] + counts["failed"] + counts["refused"] == 50, counts
    assert counts["approved"] > 0 and counts["failed"] + counts["refused"] > 0, (
        counts
    )  # both sides of the race were hit
