"""Human-readable rendering with rich: the verdict first, then why.

Pure: returns a string (ANSI colours only when asked), so the CLI decides
where it goes (stderr or a terminal) and tests can compare it.
"""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text

from weightguard.catalog import rule_for
from weightguard.findings import Severity
from weightguard.report.model import FindingModel, Report, verdict_label

_VERDICT_STYLE = {"approved": "bold green", "rejected": "bold red", "incomplete": "bold yellow"}
_STAGE_STYLE = {"passed": "green", "failed": "red", "incomplete": "yellow", "skipped": "dim"}
_SEV_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


def render_text(report: Report, *, color: bool = False, width: int = 120) -> str:
    """Return the report as text for people."""
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=color, no_color=not color, width=width, highlight=False)
    verdict = Text(verdict_label(report).upper(), style=_VERDICT_STYLE[report.verdict])
    console.print(Text.assemble("weightguard ", report.command, ": ", verdict, f"  (exit {report.exit_code})"))
    s = report.summary
    console.print(
        f"policy {report.policy.name} (sha256 {report.policy.sha256[:12]}), {s.files} file(s), "
        f"{s.blocking} blocking, {s.findings} finding(s), {s.errors} error(s), {s.skipped} skipped, "
        f"{s.suppressed} suppressed"
    )
    if len(report.policy.layers) > 1:  # composed from several --policy files: each one, in order
        for i, layer in enumerate(report.policy.layers, 1):
            console.print(f"  layer {i}: {layer.origin} (sha256 {layer.sha256})", markup=False, soft_wrap=True)
    if report.subject is not None:
        digest = report.subject.root_digest or "not computed"
        console.print(f"model {report.subject.name} ({report.subject.uri}), root digest sha256:{digest}", markup=False)
    if report.stages:
        line = Text("stages: ")
        for i, stage in enumerate(report.stages):
            if i:
                line.append(" -> ")
            line.append(f"{stage.name} {stage.status}", style=_STAGE_STYLE[stage.status])
            if stage.notes:
                line.append(f" ({stage.notes} note{'s' if stage.notes != 1 else ''})", style="dim")
        console.print(line)
    if report.integrity is not None:
        integ = report.integrity
        diff = f"{len(integ.mismatched)} mismatched, {len(integ.missing)} missing, {len(integ.extra)} extra"
        console.print(
            f"integrity: {len(integ.files)} file(s) hashed, {'pinned: ' + diff if integ.pinned else 'no pins'}"
        )
    for sig in report.signatures:
        console.print(f"signature {sig.signature}: {'holds' if sig.holds else 'DOES NOT HOLD'}", markup=False)
    if report.attestation is not None:
        console.print(
            f"attestation ({report.attestation.verification_result}) written to {report.attestation.path}", markup=False
        )
    if report.files:
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("file")
        table.add_column("format")
        table.add_column("size", justify="right")
        table.add_column("blocking", justify="right")
        blocking_by_file: dict[str, int] = {}
        for f in report.findings:
            if f.blocking:
                blocking_by_file[f.path] = blocking_by_file.get(f.path, 0) + 1
        for fr in report.files:
            fmt = fr.format + (" (polyglot)" if fr.polyglot else "")
            table.add_row(fr.path, fmt, f"{fr.size:,}", str(blocking_by_file.get(fr.path, 0)))
        console.print(table)
    for f in report.findings:
        _print_finding(console, f)
    return buf.getvalue()


def _print_finding(console: Console, f: FindingModel) -> None:
    tag = "BLOCK" if f.blocking else ("ignored" if f.suppressed_by else "note")
    head = Text.assemble(
        (f"[{tag}] ", "bold" if f.blocking else "dim"),
        (f"{f.code} ", "bold"),
        (f"{f.severity.value} ", _SEV_STYLE[f.severity]),
        f"{f.path}:{f.member}" if f.member else f.path,
    )
    console.print(head)
    console.print(f"    {f.message}", markup=False)
    for key, value in f.evidence.items():
        shown = value if len(value) <= 300 else value[:300] + "…"
        console.print(f"    {key}: {shown}", markup=False)
    if f.suppressed_by:
        console.print(f"    suppressed by policy: {f.suppressed_by}", markup=False)
    elif (rule := rule_for(f.code)) is not None and rule.help:
        # The rule's remediation, one line, for blocks and notes alike: the next step without
        # opening `weightguard rules` (issue 18). The HTML report shows it in full.
        console.print(f"    fix: {' '.join(rule.help.split())}", markup=False)
