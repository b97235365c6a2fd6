"""CycloneDX 1.6 ML-BOM rendering of a Report (``--format cyclonedx``).

The BOM describes the judged model: ``metadata.component`` is the model, of
type ``machine-learning-model``; every file of it is a ``file`` component
carrying its digests as ``hashes`` (from the integrity stage: ``verify``
hashes every file; ``scan`` does not, so its file components have none), and
the model depends on each file. What weightguard concluded goes in
``properties`` under the ``weightguard:`` namespace, as the CycloneDX
property taxonomy asks of tools: the verdict and exit code, the policy and its
sha256, the OMS root digest, and per file the detected format, size, a file
verdict and one ``weightguard:finding`` per finding on it. Findings not tied
to one file (a target that could not be read) sit on the model component.

Why the library (``cyclonedx-python-lib``, the CycloneDX project's own): it
owns the schema's field names, ordering and versions and ships the JSON
schema validator the tests use, where hand-written dicts would drift. It is an
optional extra (``[bom]``), and this module is imported only when the format
is asked for, so no other command pays its import (40-140 ms measured with
``python -X importtime`` on the shared 2-core machine). ``verify-many`` puts
every model in one BOM through :func:`model_components`
(:mod:`weightguard.catalogue.bom`).

The serial number is a UUID5 of the report's own JSON: each run (its
``generated_at`` differs) gets a new one, and re-rendering a saved report with
``weightguard render`` gives the same BOM, as every renderer here is a pure
function of the report.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from weightguard.errors import MissingExtraError
from weightguard.findings import RuleKind
from weightguard.report.model import FindingModel, Report, ToolInfo

try:  # the [bom] extra; this module is itself imported only when the format is asked for
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.tool import ToolRepository
    from cyclonedx.output.json import JsonV1Dot6
except ImportError as exc:
    raise MissingExtraError("bom", "CycloneDX output (--format cyclonedx)") from exc

PREFIX = "weightguard:"
# weightguard's algorithm names -> CycloneDX's (HashAlgorithm values); git-sha1 is not the file's SHA-1.
_CDX_ALGORITHMS = {"sha256": "SHA-256", "blake2b": "BLAKE2b-512", "blake3": "BLAKE3"}
_SERIAL_NAMESPACE = uuid.UUID("6f2c1b4e-9a57-4f0e-8a53-0c7e9d0d4b11")


@dataclass(slots=True)
class _File:
    """What the report says about one file, gathered from its scan, digests and findings."""

    name: str
    size: int | None = None
    format: str | None = None
    polyglot: bool = False
    digests: dict[str, str] = field(default_factory=dict)
    findings: list[FindingModel] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """``incomplete`` when it was not fully analysed, ``blocked`` on a blocking finding, else ``passed``."""
        if any(f.kind is not RuleKind.FINDING and not f.suppressed_by for f in self.findings):
            return "incomplete"
        return "blocked" if any(f.blocking for f in self.findings) else "passed"


def _relpath_of(path: str, relpaths: list[str]) -> str | None:
    """The relative path a displayed path (``/abs/model/a.bin``) names; ``relpaths`` longest first."""
    return next((r for r in relpaths if path == r or path.endswith("/" + r)), None)


def collect_files(report: Report) -> tuple[list[_File], list[FindingModel]]:
    """Every file the report knows (digests joined to scans by relative path) and the findings on no file."""
    files: dict[str, _File] = {}
    if report.integrity is not None:
        for d in report.integrity.files:
            entry = files.setdefault(d.path, _File(d.path, d.size))
            if d.sha256:
                entry.digests["sha256"] = d.sha256
            entry.digests[report.integrity.algorithm] = d.digest
    elif report.subject is not None:
        for path, sha in report.subject.files.items():
            files.setdefault(path, _File(path)).digests["sha256"] = sha
    relpaths = sorted(files, key=len, reverse=True)  # so that ``a/b.bin`` wins over ``b.bin``
    by_display: dict[str, _File] = {}
    for scanned in report.files:
        known = _relpath_of(scanned.path, relpaths)
        entry = files[known] if known is not None else files.setdefault(scanned.path, _File(scanned.path))
        entry.size, entry.format, entry.polyglot = scanned.size, scanned.format, scanned.polyglot
        if scanned.sha256:
            entry.digests.setdefault("sha256", scanned.sha256)
        by_display[scanned.path] = entry
    unplaced: list[FindingModel] = []
    for f in report.findings:
        on = _relpath_of(f.path, relpaths)
        target = by_display.get(f.path) or (files[on] if on is not None else None)
        (target.findings if target is not None else unplaced).append(f)
    return list(files.values()), unplaced


def _finding_text(f: FindingModel) -> str:
    where = f" [{f.member}]" if f.member else ""
    state = " (blocking)" if f.blocking else (f" (suppressed: {f.suppressed_by})" if f.suppressed_by else "")
    return f"{f.code} {f.severity.value}{state}{where}: {f.message}"


def _props(pairs: list[tuple[str, str]]) -> list[Property]:
    return [Property(name=PREFIX + name, value=value) for name, value in pairs]


def _hashes(digests: dict[str, str]) -> list[HashType]:
    return [
        HashType(alg=HashAlgorithm(_CDX_ALGORITHMS[alg]), content=hex_)
        for alg, hex_ in sorted(digests.items())
        if alg in _CDX_ALGORITHMS
    ]


def _file_component(f: _File, ref: str) -> Component:
    pairs = [("verdict", f.verdict)]
    pairs += [("format", f.format)] if f.format else []
    pairs += [("size", str(f.size))] if f.size is not None else []
    pairs += [("polyglot", "true")] if f.polyglot else []
    pairs += [("finding", _finding_text(x)) for x in f.findings]
    return Component(
        type=ComponentType.FILE, name=f.name, bom_ref=ref, hashes=_hashes(f.digests), properties=_props(pairs)
    )


def model_components(report: Report, ref: str) -> tuple[Component, list[Component]]:
    """The judged model (bom-ref ``ref``) and its files (``ref/file-N``), from one report."""
    files, unplaced = collect_files(report)
    components = [_file_component(f, f"{ref}/file-{i}") for i, f in enumerate(files)]
    subject = report.subject
    pairs = [
        ("verdict", report.verdict),
        ("exit-code", str(report.exit_code)),
        ("command", report.command),
        ("policy", report.policy.name),
        ("policy-sha256", report.policy.sha256),
        *(("target", t) for t in report.targets),
        *(("reason", r) for r in report.reasons),
        *(("finding", _finding_text(x)) for x in unplaced),
    ]
    if subject is not None and subject.root_digest:
        pairs.append(("oms-root-digest", subject.root_digest))
    elif report.integrity is not None:
        pairs.append(("oms-root-digest", report.integrity.root_digest))
    name = subject.name if subject is not None else (report.targets[0] if len(report.targets) == 1 else "models")
    model = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=name,
        bom_ref=ref,
        description=f"judged by weightguard {report.command}: {report.verdict}",
        properties=_props(pairs),
    )
    return model, components


def unjudged_component(target: str, error: str, ref: str) -> Component:
    """A model that could not be judged (verify-many): incomplete, with the reason, no files."""
    pairs = [("verdict", "incomplete"), ("target", target), ("reason", error)]
    return Component(type=ComponentType.MACHINE_LEARNING_MODEL, name=target, bom_ref=ref, properties=_props(pairs))


def _tools(tool: ToolInfo) -> ToolRepository:
    return ToolRepository(components=[Component(type=ComponentType.APPLICATION, name=tool.name, version=tool.version)])


def render_cyclonedx(report: Report) -> str:
    """The report as a CycloneDX 1.6 JSON ML-BOM: the model in ``metadata.component``, its files as components."""
    model, files = model_components(report, "model")
    bom = Bom(
        serial_number=uuid.uuid5(_SERIAL_NAMESPACE, report.model_dump_json()),
        metadata=BomMetaData(tools=_tools(report.tool), component=model, timestamp=report.generated_at),
        components=files,
    )
    bom.register_dependency(model, files)
    return str(JsonV1Dot6(bom).output_as_string(indent=2)) + "\n"


def render_models_cyclonedx(
    judged: list[tuple[Component, list[Component]]], tool: ToolInfo, generated_at: dt.datetime, identity: str
) -> str:
    """Several models in one BOM (verify-many): each a ``machine-learning-model`` component with its files nested.

    ``identity``: text that names this run (its report's JSON), from which the serial number is derived.
    """
    bom = Bom(
        serial_number=uuid.uuid5(_SERIAL_NAMESPACE, identity),
        metadata=BomMetaData(tools=_tools(tool), timestamp=generated_at),
    )
    for model, files in judged:
        for f in files:
            model.components.add(f)
        bom.components.add(model)
        bom.register_dependency(model, files)
    return str(JsonV1Dot6(bom).output_as_string(indent=2)) + "\n"
