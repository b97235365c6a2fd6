"""Convert an approved model to safetensors, and prove the conversion lossless (needs torch).

Shard by shard: each weight file is read once into a private, sealed copy
(``loader.py``), that copy is judged by the :class:`Approver` (the scanner
under the policy) and, only if approved, loaded from the same copy with the
restricted loaders; its tensors are written with the streaming writer, the
output is reloaded with the ``safetensors`` library and every source name is
compared bit for bit (``proof.py``); then the shard is released before the
next one, so about one shard is in memory at a time.

Each file is converted or refused on its own, and every refusal is recorded
with its reason and a hint (``ConversionProof.refused``); a refused file
leaves nothing behind. All or nothing (the default, what ``verify`` needs),
the first refusal ends the work and nothing is published; with ``partial``
(``weightguard convert``) the files that converted are published and the
proof written beside them names what is missing. Training checkpoints give
up only their weights entry (``layouts.py``); the training state is listed.

Outputs go to a staging folder and are published only after every kept file
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
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from weightguard.analysis.scanner import Scanner
from weightguard.convert import codes
from weightguard.convert.interface import ConversionPlan, ConversionProof, ConvertedFile, PlannedFile, RefusedFile
from weightguard.convert.layouts import WeightsNotFoundError
from weightguard.convert.loader import Approver, ScanApprover, load_npz, load_torch, private_copy, sha256_fd
from weightguard.convert.planner import plan, rename_index
from weightguard.convert.proof import prove
from weightguard.convert.publish import make_staging, publish_files, publish_folder
from weightguard.convert.tensors import extract
from weightguard.convert.writer import copy_file, write_chunks, write_safetensors
from weightguard.errors import ConversionError
from weightguard.findings import Finding, Rule
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
_Outcome = tuple[ConvertedFile | RefusedFile, list[Finding]]  # one weight file: converted, or refused and why


@dataclass(frozen=True, slots=True)
class ConversionResult:
    """The proof, and findings about what the conversion did or refused."""

    proof: ConversionProof
    findings: tuple[Finding, ...]
    converted: bool  # every file converted and published
    written: bool = False  # something was published (with ``partial``, maybe not every file)


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


def _refused(rule: Rule, relpath: str, message: str, hint: str = "", finding: Finding | None = None) -> _Outcome:
    """A refusal of one file: its record for the proof and its finding (``rule`` at ``relpath`` unless given)."""
    record = RefusedFile(path=relpath, code=rule.code, reason=message, hint=hint or rule.help)
    return record, [finding or rule.at(relpath, message)]


def _scan_refused(relpath: str, blocking: tuple[Finding, ...], what: str) -> _Outcome:
    findings = _refusal(relpath, blocking, what)
    return RefusedFile(
        path=relpath, code=findings[0].code, reason=findings[0].message, hint=codes.SCAN_BLOCKED.help
    ), findings


def _convert_one(art: ArtifactFile, planned: PlannedFile, fmt: FileFormat, staging: Path, ctx: _Context) -> _Outcome:
    """Convert one weight file into ``staging``; a refused file leaves nothing there."""
    spec = ctx.loaded.policy.spec.conversion
    copy = private_copy(art.source, PurePosixPath(art.relpath).name, ctx.executor)
    try:
        blocking = ctx.approver.approve(copy.source(), art.relpath)
        if blocking:
            return _scan_refused(art.relpath, blocking, "not loaded, not converted")
        try:
            obj = load_npz(copy) if planned.kind == "npz" else load_torch(copy, fmt)
            ex = extract(obj, unwrap_state_dict=spec.unwrap_state_dict, keys=ctx.keys)
        except WeightsNotFoundError as exc:
            return _refused(codes.WEIGHTS_NOT_IDENTIFIED, art.relpath, exc.message, exc.hint or "")
        except ConversionError as exc:
            return _refused(codes.UNSUPPORTED_CONTENT, art.relpath, exc.message)
        del obj
        findings: list[Finding] = []
        if ex.dropped:
            listed = ", ".join(ex.dropped[:20])
            message = f"entries that are not tensors: {listed}"
            if not spec.allow_dropping_non_tensor:
                finding = codes.NON_TENSOR_DROPPED.at(art.relpath, message, entries=len(ex.dropped))
                return _refused(codes.NON_TENSOR_DROPPED, art.relpath, message, finding=finding)
            # A permissive switch in use is always said out loud (STYLE.md, principle 7).
            _LOG.warning("%s: allow_dropping_non_tensor: dropping %s", art.relpath, listed)
            findings.append(
                codes.NON_TENSOR_DROPPED.at(
                    art.relpath,
                    message + " (dropped: allow_dropping_non_tensor)",
                    severity=codes.ALIAS_REMOVED.severity,
                )
            )
        if ex.unwrapped is not None:
            left = ", ".join(ex.left_out[:20]) + (f" (+{len(ex.left_out) - 20} more)" if len(ex.left_out) > 20 else "")
            findings.append(
                codes.STATE_DICT_UNWRAPPED.at(
                    art.relpath,
                    f"tensors taken from the {ex.unwrapped!r} entry ({ex.layout}); left out, not converted: "
                    + (left or "nothing"),
                    entry=ex.unwrapped,
                    layout=ex.layout,
                )
            )
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
            # Nothing is written for a refused file: its staged output goes (its hash job closes its own fd).
            ctx.digests.pop(planned.output, None)
            out.unlink(missing_ok=True)
            return _refused(codes.PROOF_FAILED, art.relpath, exc.message)
        return ConvertedFile(
            source=art.relpath,
            source_sha256=copy.sha256,
            output=planned.output,
            tensors=len(ex.tensors),
            compared=compared,
            aliases=dict(ex.aliases),
            dropped=list(ex.dropped),
            unwrapped=ex.unwrapped,
            layout=ex.layout,
            left_out=list(ex.left_out),
        ), findings
    finally:
        copy.close()  # the tensors of this shard are unreferenced by now: its memory goes with it


@dataclass(frozen=True, slots=True)
class _Context:
    approver: Approver
    loaded: LoadedPolicy
    executor: Executor
    digests: dict[str, Future[str]]
    keys: tuple[str, ...] = ()
    partial: bool = False


@dataclass(slots=True)
class _Staged:
    converted: list[ConvertedFile] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    refused: list[RefusedFile] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    index: str | None = None

    def refuse(self, outcome: _Outcome) -> None:
        record, findings = outcome
        assert isinstance(record, RefusedFile)  # noqa: S101 - only refusals come here
        self.refused.append(record)
        self.findings.extend(findings)


def _unconvertible(relpaths: Sequence[str], formats: Mapping[str, FileFormat]) -> _Staged:
    staged = _Staged()
    for rel in relpaths:
        message = f"{formats[rel].value} file: not converted, not copied"
        finding = codes.UNCONVERTIBLE_FILE.at(rel, message, format=formats[rel].value)
        staged.refuse(_refused(codes.UNCONVERTIBLE_FILE, rel, message, finding=finding))
    return staged


def _stage(
    files: Sequence[ArtifactFile],
    formats: dict[str, FileFormat],
    conversion: ConversionPlan,
    staging: Path,
    ctx: _Context,
) -> _Staged:
    """Write the converted weights, the copies and the index into ``staging``, file by file.

    A refused file leaves nothing in ``staging``. All or nothing (``ctx.partial`` off), the
    first refusal ends the work: nothing will be published anyway.
    """
    by_path = {f.relpath: f for f in files}
    staged = _unconvertible(conversion.unconvertible, formats)
    sink = current()
    counter = Counter(sink, "converting", sum(by_path[w.source].size for w in conversion.weights)) if sink else None
    for planned in conversion.weights:
        if staged.refused and not ctx.partial:
            return staged
        result, notes = _convert_one(by_path[planned.source], planned, formats[planned.source], staging, ctx)
        if isinstance(result, RefusedFile):
            staged.refuse((result, notes))
        else:
            staged.converted.append(result)
            staged.findings.extend(notes)
        if counter is not None:  # source bytes converted (or refused), shard by shard
            counter.add(by_path[planned.source].size, planned.source)
    for rel in conversion.copies:
        if staged.refused and not ctx.partial:
            return staged
        copy_file(by_path[rel].source, staging / rel)
        # The copy, not the original, is judged: what is published is exactly what was scanned.
        # A file whose first format looked harmless (an object-dtype .npy, a gzipped pickle, a
        # polyglot) must not ride into the "safe" output unscanned.
        blocking = ctx.approver.approve(open_source(staging / rel), rel)
        if blocking:
            (staging / rel).unlink()
            staged.refuse(_scan_refused(rel, blocking, "not copied into the output"))
        else:
            staged.copied.append(rel)
    if conversion.index is not None:
        source_index, index_name = conversion.index
        missing = sorted({w.source for w in conversion.weights} - {c.source for c in staged.converted})
        if missing:
            # An index naming shards that are not there would send loaders after missing files.
            staged.refuse(
                _refused(
                    codes.UNSUPPORTED_CONTENT,
                    source_index,
                    f"not written: its shards were not all converted ({', '.join(missing[:5])})",
                    "convert the refused shards first, or load the converted shards without the index",
                )
            )
        else:
            art = by_path[source_index]
            renames = {PurePosixPath(w.source).name: PurePosixPath(w.output).name for w in conversion.weights}
            (staging / index_name).write_bytes(rename_index(art.source.read_at(0, art.size), renames))
            staged.index = index_name
    return staged


def convert_model(
    files: Sequence[ArtifactFile],
    formats: dict[str, FileFormat],
    out_dir: Path,
    loaded: LoadedPolicy,
    scanner: Scanner,
    *,
    sign_key: Path | None = None,
    approver: Approver | None = None,
    weight_keys: Sequence[str] = (),
    partial: bool = False,
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
        weight_keys: entries holding the weights in training checkpoints, tried before the policy's
            ``weight_keys`` (``convert --key``).
        partial: publish the files that converted even when others were refused (each refusal is
            in the proof, nothing is written for it). Off, the output is all or nothing, as ``verify``
            needs it; a signed output is always all or nothing, a signature vouches for a whole model.

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
    partial = partial and key is None
    judge = approver or ScanApprover(scanner, loaded)
    conversion = plan(formats)
    if conversion.unconvertible and not partial:
        staged = _unconvertible(conversion.unconvertible, formats)
        proof = ConversionProof(output_dir=str(out_dir), refused=staged.refused)
        return ConversionResult(proof, tuple(staged.findings), False)
    produced = [*(w.output for w in conversion.weights), *conversion.copies]
    if conversion.index is not None:
        produced.append(conversion.index[1])
    # Two background threads flush and hash each private copy and each output beside the work.
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="weightguard-convert-hash")
    keys = (*weight_keys, *loaded.policy.spec.conversion.weight_keys)
    ctx = _Context(judge, loaded, executor, {}, keys, partial)
    signature: str | None = None
    holder: Path | None = None
    written = False
    try:
        # Inside the try: a SIGTERM right after the folder exists still reaches the rmtree below.
        holder, staging, fresh = make_staging(out_dir, [*produced, PROOF_NAME, *([SIGNATURE_NAME] if sign_key else [])])
        staged = _stage(files, formats, conversion, staging, ctx)
        # Published: everything, or with ``partial`` whatever converted (a folder of copies alone is no model).
        written = not staged.refused or (partial and bool(staged.converted))
        for item in sorted(p for p in staging.rglob("*") if p.is_file()):
            rel = item.relative_to(staging).as_posix()
            if written and rel not in ctx.digests:
                ctx.digests[rel] = executor.submit(_sync_and_hash, os.open(item, os.O_RDONLY))
        digests = {rel: future.result() for rel, future in ctx.digests.items()}  # every file is on disk now
        proof = ConversionProof(
            output_dir=str(out_dir),
            files=staged.converted if written else [],
            copied=staged.copied if written else [],
            refused=staged.refused,
            index=staged.index if written else None,
        )
        if written:
            proof = proof.model_copy(
                update={
                    "files": [c.model_copy(update={"output_sha256": digests[c.output]}) for c in staged.converted],
                    "manifest": dict(sorted(digests.items())),
                    "manifest_root_digest": Manifest.from_digests(
                        {k: {"sha256": v} for k, v in digests.items()}
                    ).root_digest(),
                }
            )
            _write_proof(staging / PROOF_NAME, proof)  # a partial output says in its proof what is missing
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
    if signature is not None:
        proof = proof.model_copy(update={"signature": str(out_dir / SIGNATURE_NAME)})
    return ConversionResult(proof, tuple(staged.findings), written and not staged.refused, written)


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
