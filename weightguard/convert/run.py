"""Convert an approved model to safetensors, and prove the conversion lossless (needs torch).

Shard by shard: each weight file is read once into a private, sealed copy
(``loader.py``), that copy is judged by the :class:`Approver` (the scanner
under the policy) and, only if approved, loaded from the same copy with the
restricted loaders; its tensors are written with the streaming writer, the
output is reloaded with the ``safetensors`` library and every source name is
compared bit for bit (``proof.py``); then the shard is released before the
next one, so about one shard is in memory at a time.

Outputs go to a staging folder and are published only after every file
converted and proved: a new (or empty) output directory appears with one
atomic rename, signature and proof included; into a directory that already
holds other files, each file is renamed in whole. Any failure (or an
interruption) removes the staging folder and leaves the output directory as
it was. The source is only ever read. Every produced file is flushed to disk
and hashed (sha256) in a background thread while the next shard converts
(``hash_files`` is not used here: its fresh 8 MiB chunk per read cost tens of
MiB of peak memory per thread, see ``loader.sha256_fd``); the manifest and proof
are written as ``weightguard-conversion.json``, and with a key the output is
signed as an OMS signature.
Not handled here: choosing the files (``planner.py``) or rendering results.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from weightguard.analysis.scanner import Scanner
from weightguard.convert import codes
from weightguard.convert.interface import ConversionPlan, ConversionProof, ConvertedFile, PlannedFile
from weightguard.convert.loader import Approver, ScanApprover, load_npz, load_torch, private_copy, sha256_fd
from weightguard.convert.planner import plan, rename_index
from weightguard.convert.proof import prove
from weightguard.convert.publish import make_staging, publish_files, publish_folder
from weightguard.convert.tensors import extract
from weightguard.convert.writer import copy_file, write_chunks, write_safetensors
from weightguard.errors import ConversionError
from weightguard.findings import Finding
from weightguard.formats.interface import FileFormat
from weightguard.integrity.hashing import FileHashes, HashRequest, hash_files
from weightguard.integrity.manifest import Manifest
from weightguard.policy.load import LoadedPolicy
from weightguard.progress import Counter, current
from weightguard.signing.keys import PrivateKey, load_private_key
from weightguard.signing.oms_sign import sign_model
from weightguard.sources.interface import ArtifactFile
from weightguard.sources.local import open_source

PROOF_NAME = "weightguard-conversion.json"
SIGNATURE_NAME = "model.sig"
_LOG = logging.getLogger(__name__)
_SHOWN = 5  # blocking findings named in the refusal message


@dataclass(frozen=True, slots=True)
class ConversionResult:
    """The proof, and findings about what the conversion did or refused."""

    proof: ConversionProof
    findings: tuple[Finding, ...]
    converted: bool


def _refusal(relpath: str, blocking: tuple[Finding, ...], what: str = "not loaded, not converted") -> list[Finding]:
    named = "; ".join(f"{f.code} {f.location}: {f.message}" for f in blocking[:_SHOWN])
    more = f" (+{len(blocking) - _SHOWN} more)" if len(blocking) > _SHOWN else ""
    summary = codes.SCAN_BLOCKED.at(relpath, f"{what}: {named}{more}", blocking=len(blocking))
    return [summary, *blocking]


def _sync_and_hash(fd: int) -> str:
    # Runs beside the next shard's work: flushes the staged file to disk (before it is moved into
    # the output directory) and hashes it for the manifest; the descriptor survives the final rename.
    try:
        os.fsync(fd)
        return sha256_fd(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _convert_one(
    art: ArtifactFile, planned: PlannedFile, fmt: FileFormat, staging: Path, ctx: _Context
) -> tuple[ConvertedFile | None, list[Finding]]:
    spec = ctx.loaded.policy.spec.conversion
    copy = private_copy(art.source, PurePosixPath(art.relpath).name, ctx.executor)
    try:
        blocking = ctx.approver.approve(copy.source(), art.relpath)
        if blocking:
            return None, _refusal(art.relpath, blocking)
        try:
            obj = load_npz(copy) if planned.kind == "npz" else load_torch(copy, fmt)
            ex = extract(obj, unwrap_state_dict=spec.unwrap_state_dict)
        except ConversionError as exc:
            return None, [codes.UNSUPPORTED_CONTENT.at(art.relpath, exc.message)]
        del obj
        findings: list[Finding] = []
        if ex.dropped:
            listed = ", ".join(ex.dropped[:20])
            message = f"entries that are not tensors: {listed}"
            if not spec.allow_dropping_non_tensor:
                return None, [codes.NON_TENSOR_DROPPED.at(art.relpath, message, entries=len(ex.dropped))]
            # A permissive switch in use is always said out loud (STYLE.md, principle 7).
            _LOG.warning("%s: allow_dropping_non_tensor: dropping %s", art.relpath, listed)
            findings.append(
                codes.NON_TENSOR_DROPPED.at(
                    art.relpath,
                    message + " (dropped: allow_dropping_non_tensor)",
                    severity=codes.ALIAS_REMOVED.severity,
                )
            )
        if ex.unwrapped:
            findings.append(codes.STATE_DICT_UNWRAPPED.at(art.relpath, "tensors taken from the 'state_dict' entry"))
        for removed, kept in ex.aliases.items():
            findings.append(
                codes.ALIAS_REMOVED.at(art.relpath, f"{removed} shares storage with {kept}", removed=removed, kept=kept)
            )
        # "format" last: safetensors' loaders read it; an alias literally named "format" stays in the proof.
        metadata = {**ex.aliases, "format": "pt"}
        out = staging / planned.output
        out.parent.mkdir(parents=True, exist_ok=True)
        write_safetensors(out, ex.tensors, metadata, fsync=False)  # synced by _sync_and_hash before the move
        ctx.digests[planned.output] = ctx.executor.submit(_sync_and_hash, os.open(out, os.O_RDONLY))
        try:
            compared = prove(out, ex.source, ex.aliases)
        except ConversionError as exc:
            return None, [codes.PROOF_FAILED.at(art.relpath, exc.message)]
        return ConvertedFile(
            source=art.relpath,
            source_sha256=copy.sha256,
            output=planned.output,
            tensors=len(ex.tensors),
            compared=compared,
            aliases=dict(ex.aliases),
            dropped=list(ex.dropped),
            unwrapped=ex.unwrapped,
        ), findings
    finally:
        copy.close()  # the tensors of this shard are unreferenced by now: its memory goes with it


@dataclass(frozen=True, slots=True)
class _Context:
    approver: Approver
    loaded: LoadedPolicy
    executor: Executor
    digests: dict[str, Future[str]]


def _stage(
    files: Sequence[ArtifactFile],
    formats: dict[str, FileFormat],
    conversion: ConversionPlan,
    staging: Path,
    ctx: _Context,
) -> tuple[list[ConvertedFile], list[Finding], bool]:
    """Write the converted weights, the copies and the index into ``staging``; ``False`` if refused."""
    by_path = {f.relpath: f for f in files}
    findings: list[Finding] = []
    converted: list[ConvertedFile] = []
    sink = current()
    counter = Counter(sink, "converting", sum(by_path[w.source].size for w in conversion.weights)) if sink else None
    for planned in conversion.weights:
        result, notes = _convert_one(by_path[planned.source], planned, formats[planned.source], staging, ctx)
        findings.extend(notes)
        if result is None:
            return converted, findings, False
        converted.append(result)
        if counter is not None:  # source bytes converted, shard by shard
            counter.add(by_path[planned.source].size, planned.source)
    for rel in conversion.copies:
        copy_file(by_path[rel].source, staging / rel)
        # The copy, not the original, is judged: what is published is exactly what was scanned.
        # A file whose first format looked harmless (an object-dtype .npy, a gzipped pickle, a
        # polyglot) must not ride into the "safe" output unscanned.
        blocking = ctx.approver.approve(open_source(staging / rel), rel)
        if blocking:
            return converted, [*findings, *_refusal(rel, blocking, "not copied into the output")], False
    if conversion.index is not None:
        source_index, index_name = conversion.index
        art = by_path[source_index]
        renames = {PurePosixPath(w.source).name: PurePosixPath(w.output).name for w in conversion.weights}
        (staging / index_name).write_bytes(rename_index(art.source.read_at(0, art.size), renames))
    return converted, findings, True


def convert_model(
    files: Sequence[ArtifactFile],
    formats: dict[str, FileFormat],
    out_dir: Path,
    loaded: LoadedPolicy,
    scanner: Scanner,
    *,
    sign_key: Path | None = None,
    approver: Approver | None = None,
) -> ConversionResult:
    """Convert every approved pickle-based weight file of a model into ``out_dir``.

    Args:
        files: the model's files, as the sources stage listed them.
        formats: each file's detected format (``planner.formats_of``).
        out_dir: where the converted model goes; existing files are never overwritten.
        loaded: the policy (scan gate and ``conversion`` section).
        scanner: the scanner that judges each private copy before it is loaded.
        sign_key: a PEM private key: sign the output as an OMS signature.
        approver: replaces the scanner's judgement (tests inject fakes here).

    Raises:
        ConversionError: the output directory cannot be used, the plan is impossible, or signing failed.
    """
    key = _load_key(sign_key) if sign_key is not None else None  # a bad key fails now, not after the work
    if sign_key is not None and out_dir.exists() and any(out_dir.iterdir()):
        # A signature covers the whole folder, and the files already there were never checked here.
        raise ConversionError(
            f"cannot sign into {out_dir}: it already holds files this run did not check",
            hint="convert into a new or empty folder to sign the output",
        )
    judge = approver or ScanApprover(scanner, loaded)
    conversion = plan(formats)
    if conversion.unconvertible:
        refused = tuple(
            codes.UNCONVERTIBLE_FILE.at(
                rel, f"{formats[rel].value} file: not converted, not copied", format=formats[rel].value
            )
            for rel in conversion.unconvertible
        )
        return ConversionResult(ConversionProof(output_dir=str(out_dir)), refused, False)
    produced = [*(w.output for w in conversion.weights), *conversion.copies]
    if conversion.index is not None:
        produced.append(conversion.index[1])
    # Two background threads flush and hash each private copy and each output beside the work.
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="weightguard-convert-hash")
    ctx = _Context(judge, loaded, executor, {})
    signature: str | None = None
    holder: Path | None = None
    try:
        # Inside the try: a SIGTERM right after the folder exists still reaches the rmtree below.
        holder, staging, fresh = make_staging(out_dir, [*produced, PROOF_NAME, *([SIGNATURE_NAME] if sign_key else [])])
        converted, findings, ok = _stage(files, formats, conversion, staging, ctx)
        copied = list(conversion.copies) if ok else []
        index_name = conversion.index[1] if ok and conversion.index is not None else None
        staged = sorted(p for p in staging.rglob("*") if p.is_file())
        for item in staged:
            rel = item.relative_to(staging).as_posix()
            if ok and rel not in ctx.digests:
                ctx.digests[rel] = executor.submit(_sync_and_hash, os.open(item, os.O_RDONLY))
        digests = {rel: future.result() for rel, future in ctx.digests.items()}  # every file is on disk now
        proof = ConversionProof(output_dir=str(out_dir), files=converted, copied=copied, index=index_name)
        if ok:
            proof = proof.model_copy(
                update={
                    "files": [c.model_copy(update={"output_sha256": digests[c.output]}) for c in converted],
                    "manifest": dict(sorted(digests.items())),
                    "manifest_root_digest": Manifest.from_digests(
                        {k: {"sha256": v} for k, v in digests.items()}
                    ).root_digest(),
                }
            )
            _write_proof(staging / PROOF_NAME, proof)
            if fresh:
                # The staged folder already has the output's name, so the OMS subject name is right.
                signature = _sign(staging, key, digests) if key is not None else None
                publish_folder(staging, out_dir)
            else:
                publish_files(staging, out_dir)  # never signed: refused above for a folder with files
    finally:
        executor.shutdown(wait=True)  # not cancelled: each queued hash job owns a descriptor it must close
        if holder is not None:
            shutil.rmtree(holder, ignore_errors=True)
    if not ok:
        return ConversionResult(proof, tuple(findings), False)
    if signature is not None:
        proof = proof.model_copy(update={"signature": str(out_dir / SIGNATURE_NAME)})
    return ConversionResult(proof, tuple(findings), True)


def _write_proof(path: Path, proof: ConversionProof) -> None:
    write_chunks(path, [(json.dumps(proof.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()])


def _load_key(key_path: Path) -> PrivateKey:
    try:
        return load_private_key(key_path.read_bytes())
    except OSError as exc:
        raise ConversionError(f"cannot read the signing key {key_path}: {exc.strerror or exc}") from exc


def _sign(root: Path, key: PrivateKey, digests: Mapping[str, str]) -> str:
    """Sign ``root``, reusing the sha256 of every file this run already hashed (only the proof is new)."""
    known = {rel: FileHashes(rel, (root / rel).stat().st_size, {"sha256": sha}) for rel, sha in digests.items()}

    def hasher(files: Sequence[ArtifactFile], algorithm: str, shard_size: int | None) -> dict[str, FileHashes]:
        return hash_files(files, HashRequest(frozenset({algorithm}), shard_size), known=known)

    signature = root / SIGNATURE_NAME
    write_chunks(signature, [sign_model(root, key, signature_path=signature, hasher=hasher)])
    return str(signature)
