"""The probe suite reports which probe it is running, one event per probe, then the end."""

from __future__ import annotations

from weightguard.probes.suite import probe_directory
from weightguard.progress import ProgressEvent, reporting


def test_the_suite_reports_each_probe_it_runs_in_order(probe_models, user_spec) -> None:
    root = probe_models("text-clean")
    seen: list[ProgressEvent] = []
    with reporting(seen.append):
        report = probe_directory(root, user_spec(root))
    probing = [e for e in seen if e.task == "probing"]
    assert [e.item for e in probing[:-1]] == [p.name for p in report.probes]
    assert [e.done for e in probing] == list(range(len(report.probes) + 1))
    assert probing[-1].finished and {e.total for e in probing} == {len(report.probes)}
