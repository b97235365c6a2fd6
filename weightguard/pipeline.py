"""The only orchestrator: the order in which ``weightguard verify`` runs the stages.

source -> format detection and static analysis -> integrity and signatures ->
conversion (if the policy asks) -> trigger probes (if the policy asks) -> verdict
(and, when asked, a signed approval attestation). A stage that cannot finish
makes the verdict ``incomplete`` (fail closed). Every file is scanned through a
recording source and the hashing checks that it hashes the bytes the scan read
(:mod:`weightguard.integrity.binding`): a file that changed in between is the
blocking finding ``changed while verified``. Each stage's logic lives in
its package; this module only sequences them, times them and assembles the
report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from weightguard import __version__
from weightguard.analysis.scanner import FileScan, Scanner
from weightguard.api import make_scanner
from weightguard.convert.interface import ConversionProof
from weightguard.display_paths import display_paths, shown_scan
from weightguard.errors import IntegrityError, SignatureError, WeightguardError
from weightguard.findings import Finding, RuleKind
from weightguard.formats.model_folder import folder_findings
from weightguard.fsutil import write_atomic
from weightguard.integrity.binding import (
    CHANGED_WHILE_VERIFIED,
    ChangedWhileHashedError,
    changed_finding,
    changed_findings,
    scan_recorded,
)
from weightguard.integrity.hashing import FileHashes, HashRequest, hash_files
from weightguard.integrity.hub import HubListing
from weightguard.integrity.manifest import Manifest
from weightguard.integrity.stage import IntegrityStage, identity_files, run_integrity
from weightguard.policy.load import LoadedPolicy
from weightguard.probes.codes import NOT_PROBED as PROBE_NOT_RUN
from weightguard.probes.report import ProbeReport
from weightguard.report.build import StageRun, build_report
from weightguard.report.model import AttestationRef, Report, StageName, SubjectModel
from weightguard.scan_codes import ANALYSIS_FAILED
from weightguard.sources.hf_snapshot import HfSnapshotSource
from weightguard.sources.interface import ArtifactFile, SourceListing
from weightguard.sources.local import LocalSource
from weightguard.verdict.approval import approval_bundle
from weightguard.verdict.attestation import load_attestation_key

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    """Per-run choices that are not policy (where to write, which key signs)."""

    attest_key: Path | None = None
    attestation_path: Path | None = None
    attest_failed: bool = False
    hub_listing: Path | None = None
    convert_dir: Path | None = None
    registry_auth_file: Path | None = None
    insecure_registries: tuple[str, ...] = ()
    registry_ca_bundle: Path | None = None
    oci_dir: Path | None = None  # where an oci:// target is unpacked (None: a new temporary folder)


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    """A target's files, where they live, and the Hub listing for hf:// targets."""

    uri: str
    name: str
    root: Path
    listing: SourceListing
    hub: HubListing | None = None
    extra_findings: tuple[Finding, ...] = ()
    # sha256 the source vouches for (an oci:// pull: of the digest-checked bytes it wrote; see oci_blobs)
    known: Mapping[str, FileHashes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Prepared:
    """Stage inputs a caller already has (verify-many computes them once per distinct file).

    Attributes:
        resolved: The target, resolved by :func:`resolve_target`.
        scans: Scan of each file's current content, by relpath; a file without one is scanned here.
        hashes: Digests of the same bytes, by relpath; the integrity stage computes only what
            they lack (the caller vouches that they are digests of the scanned bytes).
    """

    resolved: ResolvedTarget
    scans: Mapping[str, FileScan] = field(default_factory=dict)
    hashes: Mapping[str, FileHashes] = field(default_factory=dict)


@dataclass
class _Run:
    """Mutable bookkeeping of one verify run (internal)."""

    findings: list[Finding] = field(default_factory=list)
    scans: list[FileScan] = field(default_factory=list)
    stages: list[StageRun] = field(default_factory=list)

    def stage(
        self, name: StageName, started: float, findings: list[Finding] | tuple[Finding, ...], detail: str = ""
    ) -> None:
        # The status is judged with the report, by the policy's gate (a note is not a failure).
        self.stages.append(StageRun(name, round(time.monotonic() - started, 4), detail, tuple(findings)))
        self.findings.extend(findings)

    def add(self, name: StageName, findings: list[Finding] | tuple[Finding, ...]) -> None:
        """Findings of a stage already recorded, found after it ended (they count against it)."""
        self.stages = [
            dataclasses.replace(s, findings=(*s.findings, *findings)) if s.name == name else s for s in self.stages
        ]
        self.findings.extend(findings)


def converts(loaded: LoadedPolicy, convert_dir: Path | None) -> bool:
    """Whether the policy converts pickle-based weights: always when required, when allowed only into a folder given."""
    mode = loaded.policy.spec.conversion.mode
    return mode == "required" or (mode == "allowed" and convert_dir is not None)


def resolve_target(target: str, loaded: LoadedPolicy, options: VerifyOptions = VerifyOptions()) -> ResolvedTarget:
    """Collect the files of a local path or an ``hf://org/name@REVISION`` target.

    Raises:
        SourceError: the target does not exist or cannot be resolved.
    """
    spec = loaded.policy.spec.integrity
    if target.startswith("hf://"):
        source = HfSnapshotSource(
            target,
            require_commit=spec.require_pinned_revision,
            offline=spec.hf.offline,
            allow_missing_listing=spec.hf.allow_missing_listing,
            listing_path=options.hub_listing,
        )
        snapshot = source.resolve()
        root = Path(snapshot.listing.root)
        name = snapshot.uri.repo_id.split("/")[-1]
        return ResolvedTarget(
            f"hf://{snapshot.uri.repo_id}@{snapshot.commit}",
            name,
            root,
            snapshot.listing,
            snapshot.hub,
            snapshot.hub_findings,
        )
    if target.startswith("oci://"):
        from weightguard.sources.oci_target import list_oci_target  # noqa: PLC0415 - httpx only here

        pulled = list_oci_target(
            target,
            options.oci_dir,
            auth_file=options.registry_auth_file,
            insecure_registries=options.insecure_registries,
            ca_bundle=options.registry_ca_bundle,
            allow_tag=not spec.require_pinned_revision,
        )
        return ResolvedTarget(pulled.uri, pulled.name, pulled.folder, pulled.listing, known=pulled.known)
    path = Path(target)
    listing = LocalSource(path, allow_symlinks=spec.allow_symlinks_inside).collect()
    root = Path(listing.root)  # the folder itself, or a single file's folder
    name = path.name if path.name not in ("", ".", "..") and not path.is_symlink() else path.resolve().name
    return ResolvedTarget(str(path), name, root, listing)


def model_digest(
    target: str, loaded: LoadedPolicy, *, exclude: tuple[str, ...] = (), options: VerifyOptions = VerifyOptions()
) -> tuple[ResolvedTarget, str]:
    """Return the resolved target and the OMS root digest of its identity files, hashed now.

    Raises:
        SourceError: the target cannot be resolved.
        IntegrityError: a file could not be hashed.
    """
    resolved = resolve_target(target, loaded, options)  # options: registry access for oci:// targets
    files = identity_files(resolved.listing.files, loaded.policy, exclude)
    return resolved, Manifest.of(hash_files(files, HashRequest(), known=resolved.known)).root_digest("sha256")


def verify(
    target: str,
    loaded: LoadedPolicy,
    options: VerifyOptions = VerifyOptions(),
    *,
    progress: Progress | None = None,
    prepared: Prepared | None = None,
) -> Report:
    """Run every stage the policy asks for on ``target`` and return the judged report.

    ``prepared`` hands in stage inputs computed elsewhere (the resolved target, scans, digests):
    verify-many judges a model through this function with its cached file scans, so a model
    gets the same verdict whichever command judged it.

    Raises:
        SourceError: the target cannot be resolved at all (nothing to judge).
        SignatureError: the attestation key cannot be used.
    """
    say = progress or (lambda _msg: None)
    run = _Run()
    policy = loaded.policy

    started = time.monotonic()
    say(f"collecting {target}")
    resolved = prepared.resolved if prepared is not None else resolve_target(target, loaded, options)
    run.stage(
        "source",
        started,
        [*resolved.listing.findings, *resolved.extra_findings],
        f"{len(resolved.listing.files)} file(s)",
    )

    scanner = make_scanner(loaded)
    done = prepared.scans if prepared is not None else {}
    files: list[ArtifactFile] = []
    for artifact in resolved.listing.files:
        say(f"analysing {artifact.relpath}")
        known = done.get(artifact.relpath)
        if known is not None and known.size == artifact.size:
            run.scans.append(known)
            files.append(artifact)
        else:
            scan, recorded = scan_recorded(scanner.scan, artifact)
            run.scans.append(scan)
            files.append(recorded)
    scan_findings = [f for s in run.scans for f in (*s.outcome.findings, *s.outcome.errors, *s.outcome.skipped)]
    # What the folder's indexes make the loader read (shards, component code), through the scanned sources.
    folder = folder_findings(files, scanner.settings.limits.max_header_bytes)
    run.findings.extend(folder)
    # The scans' own times: the same figure whether they ran here or in verify-many's workers.
    seconds = round(sum(s.seconds for s in run.scans), 4)
    run.stages.append(StageRun("analysis", seconds, f"{len(run.scans)} file(s) analysed", (*scan_findings, *folder)))

    started = time.monotonic()
    say("hashing and checking signatures")
    integrity: IntegrityStage | None = None
    excluded = [_inside(options.attestation_path, resolved.root)] if options.attestation_path else []
    try:
        integrity = run_integrity(
            resolved.root,
            files,
            policy,
            policy_dir(loaded),
            hub=resolved.hub,
            extra_excluded=[e for e in excluded if e],
            known={**resolved.known, **(prepared.hashes if prepared is not None else {})},
        )
        run.stage("integrity", started, integrity.findings, f"root digest {integrity.root_digest[:16]}…")
    except ChangedWhileHashedError as exc:
        run.stage("integrity", started, [changed_finding(exc)], "changed while verified")
    except (IntegrityError, SignatureError) as exc:
        run.stage(
            "integrity",
            started,
            [ANALYSIS_FAILED.at(resolved.name, f"integrity stage could not finish: {exc.message}")],
        )

    # A file seen to change by its scan alone (one that was not hashed here) is refused all the same.
    flagged = {f.path for f in run.findings if f.code == CHANGED_WHILE_VERIFIED.code}
    run.add("integrity", [f for f in changed_findings(files) if f.path not in flagged])

    judged = target
    conversion: ConversionProof | None = None
    if converts(loaded, options.convert_dir):
        started = time.monotonic()
        say("converting pickle-based weights to safetensors")
        out_dir = options.convert_dir or Path(f"{resolved.name}.safetensors")
        conversion, converted, notes = _convert(resolved, run.scans, out_dir, loaded, scanner)
        run.stage("conversion", started, notes, f"into {out_dir}" if converted else "refused")
        if converted:
            # From here on the verdict covers the converted model: that is what gets approved and rolled out.
            say(f"verifying the converted model in {out_dir}")
            resolved = resolve_target(str(out_dir), loaded, options)
            pairs = [scan_recorded(scanner.scan, a) for a in resolved.listing.files]
            run.scans = [scan for scan, _ in pairs]
            # What the converted model's check finds counts against the conversion stage.
            run.add("conversion", resolved.listing.findings)
            try:
                integrity = run_integrity(resolved.root, [a for _, a in pairs], policy, policy_dir(loaded))
                run.add("conversion", integrity.findings)
            except ChangedWhileHashedError as exc:
                integrity = None
                run.add("conversion", [changed_finding(exc)])
            except (IntegrityError, SignatureError) as exc:
                integrity = None
                run.add(
                    "conversion",
                    [ANALYSIS_FAILED.at(resolved.name, f"integrity of the converted model: {exc.message}")],
                )
            judged = str(out_dir)

    probes: ProbeReport | None = None
    if policy.spec.probes.run != "off":
        started = time.monotonic()
        say("running the trigger-probe suite")
        probes = run_probes(resolved, loaded)
        run.stage("probes", started, probe_findings(probes, resolved.name), f"{probes.verdict}")

    now = dt.datetime.now(dt.UTC)
    shown = display_paths(judged, resolved)

    def moved(findings: tuple[Finding, ...]) -> list[Finding]:
        return [dataclasses.replace(f, path=shown(f.path)) for f in findings]

    report = build_report(
        command="verify",
        targets=[target],
        loaded=loaded,
        scans=[shown_scan(s, shown) for s in run.scans],
        extra_findings=moved(tuple(run.findings)),
        version=__version__,
        now=now,
        stages=[dataclasses.replace(s, findings=tuple(moved(s.findings))) for s in run.stages],
        verdict_stage=True,
    )
    subject = SubjectModel(
        name=resolved.name,
        uri=resolved.uri,
        root_digest=integrity.root_digest if integrity else None,
        files={p: h.digests["sha256"] for p, h in integrity.hashes.items() if "sha256" in h.digests}
        if integrity
        else {},
    )
    report = report.model_copy(
        update={
            "subject": subject,
            "integrity": integrity.report if integrity else None,
            "signatures": list(integrity.signatures) if integrity else [],
            "probes": probes,
            "conversion": conversion,
        }
    )
    if options.attest_key is not None and (report.verdict == "approved" or options.attest_failed):
        report = _attest(report, loaded, options, now)
    return report


def _convert(
    resolved: ResolvedTarget, scans: list[FileScan], out_dir: Path, loaded: LoadedPolicy, scanner: Scanner
) -> tuple[ConversionProof | None, bool, list[Finding]]:
    """Convert the approved pickle weights; without torch the stage cannot finish (fails closed)."""
    try:
        from weightguard.convert.run import convert_model  # noqa: PLC0415 - torch is an optional extra
    except ImportError as exc:
        return (
            None,
            False,
            [ANALYSIS_FAILED.at(resolved.name, f"conversion needs the [torch] extra ({exc.name} is missing)")],
        )
    formats = {s.relpath: s.format for s in scans}
    try:
        result = convert_model(list(resolved.listing.files), formats, out_dir, loaded, scanner)
    except WeightguardError as exc:
        return None, False, [ANALYSIS_FAILED.at(resolved.name, f"conversion could not finish: {exc.message}")]
    return result.proof, result.converted, list(result.findings)


def run_probes(resolved: ResolvedTarget, loaded: LoadedPolicy) -> ProbeReport:
    """Run the probe suite on the model directory; without the [probes] extra the model is not probed."""
    try:
        from weightguard.probes.suite import probe_directory  # noqa: PLC0415 - torch is an optional extra
    except ImportError as exc:
        return ProbeReport(
            model=resolved.name,
            verdict="not-probed",
            exit_code=2,
            reason=f"the probe suite needs the [probes] extra ({exc.name} is not installed)",
        )
    return probe_directory(resolved.root, loaded.policy.spec.probes)


def probe_findings(report: ProbeReport, name: str) -> list[Finding]:
    """The probe report's findings as pipeline findings; a model that was not probed is skipped (fails closed)."""
    findings = [
        Finding(code=f.code, severity=f.severity, kind=RuleKind(f.kind), path=".", message=f.message)
        for f in report.findings
    ]
    if report.verdict == "not-probed" and not any(f.kind is not RuleKind.FINDING for f in findings):
        findings.append(PROBE_NOT_RUN.at(".", f"{name} was not probed: {report.reason}"))
    return findings


def probe_only_report(probes: ProbeReport, target: str, loaded: LoadedPolicy) -> Report:
    """The report of a probe run alone (``weightguard probe``), judged by the policy as verify judges probes.

    The probe suite's own verdict decides the probe command's exit code; this report carries
    the policy's judgement of the same findings, which is what verify would make of them.
    """
    notes = probe_findings(probes, probes.model or Path(target).name)
    seconds = probes.coverage.wall_seconds if probes.coverage else 0.0
    report = build_report(
        command="probe",
        targets=[target],
        loaded=loaded,
        scans=[],
        extra_findings=notes,
        version=__version__,
        now=dt.datetime.now(dt.UTC),
        stages=[StageRun("probes", seconds, probes.verdict, tuple(notes))],
    )
    return report.model_copy(update={"probes": probes})


def _attest(report: Report, loaded: LoadedPolicy, options: VerifyOptions, now: dt.datetime) -> Report:
    subject = report.subject
    if subject is None or subject.root_digest is None or options.attest_key is None:
        return report
    key = load_attestation_key(options.attest_key)  # exit 2 if it vanished since the CLI checked it
    bundle = approval_bundle(report, key, model_name=subject.name, resource_uri=subject.uri, time_verified=now)
    path = options.attestation_path or Path(f"{subject.name}.weightguard.att.json")
    write_atomic(path, bundle.decode())
    ref = AttestationRef(
        path=str(path),
        sha256=hashlib.sha256(bundle).hexdigest(),
        verification_result="PASSED" if report.verdict == "approved" else "FAILED",
    )
    return report.model_copy(update={"attestation": ref})


def policy_dir(loaded: LoadedPolicy) -> Path:
    """The folder relative paths in the policy are taken from (the working directory for built-ins)."""
    return loaded.base_dir


def _inside(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


__all__ = [
    "Prepared",
    "ResolvedTarget",
    "VerifyOptions",
    "display_paths",
    "model_digest",
    "policy_dir",
    "probe_findings",
    "probe_only_report",
    "resolve_target",
    "run_probes",
    "shown_scan",
    "verify",
]
