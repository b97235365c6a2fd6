"""Verify a whole catalogue: hash once, reuse every cached result, run only what is missing.

The order: list and hash every model once and look up its key in the
results cache (:mod:`.prepare`: a model whose files, listing, trust material
and day are unchanged is not judged again, and its report is decoded only
as far as the summary needs); for the others, look up each distinct file
content, run a file unit for each one never analysed under this policy and
version, then run a model unit per model (integrity, probes, the policy's
judgement, as :func:`weightguard.pipeline.verify`). Every result is stored
as soon as it arrives, so re-running after an interruption skips what was
done. A model whose units keep failing, or whose cached row is damaged and
cannot be judged again, is reported ``incomplete``, never ``approved``.
``oci://`` targets are pulled while the catalogue is hashed, each into its own
folder inside one temporary folder of the run; a model's pull is removed as
soon as its model's work has ended (judged, failed or found in the cache), and
whatever is left when the run ends, however it ends, with the run's folder. A
pull that fails is that model's error (``incomplete``); the others go on.
Not handled here: where units run (the engines) and rendering (:mod:`.report`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import hashlib
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from pydantic import ValidationError

from weightguard.catalogue.cache import CachedResult, ResultsCache
from weightguard.catalogue.interface import (
    CatalogueEntry,
    CatalogueError,
    CatalogueSummary,
    Engine,
    FileUnit,
    ModelOutcome,
    ModelUnit,
    StoredDigest,
    UnitKind,
    UnitResult,
    WorkUnit,
)
from weightguard.catalogue.prepare import PreparedModel, Settings, prepare
from weightguard.integrity.hashing import FileHashes
from weightguard.pipeline import VerifyOptions, converts
from weightguard.policy.load import LoadedPolicy

# (phase, done, total): phases are "hashing", "analysing" and "judging".
Progress = Callable[[str, int, int], None]

# Results are written in small transactions: an interruption loses at most this many.
FLUSH_EVERY = 16

# A run allocates tens of thousands of small records (digests, keys, outcomes) and makes no
# reference cycles of note; the cyclic collector's passes over them took about 2 ms of a 25 ms
# warm run of 200 models (benchmarks/catalogue.py). During a run it collects only after this
# many new container objects (Python's default is 700); reference counting still frees the rest.
# Workers forked during a run inherit the setting; their work allocates the same way.
GEN0_DURING_RUN = 100_000


class _Collections:
    """The collector's thresholds, raised while any run of this process is in progress."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs = 0
        self._before = gc.get_threshold()

    @contextlib.contextmanager
    def fewer(self) -> Iterator[None]:
        """Raise the first threshold until the last run in progress ends, then put it back."""
        with self._lock:
            if self._runs == 0:
                self._before = gc.get_threshold()
                if self._before[0]:  # 0: the application turned automatic collection off; leave it so
                    gc.set_threshold(max(self._before[0], GEN0_DURING_RUN), *self._before[1:])
            self._runs += 1
        try:
            yield
        finally:
            with self._lock:
                self._runs -= 1
                if self._runs == 0:
                    gc.set_threshold(*self._before)


_COLLECTIONS = _Collections()


def convert_dir_for(target: str, convert_root: Path | None) -> Path:
    """Where a model of the catalogue is converted: one folder per target, named after it."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", PurePosixPath(target.rstrip("/")).name) or "model"
    tag = hashlib.sha256(target.encode()).hexdigest()[:12]
    return (convert_root or Path.cwd()) / f"{name}-{tag}.safetensors"


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


@_COLLECTIONS.fewer()
def run_catalogue(
    entries: Sequence[CatalogueEntry],
    loaded: LoadedPolicy,
    engine: Engine,
    cache: ResultsCache,
    *,
    progress: Progress | None = None,
    convert_root: Path | None = None,
    trust_file_metadata: bool = False,
    registry: VerifyOptions | None = None,
) -> CatalogueSummary:
    """Verify every model of the catalogue and return one outcome per entry.

    ``convert_root``: where models are converted when the policy converts (as ``verify
    --convert-dir``, one folder per model inside it; default: the working directory).
    ``trust_file_metadata``: reuse the digests of a file whose device, inode, size, mtime and
    ctime are those it had when this cache last hashed it, instead of reading it again.
    ``registry``: how ``oci://`` targets are pulled (its ``registry_*`` and ``insecure_registries``
    fields, as ``verify`` takes them).

    Raises:
        WeightguardError: the cache or the engine cannot be used (no verdict at all).
    """
    with contextlib.ExitStack() as stack:
        pulls = None
        if engine.shares_local_files and any(e.target.startswith("oci://") for e in entries):
            pulls = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="weightguard-oci-")))
        refusal = (
            f"oci:// targets are pulled into a temporary folder on this machine, which the {engine.name} "
            "engine's workers need not see: verify them with --engine local"
        )
        settings = Settings(
            loaded,
            cache,
            converts(loaded, convert_root),
            trust_file_metadata,
            registry or VerifyOptions(),
            pulls,
            refusal,
        )
        return _run(entries, loaded, engine, settings, progress, convert_root)


def _discard(model: PreparedModel) -> None:
    """Remove an ``oci://`` model's pull: its model's work has ended."""
    if model.scratch:
        shutil.rmtree(model.scratch, ignore_errors=True)


def _run(
    entries: Sequence[CatalogueEntry],
    loaded: LoadedPolicy,
    engine: Engine,
    settings: Settings,
    progress: Progress | None,
    convert_root: Path | None,
) -> CatalogueSummary:
    started = time.monotonic()
    say = progress or (lambda _phase, _done, _total: None)
    cache = settings.cache
    read_files = 0
    prepared: list[PreparedModel] = []
    outcomes: dict[int, ModelOutcome] = {}
    started_engine = False
    say("hashing", 0, len(entries))
    for chunk in prepare(entries, settings):
        read_files += chunk.read_files
        for p in chunk.models:
            i = len(prepared)
            prepared.append(p)
            if p.error:
                outcomes[i] = ModelOutcome.failed(p.entry, p.error)
            elif p.key in chunk.cached:
                # A damaged row is judged again (and replaced), never trusted.
                with contextlib.suppress(ValidationError, CatalogueError):
                    row = chunk.cached[p.key]
                    outcomes[i] = ModelOutcome.judged(p.entry, row.payload, cached=True, summary=row.summary)
            if i in outcomes:
                _discard(p)  # nothing more to run on this model
        say("hashing", len(prepared), len(entries))
        if not started_engine and len(outcomes) < len(prepared):
            engine.start(loaded)  # there is work: let workers start while the rest is hashed
            started_engine = True
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
            outcomes[i] = ModelOutcome.failed(p.entry, error)
            _discard(p)
            continue
        digests = {f.sha256 for f in p.files}
        unit_key = p.key or hashlib.sha256(f"{i}\x00{p.entry.target}".encode()).hexdigest()
        unit = ModelUnit(
            unit_key,
            p.entry.target,
            tuple(FileHashes(f.relpath, f.hashes.size, f.hashes.digests, f.hashes.shards) for f in p.files),
            tuple((sha, scans[sha]) for sha in sorted(digests)),
            probes,
            str(convert_dir_for(p.entry.target, convert_root)) if settings.converts else "",
            p.pulled,
            p.pinned,
        )
        models[unit_key] = (i, unit)
    executed += len(models)
    writer = _Writer(cache, UnitKind.MODEL)
    try:
        for result in _drain(engine, [u for _, u in models.values()], loaded, "judging", say):
            i, unit = models[result.key]
            p = prepared[i]
            _discard(p)  # its model unit has ended
            if result.payload is None:
                outcomes[i] = ModelOutcome.failed(p.entry, result.error, result.seconds)
                continue
            try:
                outcome = outcomes[i] = ModelOutcome.judged(p.entry, result.payload)
            except ValidationError as exc:
                error = f"internal error: the model unit's report does not validate ({exc.error_count()} error(s))"
                outcomes[i] = ModelOutcome.failed(p.entry, error, result.seconds)
                continue
            if p.key and outcome.digest is not None:
                summary = StoredDigest.of(outcome.digest, result.payload).model_dump_json()
                writer.add(CachedResult(p.key, sum(f.size for f in p.files), result.payload, summary))
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
