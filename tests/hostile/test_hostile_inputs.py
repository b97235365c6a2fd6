"""Hostile input never crashes the scanner, never hangs it, and never comes out approved.

Random bytes, huge declared lengths, deep nesting, bombs, 10^6-opcode and
billion-laughs pickles, a file just over each ``Limits`` field (under a policy
with small limits) and truncations of every corpus file: each must yield a
finding or an ``incomplete`` verdict (exit 1 or 2) within the pytest timeout,
never an exception. Cases whose only hostility is cost (``must_block=False``)
need only a bounded, crash-free scan.
"""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.corpus.build import all_specs, shared_corpus
from tests.corpus.spec import CaseSpec
from tests.hostile.builders import HOSTILE, LIMIT_FIELDS, Files, Hostile, cut_points, policy_yaml
from weightguard.api import scan
from weightguard.limits import Limits
from weightguard.policy.load import LoadedPolicy, load_policy
from weightguard.report.model import Report

pytestmark = pytest.mark.timeout(60)

VERDICTS = {"approved": 0, "rejected": 1, "incomplete": 2}


def _write(directory: Path, name: str, files: Files) -> Path:
    target = directory / name.replace("/", "__")
    if isinstance(files, bytes):
        target.write_bytes(files)
        return target
    for relpath, data in files.items():
        (target / relpath).parent.mkdir(parents=True, exist_ok=True)
        (target / relpath).write_bytes(data)
    return target


def _policy(directory: Path, limits: Mapping[str, object]) -> LoadedPolicy:
    path = directory / "policy.yaml"
    path.write_text(policy_yaml(limits))
    return load_policy(path)


def _explain(report: Report) -> str:
    return "; ".join(f"{f.code} {f.kind.value} {f.severity.value}: {f.message}" for f in report.findings) or "none"


def _assert_well_formed(report: Report) -> None:
    assert VERDICTS[report.verdict] == report.exit_code
    if report.verdict != "approved":
        assert any(f.blocking for f in report.findings), _explain(report)


def _assert_refused(report: Report, what: str) -> None:
    _assert_well_formed(report)
    assert report.verdict != "approved", f"{what} was approved: {_explain(report)}"


@pytest.mark.parametrize("case", HOSTILE, ids=[c.name for c in HOSTILE])
def test_hostile_input_is_refused_without_crashing(case: Hostile, tmp_path: Path) -> None:
    target = _write(tmp_path, case.name, case.build())
    report = scan([target], _policy(tmp_path, case.limits) if case.limits else None)
    if case.must_block:
        _assert_refused(report, f"{case.name} [{case.reference}]")
    else:
        _assert_well_formed(report)


@pytest.mark.parametrize("case", [c for c in HOSTILE if c.limits], ids=[c.name for c in HOSTILE if c.limits])
def test_file_just_over_a_limit_reports_that_limit(case: Hostile, tmp_path: Path) -> None:
    (limit,) = case.limits
    report = scan([_write(tmp_path, case.name, case.build())], _policy(tmp_path, case.limits))
    _assert_refused(report, case.name)
    named = [f for f in report.findings if f.blocking and limit in f.message + json.dumps(f.evidence)]
    assert named, f"no blocking finding names {limit}: {_explain(report)}"


@pytest.mark.parametrize("case", [c for c in HOSTILE if c.limits], ids=[c.name for c in HOSTILE if c.limits])
def test_same_file_under_default_limits_is_not_stopped_by_that_limit(case: Hostile, tmp_path: Path) -> None:
    (limit,) = case.limits
    report = scan([_write(tmp_path, case.name, case.build())])
    _assert_well_formed(report)
    assert not [f for f in report.findings if limit in f.message + json.dumps(f.evidence)], _explain(report)


def test_every_limits_field_has_a_fixture_just_over_it() -> None:
    covered = {field for case in HOSTILE for field in case.limits}
    assert covered == set(LIMIT_FIELDS) == {f.name for f in dataclasses.fields(Limits)}


def _may_pass_as_text(piece: bytes, whole: bytes, benign: bool) -> bool:
    """A cut that is valid UTF-8 may be judged inert text, except the cut that drops only the last byte of
    an attack: that is the nullifAI shape (payload complete, STOP missing) and must still be refused.
    A JSON config cut short is the exception to the exception: its loaders read it with ``json.loads``,
    which refuses it, so nothing it names is ever loaded (the real loader is the reference)."""
    try:
        text = piece.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return benign or len(piece) < len(whole) - 1 or (whole.lstrip()[:1] in (b"{", b"[") and not _json_loads(text))


def _json_loads(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _tar_boundaries(whole: bytes) -> tuple[set[int], int] | None:
    """Member boundaries and the end of the last member's data, for an uncompressed tar we built."""
    try:
        with tarfile.open(fileobj=io.BytesIO(whole), mode="r:") as archive:
            members = archive.getmembers()
    except tarfile.TarError:
        return None
    ends = {m.offset_data + -(-m.size // 512) * 512 for m in members}
    return {m.offset for m in members} | ends, max(ends, default=0)


def _still_a_valid_tar(whole: bytes, cut: int) -> bool:
    """A tar cut on a member boundary, or after the last member, is a shorter valid tar."""
    bounds = _tar_boundaries(whole)
    return bounds is not None and (cut in bounds[0] or cut >= bounds[1])


@pytest.mark.parametrize("spec", all_specs(), ids=[s.relpath for s in all_specs()])
def test_truncated_corpus_file_is_never_approved(spec: CaseSpec, tmp_path: Path) -> None:
    corpus = shared_corpus()
    for case in corpus.group(spec.relpath):
        data = case.path.read_bytes()
        for cut in cut_points(len(data)):
            target = tmp_path / f"cut{cut}_{case.path.name}"
            target.write_bytes(data[:cut])
            report = scan([target])
            if _may_pass_as_text(data[:cut], data, case.expected == "approved") or _still_a_valid_tar(data, cut):
                _assert_well_formed(report)
            else:
                _assert_refused(report, f"{case.name} cut at {cut}/{len(data)} [{spec.reference}]")
        assert not corpus.marker.exists()


@pytest.mark.timeout(240)
def test_hostile_directory_scanned_by_the_cli(tmp_path: Path) -> None:
    root = tmp_path / "hostile"
    root.mkdir()
    refused = {_write(root, c.name, c.build()).resolve() for c in HOSTILE if not c.limits and c.must_block}
    for case in HOSTILE:
        if not case.limits and not case.must_block:
            _write(root, case.name, case.build())
    run = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "weightguard", "scan", str(root), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.returncode in (1, 2), run.stderr[-2000:]
    report = Report.model_validate_json(run.stdout)
    assert report.exit_code == run.returncode
    blocked = {Path(f.path).resolve() for f in report.findings if f.blocking}
    assert refused <= blocked, sorted(str(p) for p in refused - blocked)
