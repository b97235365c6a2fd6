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

Pulled models are bounded on disk by running the catalogue in waves (:func:`waves`): a
wave holds at most ``max_pulled`` ``oci://`` lines and goes through hashing (which pulls),
file units, model units and the removal of its pulls before the next wave pulls. A
catalogue pulling no more than that (one without ``oci://`` lines in particular) is one
wave, exactly the single pass it always was. The engine is started once, results and
progress are added up over the waves (a file content analysed, or found in the cache, by
one wave is neither run nor counted again by the next: scans are kept for the whole run,
as one pass kept them), and one summary covers the run. The bound counts models, not
bytes: it is known before any request, needs no manifest fetched ahead of its pull, and a
count times the largest model is how an operator sizes the disk anyway. A byte budget from
the manifests' layer sizes would pack small models tighter, at the cost of fetching every
manifest before planning (and a model larger than the budget would still need a wave).
The price of waves: the analysing and judging bars restart per wave, and workers idle
while a wave pulls.
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
from dataclasses import dataclass, field
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

# oci:// models on disk at once unless told otherwise (verify-many --max-pulled): a run needs
# free disk for this many of its largest models. Small, as a wave's pulls wait for the last
# wave's units anyway: a larger wave mainly keeps more workers busy judging pulled models.
MAX_PULLED = 4


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
    max_pulled: int = MAX_PULLED,
) -> CatalogueSummary:
    """Verify every model of the catalogue and return one outcome per entry.

    ``convert_root``: where models are converted when the policy converts (as ``verify
    --convert-dir``, one folder per model inside it; default: the working directory).
    ``trust_file_metadata``: reuse the digests of a file whose device, inode, size, mtime and
    ctime are those it had when this cache last hashed it, instead of reading it again.
    ``registry``: how ``oci://`` targets are pulled (its ``registry_*`` and ``insecure_registries``
    fields, as ``verify`` takes them).
    ``max_pulled``: at most this many ``oci://`` models are pulled at once (see :func:`waves`).

    Raises:
        WeightguardError: the cache or the engine cannot be used, or ``max_pulled`` is below 1
            (no verdict at all).
    """
    if max_pulled < 1:
        raise CatalogueError(f"at least one pulled model must fit on disk at a time (max_pulled={max_pulled})")
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
        return _run(entries, loaded, engine, settings, progress, convert_root, max_pulled)


def _discard(model: PreparedModel) -> None:
    """Remove an ``oci://`` model's pull: its model's work has ended."""
    if model.scratch:
        shutil.rmtree(model.scratch, ignore_errors=True)


def waves(entries: Sequence[CatalogueEntry], max_pulled: int | None) -> list[list[int]]:
    """The catalogue's indices wave by wave: one wave, unless it pulls more than ``max_pulled`` models.

    The first wave holds every line that pulls nothing (so their shared files are analysed
    once, as in one pass) and the first ``max_pulled`` ``oci://`` lines; each following wave
    holds the next ``max_pulled`` ``oci://`` lines. ``None``: nothing is pulled, one wave.
    """
    pulled = [i for i, e in enumerate(entries) if e.target.startswith("oci://")] if max_pulled else []
    if not max_pulled or len(pulled) <= max_pulled:
        return [list(range(len(entries)))]
    later = set(pulled[max_pulled:])
    first = [i for i in range(len(entries)) if i not in later]
    return [first, *(pulled[k : k + max_pulled] for k in range(max_pulled, len(pulled), max_pulled))]


@dataclass(slots=True)
class _Tally:
    """What a run has gathered so far, over its waves (indices are the catalogue's)."""

    prepared: dict[int, PreparedModel] = field(default_factory=dict)
    outcomes: dict[int, ModelOutcome] = field(default_factory=dict)
    scans: dict[str, str] = field(default_factory=dict)  # file payloads by sha256, this run's and the cache's
    failed: dict[str, str] = field(default_factory=dict)  # file units that failed, by sha256: why
    executed: int = 0
    reused: int = 0
    read_files: int = 0
    engine_started: bool = False


def _run(
    entries: Sequence[CatalogueEntry],
    loaded: LoadedPolicy,
    engine: Engine,
    settings: Settings,
    progress: Progress | None,
    convert_root: Path | None,
    max_pulled: int,
) -> CatalogueSummary:
    started = time.monotonic()
    say = progress or (lambda _phase, _done, _total: None)
    tally = _Tally()
    say("hashing", 0, len(entries))
    for wave in waves(entries, max_pulled if settings.pulls is not None else None):
        try:
            _wave(wave, entries, loaded, engine, settings, say, convert_root, tally)
        finally:
            # Whatever became of its units, the wave's pulls go before the next wave pulls.
            for i in wave:
                if i in tally.prepared:
                    _discard(tally.prepared[i])
    prepared = [tally.prepared[i] for i in range(len(entries))]
    return CatalogueSummary(
        models=tuple(tally.outcomes[i] for i in range(len(prepared))),
        engine=engine.name,
        executed=tally.executed,
        reused=tally.reused,
        files=sum(len(p.files) for p in prepared),
        unique_files=len({f.sha256 for p in prepared for f in p.files}),
        seconds=round(time.monotonic() - started, 4),
        generated_at=dt.datetime.now(dt.UTC),
        read_files=tally.read_files,
    )


def _wave(
    wave: list[int],
    entries: Sequence[CatalogueEntry],
    loaded: LoadedPolicy,
    engine: Engine,
    settings: Settings,
    say: Progress,
    convert_root: Path | None,
    tally: _Tally,
) -> None:
    """Hash, analyse and judge the models of one wave, adding to ``tally``."""
    cache, prepared, outcomes = settings.cache, tally.prepared, tally.outcomes
    order = iter(wave)
    work = False
    for chunk in prepare([entries[i] for i in wave], settings):
        tally.read_files += chunk.read_files
        for p in chunk.models:
            i = next(order)
            prepared[i] = p
            if p.error:
                outcomes[i] = ModelOutcome.failed(p.entry, p.error)
            elif p.key in chunk.cached:
                # A damaged row is judged again (and replaced), never trusted.
                with contextlib.suppress(ValidationError, CatalogueError):
                    row = chunk.cached[p.key]
                    outcomes[i] = ModelOutcome.judged(p.entry, row.payload, cached=True, summary=row.summary)
            if i in outcomes:
                _discard(p)  # nothing more to run on this model
            else:
                work = True
        say("hashing", len(prepared), len(entries))
        if work and not tally.engine_started:
            engine.start(loaded)  # there is work: let workers start while the rest is hashed
            tally.engine_started = True
    todo = [i for i in wave if i not in outcomes]
    tally.reused += len(wave) - len(todo) - sum(1 for i in wave if prepared[i].error)

    # File units: one per distinct content not analysed yet under this policy and version (nor
    # by an earlier wave: a content is analysed, or found in the cache, once per run).
    wanted = {f.sha256: f for i in todo for f in prepared[i].files}
    new = [sha for sha in wanted if sha not in tally.scans and sha not in tally.failed]
    cached = {k: v.payload for k, v in cache.get_many(UnitKind.SCAN, new).items()}
    tally.reused += len(cached)
    tally.scans.update(cached)
    units: list[WorkUnit] = [FileUnit(sha, wanted[sha].size, wanted[sha].path) for sha in new if sha not in cached]
    tally.executed += len(units)
    writer = _Writer(cache, UnitKind.SCAN)
    try:
        for result in _drain(engine, units, loaded, "analysing", say):
            if result.payload is None:
                tally.failed[result.key] = result.error
                continue
            tally.scans[result.key] = result.payload
            writer.add(CachedResult(result.key, wanted[result.key].size, result.payload))
    finally:
        writer.flush()
    _judge(todo, loaded, engine, settings, say, convert_root, tally)


def _judge(
    todo: list[int],
    loaded: LoadedPolicy,
    engine: Engine,
    settings: Settings,
    say: Progress,
    convert_root: Path | None,
    tally: _Tally,
) -> None:
    """Model units: every model of ``todo`` whose files all have a scan."""
    prepared, outcomes, scans, failed = tally.prepared, tally.outcomes, tally.scans, tally.failed
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
    tally.executed += len(models)
    writer = _Writer(settings.cache, UnitKind.MODEL)
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
