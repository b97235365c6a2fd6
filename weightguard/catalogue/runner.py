"""Verify a whole catalogue: hash once, reuse every cached result, run only what is missing.

The order: resolve each model and hash all its files once (sha256: the
content keys); look up each model's key in the results cache (a model whose
files, listing, trust material and day are unchanged is not judged again);
for the others, look up each distinct file content, run a file unit for each
one never analysed under this policy and version, then run a model unit per
model (integrity, probes, the policy's judgement, as
:func:`weightguard.pipeline.verify`). Every result is stored as soon as it
arrives, so re-running after an interruption skips what was done. A model
whose units keep failing is reported ``incomplete``, never ``approved``.
Not handled here: where units run (the engines) and rendering (:mod:`.report`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from weightguard.catalogue.cache import CachedResult, FileStamp, ResultsCache
from weightguard.catalogue.interface import (
    CatalogueEntry,
    CatalogueSummary,
    Engine,
    FileUnit,
    ModelOutcome,
    ModelUnit,
    UnitKind,
    UnitResult,
    WorkUnit,
)
from weightguard.catalogue.memo import recall, recalled, remember, stamped_files
from weightguard.errors import IntegrityError, WeightguardError
from weightguard.integrity.hashing import FileHashes, HashRequest, hash_files
from weightguard.integrity.hub import hub_request
from weightguard.integrity.pins import hash_request
from weightguard.pipeline import resolve_target
from weightguard.policy.load import LoadedPolicy
from weightguard.report.model import Report
from weightguard.sources.interface import ArtifactFile

# (phase, done, total): phases are "hashing", "analysing" and "judging".
Progress = Callable[[str, int, int], None]

# Models resolved and hashed together: one hashing pass keeps every core busy, and a bounded
# group keeps the number of open file mappings bounded on catalogues of thousands of models.
CHUNK_MODELS = 64
# Results are written in small transactions: an interruption loses at most this many.
FLUSH_EVERY = 16
SMALL_CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True, slots=True)
class _File:
    relpath: str
    sha256: str
    size: int
    path: str
    hashes: FileHashes


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A model after the hashing phase: its files' content keys, or why it has none."""

    entry: CatalogueEntry
    files: tuple[_File, ...] = ()
    key: str = ""
    error: str = ""


def _trust_digests(loaded: LoadedPolicy) -> dict[str, str]:
    """Digests of the trust material the policy names by path (it is not part of the policy's digest)."""
    base = Path(loaded.origin).parent if not loaded.origin.startswith("builtin:") else Path.cwd()
    out: dict[str, str] = {}
    for signer in loaded.policy.spec.signatures.trusted_signers:
        for name in ("public_key", "root", "trusted_root"):
            rel = getattr(signer, name, None)
            if isinstance(rel, Path):
                try:
                    out[str(rel)] = hashlib.sha256((base / rel).read_bytes()).hexdigest()
                except OSError:
                    out[str(rel)] = "unreadable"
    return out


def _model_key(target: str, resolved_uri: str, files: Sequence[_File], source: Sequence[str], extra: str) -> str:
    """Everything a model's verdict depends on besides the policy and the version (cache columns)."""
    identity = {
        "target": target,
        "uri": resolved_uri,
        "files": [[f.relpath, f.size, f.sha256] for f in files],
        "source": list(source),
        # Policy ignores expire by date: a verdict is reused on the day it was made only.
        "day": dt.datetime.now(dt.UTC).date().isoformat(),
        "extra": extra,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _converts(loaded: LoadedPolicy, convert_root: Path | None) -> bool:
    """Whether verify would convert under this policy (and these options)."""
    mode = loaded.policy.spec.conversion.mode
    return mode == "required" or (mode == "allowed" and convert_root is not None)


def _model_cacheable(target: str, loaded: LoadedPolicy, converts: bool) -> bool:
    # A Hub listing, a probe base model and the converted copy on disk are inputs the key does
    # not capture: judge those models again (their files' scans are still reused).
    probes = loaded.policy.spec.probes
    return not target.startswith("hf://") and not (probes.run != "off" and probes.base_model) and not converts


def convert_dir_for(target: str, convert_root: Path | None) -> Path:
    """Where a model of the catalogue is converted: one folder per target, named after it."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", PurePosixPath(target.rstrip("/")).name) or "model"
    tag = hashlib.sha256(target.encode()).hexdigest()[:12]
    return (convert_root or Path.cwd()) / f"{name}-{tag}.safetensors"


def _hash_request(loaded: LoadedPolicy, entries: Sequence[CatalogueEntry]) -> HashRequest:
    """Everything the model units' integrity stage will want, so that it reads no file again."""
    request = HashRequest().union(hash_request(loaded.policy.spec.integrity))
    if any(e.target.startswith("hf://") for e in entries):
        request = hub_request(request)
    return request


@dataclass(frozen=True, slots=True)
class _Settings:
    """What every chunk of the hashing phase needs besides its entries."""

    loaded: LoadedPolicy
    trust: str
    converts: bool
    cache: ResultsCache
    trust_metadata: bool  # --trust-file-metadata: the cache also remembers files' stamps


def _recalled_models(
    entries: Sequence[CatalogueEntry], settings: _Settings, request: HashRequest
) -> tuple[dict[int, _Prepared], dict[str, CachedResult]]:
    """Models whose files all kept their stamps and whose verdict is cached: known without opening a file.

    Only plain folders of regular files qualify (anything else needs the full listing, which
    also reports it), and the key is computed exactly as for a listed model, so a hit here is
    the hit the full path would find. Returns those models and their cached results.
    """
    if not settings.trust_metadata or not _model_cacheable("", settings.loaded, settings.converts):
        return {}, {}
    listed: dict[int, tuple[str, list[tuple[str, str, FileStamp]]]] = {}
    for i, entry in enumerate(entries):
        if entry.target.startswith("hf://"):
            continue
        uri = str(Path(entry.target))
        found = stamped_files(uri)
        if found is not None:
            listed[i] = (uri, found)
    recorded = settings.cache.get_digests(path for _, found in listed.values() for _, path, _ in found)
    candidates: dict[str, tuple[int, tuple[_File, ...]]] = {}
    for i, (uri, found) in listed.items():
        files: list[_File] = []
        for rel, path, now in found:
            held = recalled(rel, now, recorded.get(path), request)
            if held is None:
                break
            files.append(_File(rel, held.digests["sha256"], now.size, path, held))
        else:
            key = _model_key(entries[i].target, uri, files, [], settings.trust)
            candidates[key] = (i, tuple(files))
    hits = settings.cache.get_many(UnitKind.MODEL, candidates) if candidates else {}
    models = {i: _Prepared(entries[i], files, key) for key, (i, files) in candidates.items() if key in hits}
    return models, hits


@dataclass(frozen=True, slots=True)
class _Chunk:
    """A chunk of models after the hashing phase."""

    models: list[_Prepared]
    read_files: int  # files whose bytes were read to hash them
    cached: dict[str, CachedResult]  # the cached model results among the chunk's keys


def _prepare_chunk(entries: Sequence[CatalogueEntry], settings: _Settings) -> _Chunk:
    """Resolve and hash a chunk of models, and look up their cached results."""
    loaded, trust, converts = settings.loaded, settings.trust, settings.converts
    resolved: list[tuple[int, Path, list[ArtifactFile], list[str], str]] = []
    request = _hash_request(loaded, entries)
    out, cached = _recalled_models(entries, settings, request)
    for i, entry in enumerate(entries):
        if i in out:
            continue
        try:
            target = resolve_target(entry.target, loaded)
        except WeightguardError as exc:
            out[i] = _Prepared(entry, error=exc.diagnostics())
            continue
        source = [
            f"{f.code}|{f.path}|{f.member}|{f.message}" for f in (*target.listing.findings, *target.extra_findings)
        ]
        renamed = [ArtifactFile(f"{i}/{a.relpath}", a.size, a.source) for a in target.listing.files]
        resolved.append((i, target.root, renamed, source, target.uri))
    everything = [a for r in resolved for a in r[2]]
    # Threads pay off on big files only; for a chunk of small ones, starting them costs more than hashing.
    workers = None if sum(a.size for a in everything) > SMALL_CHUNK_BYTES else 1
    known: dict[str, FileHashes] = {}
    stamps: dict[str, tuple[str, FileStamp]] = {}
    if settings.trust_metadata:
        places = [(a, f"{root}/{a.relpath.split('/', 1)[1]}") for _, root, renamed, _, _ in resolved for a in renamed]
        known, stamps = recall(places, settings.cache, request)
    try:
        hashes = hash_files(everything, request, workers=workers, known=known)
    except IntegrityError:
        hashes = {}  # one model's file changed while hashed: hash model by model to find which
    if settings.trust_metadata and hashes:
        remember(settings.cache, hashes, stamps)
    for i, root, renamed, source, uri in resolved:
        entry = entries[i]
        try:
            mine = (
                {a.relpath: hashes[a.relpath] for a in renamed} if hashes else hash_files(renamed, request, known=known)
            )
        except IntegrityError as exc:
            out[i] = _Prepared(entry, error=exc.diagnostics())
            continue
        files = tuple(
            _File(rel, h.digests["sha256"], a.size, f"{root}/{rel}", FileHashes(rel, h.size, h.digests, h.shards))
            for a in renamed
            for rel, h in [(a.relpath.split("/", 1)[1], mine[a.relpath])]
        )
        key = _model_key(entry.target, uri, files, source, trust)
        out[i] = _Prepared(entry, files, key if _model_cacheable(entry.target, loaded, converts) else "", "")
    cached.update(
        settings.cache.get_many(UnitKind.MODEL, [p.key for p in out.values() if p.key and p.key not in cached])
    )
    return _Chunk([out[i] for i in range(len(entries))], len(everything) - len(known), cached)


def _seconds(report: Report) -> float:
    return round(sum(s.seconds for s in report.stages), 4)


class _Writer:
    """Buffers results for the cache and flushes them in small transactions."""

    def __init__(self, cache: ResultsCache, kind: UnitKind) -> None:
        self.cache, self.kind, self.rows = cache, kind, list[CachedResult]()

    def add(self, row: CachedResult) -> None:
        self.rows.append(row)
        if len(self.rows) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        self.cache.put_many(self.kind, self.rows)
        self.rows = []


def _drain(
    engine: Engine, units: Sequence[WorkUnit], loaded: LoadedPolicy, phase: str, progress: Progress
) -> Iterator[UnitResult]:
    progress(phase, 0, len(units))
    if not units:
        return
    for done, result in enumerate(engine.run(units, loaded), 1):
        progress(phase, done, len(units))
        yield result


def run_catalogue(
    entries: Sequence[CatalogueEntry],
    loaded: LoadedPolicy,
    engine: Engine,
    cache: ResultsCache,
    *,
    progress: Progress | None = None,
    convert_root: Path | None = None,
    trust_file_metadata: bool = False,
) -> CatalogueSummary:
    """Verify every model of the catalogue and return one outcome per entry.

    ``convert_root``: where models are converted when the policy converts (as ``verify
    --convert-dir``, one folder per model inside it; default: the working directory).
    ``trust_file_metadata``: reuse the digests of a file whose device, inode, size, mtime and
    ctime are those it had when this cache last hashed it, instead of reading it again.

    Raises:
        WeightguardError: the cache or the engine cannot be used (no verdict at all).
    """
    started = time.monotonic()
    say = progress or (lambda _phase, _done, _total: None)
    settings = _Settings(
        loaded,
        json.dumps(_trust_digests(loaded), sort_keys=True),
        _converts(loaded, convert_root),
        cache,
        trust_file_metadata,
    )
    read_files = 0
    prepared: list[_Prepared] = []
    known: dict[str, CachedResult] = {}
    say("hashing", 0, len(entries))
    started_engine = False
    for start in range(0, len(entries), CHUNK_MODELS):
        chunk = _prepare_chunk(entries[start : start + CHUNK_MODELS], settings)
        read_files += chunk.read_files
        prepared.extend(chunk.models)
        known.update(chunk.cached)
        say("hashing", len(prepared), len(entries))
        if not started_engine and any(not p.error and p.key not in chunk.cached for p in chunk.models):
            engine.start(loaded)  # there is work: let workers start while the rest is hashed
            started_engine = True

    outcomes: dict[int, ModelOutcome] = {}
    for i, p in enumerate(prepared):
        if p.error:
            outcomes[i] = ModelOutcome(p.entry, "incomplete", None, 0.0, error=p.error)
    for i, p in enumerate(prepared):
        if i not in outcomes and p.key in known:
            report = Report.model_validate_json(known[p.key].payload)
            outcomes[i] = ModelOutcome(p.entry, report.verdict, report, _seconds(report), cached=True)
    todo = [i for i in range(len(prepared)) if i not in outcomes]
    reused = len(entries) - len(todo) - sum(1 for p in prepared if p.error)

    # File units: one per distinct content not analysed yet under this policy and version.
    wanted = {f.sha256: f for i in todo for f in prepared[i].files}
    scans = {k: v.payload for k, v in cache.get_many(UnitKind.SCAN, wanted).items()}
    reused += len(scans)
    units: list[WorkUnit] = [FileUnit(f.sha256, f.size, f.path) for sha, f in wanted.items() if sha not in scans]
    executed = len(units)
    failed: dict[str, str] = {}
    writer = _Writer(cache, UnitKind.SCAN)
    try:
        for result in _drain(engine, units, loaded, "analysing", say):
            if result.payload is None:
                failed[result.key] = result.error
                continue
            scans[result.key] = result.payload
            writer.add(CachedResult(result.key, wanted[result.key].size, result.payload))
    finally:
        writer.flush()

    # Model units: every model whose files all have a scan.
    models: dict[str, tuple[int, ModelUnit]] = {}
    probes = loaded.policy.spec.probes.run != "off"
    for i in todo:
        p = prepared[i]
        lost = [f"{f.relpath}: {failed[f.sha256]}" for f in p.files if f.sha256 in failed]
        if lost:
            error = "analysis could not finish: " + "; ".join(lost)
            outcomes[i] = ModelOutcome(p.entry, "incomplete", None, 0.0, error=error)
            continue
        digests = {f.sha256 for f in p.files}
        unit_key = p.key or hashlib.sha256(f"{i}\x00{p.entry.target}".encode()).hexdigest()
        unit = ModelUnit(
            unit_key,
            p.entry.target,
            tuple(f.hashes for f in p.files),
            tuple((sha, scans[sha]) for sha in sorted(digests)),
            probes,
            str(convert_dir_for(p.entry.target, convert_root)) if settings.converts else "",
        )
        models[unit_key] = (i, unit)
    executed += len(models)
    writer = _Writer(cache, UnitKind.MODEL)
    try:
        for result in _drain(engine, [u for _, u in models.values()], loaded, "judging", say):
            i, unit = models[result.key]
            p = prepared[i]
            if result.payload is None:
                outcomes[i] = ModelOutcome(p.entry, "incomplete", None, result.seconds, error=result.error)
                continue
            report = Report.model_validate_json(result.payload)
            outcomes[i] = ModelOutcome(p.entry, report.verdict, report, _seconds(report))
            if p.key:
                writer.add(CachedResult(p.key, sum(f.size for f in p.files), result.payload))
    finally:
        writer.flush()

    return CatalogueSummary(
        models=tuple(outcomes[i] for i in range(len(prepared))),
        engine=engine.name,
        executed=executed,
        reused=reused,
        files=sum(len(p.files) for p in prepared),
        unique_files=len({f.sha256 for p in prepared for f in p.files}),
        seconds=round(time.monotonic() - started, 4),
        generated_at=dt.datetime.now(dt.UTC),
        read_files=read_files,
    )
