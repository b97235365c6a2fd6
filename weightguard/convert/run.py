"""Convert an approved model to safetensors, and prove the conversion lossless (needs torch).

Every weight file is first copied into a private temporary file (while its
sha256 is computed); that private copy is scanned again and, only if the
scan approves it under the policy, loaded from the same private file with
``torch.load(weights_only=True)`` (``mmap=True`` for zip checkpoints) or
``numpy.load(allow_pickle=False)``. So the bytes that were judged are the
bytes that are loaded, and nobody can swap the file in between. Outputs are
written into a staging folder inside the output directory and moved into
place only after every file converted and every tensor was reloaded with
the ``safetensors`` library and compared bit for bit with its source; a
failure removes the staging folder and leaves the output directory as it
was. The source is only ever read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from safetensors import safe_open

from weightguard.analysis.scanner import Scanner
from weightguard.convert import codes
from weightguard.convert.interface import ConversionProof, ConvertedFile, PlannedFile
from weightguard.convert.planner import plan, rename_index
from weightguard.convert.tensors import Extracted, extract
from weightguard.convert.writer import write_safetensors
from weightguard.errors import ConversionError
from weightguard.findings import Finding
from weightguard.formats.interface import FileFormat
from weightguard.integrity.hashing import HashRequest, hash_files
from weightguard.integrity.manifest import Manifest
from weightguard.policy.load import LoadedPolicy
from weightguard.policy.rules import SeverityGate
from weightguard.sources.interface import ArtifactFile, ByteSource
from weightguard.sources.local import LocalSource, MappedFile

COPY_CHUNK = 8 * 2**20


@dataclass(frozen=True, slots=True)
class ConversionResult:
    """The proof, and findings about what the conversion did or refused."""

    proof: ConversionProof
    findings: tuple[Finding, ...]
    converted: bool


def _private_copy(source: ByteSource, directory: Path, name: str) -> tuple[Path, str]:
    digest = hashlib.sha256()
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        offset = 0
        while offset < source.size:
            chunk = source.read_at(offset, COPY_CHUNK)
            if not chunk:
                raise ConversionError(f"{name}: the source ended early while copying")
            fh.write(chunk)
            digest.update(chunk)
            offset += len(chunk)
    return path, digest.hexdigest()


def _load(private: Path, kind: str, fmt: FileFormat) -> object:
    try:
        if kind == "npz":
            with np.load(private, allow_pickle=False) as npz:
                return {k: torch.from_numpy(np.array(npz[k])) for k in npz.files}
        # weights_only=True is the restricted unpickler; never weights_only=False (see module docstring).
        return torch.load(private, map_location="cpu", weights_only=True, mmap=fmt is FileFormat.PYTORCH_ZIP)
    except (RuntimeError, ValueError, OSError, EOFError, KeyError, TypeError) as exc:
        raise ConversionError(f"{private.name}: the restricted loader refused it: {exc}") from exc


def _prove(path: Path, ex: Extracted) -> int:
    compared = 0
    with safe_open(str(path), framework="pt") as reloaded:
        names = set(reloaded.keys())
        if names != set(ex.tensors):
            raise ConversionError(f"{path.name}: reloaded names differ from the source's")
        for name, source in ex.tensors.items():
            back = reloaded.get_tensor(name)
            same = (
                back.dtype == source.dtype
                and back.shape == source.shape
                and torch.equal(
                    back.contiguous().reshape(-1).view(torch.uint8), source.contiguous().reshape(-1).view(torch.uint8)
                )
            )
            if not same:
                raise ConversionError(f"{path.name}: tensor {name!r} did not survive the round trip bit for bit")
            compared += 1
    return compared


def _convert_one(
    art: ArtifactFile,
    planned: PlannedFile,
    fmt: FileFormat,
    private_dir: Path,
    staging: Path,
    scanner: Scanner,
    loaded: LoadedPolicy,
) -> tuple[ConvertedFile | None, list[Finding]]:
    spec = loaded.policy.spec.conversion
    private, sha = _private_copy(art.source, private_dir, hashlib.sha256(art.relpath.encode()).hexdigest()[:32])
    scan = scanner.scan(ArtifactFile(art.relpath, private.stat().st_size, MappedFile(private)))
    everything = [*scan.outcome.findings, *scan.outcome.errors, *scan.outcome.skipped]
    blocking = SeverityGate.from_policy(loaded.policy).judge(everything, dt.datetime.now(dt.UTC).date()).blocking
    if blocking:
        codes_seen = sorted({f.code for f in blocking})
        return None, [
            codes.SCAN_BLOCKED.at(art.relpath, f"not converted: the scan blocked it ({', '.join(codes_seen)})")
        ]
    try:
        ex = extract(_load(private, planned.kind, fmt), unwrap_state_dict=spec.unwrap_state_dict)
    except ConversionError as exc:
        return None, [codes.UNSUPPORTED_CONTENT.at(art.relpath, exc.message)]
    findings: list[Finding] = []
    if ex.dropped:
        dropped = ", ".join(ex.dropped[:20])
        finding = codes.NON_TENSOR_DROPPED.at(
            art.relpath, f"entries that are not tensors: {dropped}", entries=len(ex.dropped)
        )
        if not spec.allow_dropping_non_tensor:
            return None, [finding]
        findings.append(
            codes.NON_TENSOR_DROPPED.at(art.relpath, finding.message, severity=codes.ALIAS_REMOVED.severity)
        )
    if ex.unwrapped:
        findings.append(codes.STATE_DICT_UNWRAPPED.at(art.relpath, "tensors taken from the 'state_dict' entry"))
    for removed, kept in ex.aliases.items():
        findings.append(
            codes.ALIAS_REMOVED.at(art.relpath, f"{removed} shares storage with {kept}", removed=removed, kept=kept)
        )
    metadata = {"format": "pt", **ex.aliases}
    out = staging / planned.output
    out.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(out, ex.tensors, metadata)
    try:
        compared = _prove(out, ex)
    except ConversionError as exc:
        return None, [codes.PROOF_FAILED.at(art.relpath, exc.message)]
    return ConvertedFile(
        source=art.relpath,
        source_sha256=sha,
        output=planned.output,
        tensors=len(ex.tensors),
        compared=compared,
        aliases=dict(ex.aliases),
        dropped=list(ex.dropped),
        unwrapped=ex.unwrapped,
    ), findings


def _copy_into(art: ArtifactFile, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("xb") as fh:
        offset = 0
        while offset < art.size:
            chunk = art.source.read_at(offset, COPY_CHUNK)
            if not chunk:
                raise ConversionError(f"{art.relpath}: the source ended early while copying")
            fh.write(chunk)
            offset += len(chunk)


def convert_model(
    files: Sequence[ArtifactFile],
    formats: dict[str, FileFormat],
    out_dir: Path,
    loaded: LoadedPolicy,
    scanner: Scanner,
    *,
    sign_key: Path | None = None,
) -> ConversionResult:
    """Convert every approved pickle-based weight file of a model into ``out_dir``.

    Raises:
        ConversionError: the output directory cannot be used, or the plan is impossible.
    """
    conversion = plan(formats)
    by_path = {f.relpath: f for f in files}
    out_dir.mkdir(parents=True, exist_ok=True)
    clashes = [p for p in (*[w.output for w in conversion.weights], *conversion.copies) if (out_dir / p).exists()]
    if clashes:
        raise ConversionError(f"{out_dir} already holds {clashes[:5]}", hint="choose an empty output directory")
    staging = Path(tempfile.mkdtemp(prefix=".weightguard-staging-", dir=out_dir))
    private_dir = Path(tempfile.mkdtemp(prefix="weightguard-private-"))
    findings: list[Finding] = []
    converted: list[ConvertedFile] = []
    ok = True
    try:
        for planned in conversion.weights:
            result, notes = _convert_one(
                by_path[planned.source], planned, formats[planned.source], private_dir, staging, scanner, loaded
            )
            findings.extend(notes)
            if result is None:
                ok = False
                break
            converted.append(result)
        index_name = None
        if ok:
            for rel in conversion.copies:
                _copy_into(by_path[rel], staging / rel)
            if conversion.index is not None:
                source_index, index_name = conversion.index
                art = by_path[source_index]
                renames = {PurePosixPath(w.source).name: PurePosixPath(w.output).name for w in conversion.weights}
                (staging / index_name).write_bytes(rename_index(art.source.read_at(0, art.size), renames))
            for produced in sorted(p for p in staging.rglob("*") if p.is_file()):
                target = out_dir / produced.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                produced.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(private_dir, ignore_errors=True)
    proof = ConversionProof(output_dir=str(out_dir), files=converted, copied=list(conversion.copies), index=index_name)
    if not ok:
        return ConversionResult(proof, tuple(findings), False)
    listing = LocalSource(out_dir).collect()
    hashes = hash_files(list(listing.files), HashRequest())
    outputs = {c.output: c.model_copy(update={"output_sha256": hashes[c.output].digests["sha256"]}) for c in converted}
    proof = proof.model_copy(
        update={"files": list(outputs.values()), "manifest_root_digest": Manifest.of(hashes).root_digest("sha256")}
    )
    if sign_key is not None:
        proof = proof.model_copy(update={"signature": _sign(out_dir, sign_key)})
    return ConversionResult(proof, tuple(findings), True)


def _sign(out_dir: Path, key_path: Path) -> str:
    from weightguard.fsutil import write_atomic
    from weightguard.signing.keys import load_private_key
    from weightguard.signing.oms_sign import sign_model

    try:
        key = load_private_key(key_path.read_bytes())
    except OSError as exc:
        raise ConversionError(f"cannot read the signing key {key_path}: {exc.strerror or exc}") from exc
    signature = out_dir / "model.sig"
    write_atomic(signature, sign_model(out_dir, key, signature_path=signature))
    return str(signature)
