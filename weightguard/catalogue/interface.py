"""The catalogue stage's interface: work units, their results, and the engine protocol.

``weightguard verify-many`` splits a catalogue of models into work units keyed
by content. A :class:`FileUnit` scans one distinct file (by sha256), wherever
it appears in the catalogue; a :class:`ModelUnit` assembles one model's
verdict from the scans of its files (integrity, probes when the policy asks,
the policy's judgement). An :class:`Engine` runs units somewhere (a local
process pool, a Ray cluster) and yields a :class:`UnitResult` per unit.
Not handled here: running units (the engines), caching them (:mod:`.cache`)
or ordering them (:mod:`.runner`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from weightguard.errors import WeightguardError
from weightguard.integrity.hashing import FileHashes
from weightguard.policy.load import LoadedPolicy
from weightguard.report.model import FindingModel, Report, Verdict


class CatalogueError(WeightguardError):
    """The catalogue run itself cannot proceed (an engine cannot start, a cluster is unreachable)."""


class UnitKind(str, Enum):
    """What a work unit does; also the ``kind`` column of its cached result."""

    SCAN = "scan"
    MODEL = "model"


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """One model of a catalogue, as the catalogue names it.

    Attributes:
        target: A local path or an ``hf://`` or ``oci://`` target, as :func:`weightguard.pipeline.verify` takes it.
        origin: Where it was listed (``catalog.txt:12`` or the directory), for messages.
    """

    target: str
    origin: str


@dataclass(frozen=True, slots=True)
class FileUnit:
    """Scan one distinct file content (and check that its bytes still hash to ``sha256``).

    Attributes:
        sha256: The content digest: the unit's key.
        size: Bytes.
        path: One place on disk (or in a shared file system) where the content can be read.
    """

    sha256: str
    size: int
    path: str

    @property
    def key(self) -> str:
        """The cache key of the unit's result."""
        return self.sha256

    @property
    def kind(self) -> UnitKind:
        """Always :attr:`UnitKind.SCAN`."""
        return UnitKind.SCAN

    @property
    def gpus(self) -> int:
        """File units never need a GPU."""
        return 0


@dataclass(frozen=True, slots=True)
class ModelUnit:
    """Judge one model from its files' scans (and run its probes when the policy asks).

    Attributes:
        key: Digest of everything the verdict depends on besides the policy and version.
        target: The model, as :func:`weightguard.pipeline.verify` takes it.
        hashes: The digests of every file, computed when the run started (their sha256 keys
            the files' scans; the integrity stage reads no file again).
        scans: ``(sha256, encoded scan)`` for each distinct content of the model.
        probes: True when the policy runs the probe suite (the unit then wants a GPU).
        convert_dir: Where the policy's conversion writes this model; empty when it does not convert.
        pulled: For an ``oci://`` target, the folder the runner pulled it into (judged there,
            not pulled again; the runner removes it once this unit has ended); empty otherwise.
        pinned: The ``oci://`` URI of that pull, pinned to the manifest digest it unpacked.
    """

    key: str
    target: str
    hashes: tuple[FileHashes, ...]
    scans: tuple[tuple[str, str], ...]
    probes: bool = False
    convert_dir: str = ""
    pulled: str = ""
    pinned: str = ""

    @property
    def kind(self) -> UnitKind:
        """Always :attr:`UnitKind.MODEL`."""
        return UnitKind.MODEL

    @property
    def gpus(self) -> int:
        """One GPU for a unit that runs probes, none otherwise."""
        return 1 if self.probes else 0


WorkUnit = FileUnit | ModelUnit


@dataclass(frozen=True, slots=True)
class UnitResult:
    """What running a unit gave: an encoded result, or why there is none.

    Attributes:
        key: The unit's key.
        kind: The unit's kind.
        payload: The encoded result (JSON text); None when the unit failed.
        error: Why the unit failed (after every retry); empty on success.
        seconds: Wall time of the successful attempt.
        attempts: How many times the unit was started.
    """

    key: str
    kind: UnitKind
    payload: str | None
    error: str = ""
    seconds: float = 0.0
    attempts: int = 1

    @property
    def ok(self) -> bool:
        """True when the unit produced a result."""
        return self.payload is not None


# Runs one unit in a worker; engines take it as a parameter so that tests can wrap it.
Execute = Callable[[WorkUnit, LoadedPolicy], UnitResult]


class Engine(Protocol):
    """Runs work units and yields one result per unit, in completion order.

    ``shares_local_files``: whether every worker sees this machine's file system, temporary
    folders included (a local pool does; a cluster's nodes need not). verify-many pulls
    ``oci://`` targets into a temporary folder here, so an engine without it refuses them.
    """

    name: str
    shares_local_files: bool

    def start(self, loaded: LoadedPolicy) -> None:
        """Get workers ready for units under ``loaded`` (may do nothing); called only when work is coming."""
        ...

    def run(self, units: Sequence[WorkUnit], loaded: LoadedPolicy) -> Iterator[UnitResult]:
        """Run every unit; a unit that keeps failing yields a result with an ``error``.

        Raises:
            WeightguardError: the engine itself cannot run (no cluster, no extra installed).
        """
        ...

    def close(self) -> None:
        """Release workers and connections."""
        ...


class _Part(BaseModel):
    """A part of a report read on its own: keys it does not name are skipped, not checked."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class _Counts(_Part):
    files: int
    blocking: int


class _Subject(_Part):
    root_digest: str | None = None
    uri: str | None = None


class _Stage(_Part):
    seconds: float


class ReportDigest(_Part):
    """What the catalogue summary shows of one model's report, validated without the rest of it.

    Decoding every cached model's whole report was the largest single cost of a warm re-run
    (about 45 µs a model against 12 µs for this part); the whole report is decoded only for
    the renderings that show it (SARIF, HTML), and only for the models they show.
    """

    verdict: Verdict
    exit_code: int
    reasons: list[str]
    summary: _Counts
    findings: list[FindingModel]
    subject: _Subject | None = None
    stages: list[_Stage]

    @property
    def seconds(self) -> float:
        """Analysis time of the model: the sum of its stages."""
        return round(sum(s.seconds for s in self.stages), 4)


class StoredDigest(_Part):
    """A :class:`ReportDigest` as the results cache keeps it, beside the report it summarises.

    It names that report by sha256, so a report damaged or replaced after its digest was
    stored (by hand, or by an older weightguard sharing the database) is caught when read:
    hashing a 4 KB report costs about 3 µs, decoding it about 45.
    """

    digest: ReportDigest
    report_sha256: str

    @classmethod
    def of(cls, digest: ReportDigest, payload: str) -> StoredDigest:
        """``digest`` together with the sha256 of ``payload``, the report it was read from."""
        return cls(digest=digest, report_sha256=_sha256(payload))


def _sha256(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class ModelOutcome:
    """One model's result in a catalogue run.

    Attributes:
        entry: The model.
        verdict: ``approved``, ``rejected`` or ``incomplete``.
        seconds: Analysis time spent on this model (its files' scans and its model unit).
        cached: True when the verdict came from the results cache without running anything.
        error: Why the model could not be judged.
        payload: The model's full report as JSON text, as :func:`weightguard.pipeline.verify`
            gives it; None when the model could not be judged at all (then ``error`` says why
            and the verdict is incomplete). :attr:`report` decodes it.
        digest: The part of the report the catalogue summary shows.
    """

    entry: CatalogueEntry
    verdict: Verdict
    seconds: float
    cached: bool = False
    error: str = ""
    payload: str | None = field(default=None, repr=False)
    digest: ReportDigest | None = field(default=None, repr=False)

    @classmethod
    def judged(
        cls, entry: CatalogueEntry, payload: str, *, cached: bool = False, summary: str | None = None
    ) -> ModelOutcome:
        """The outcome of a model whose report is ``payload``.

        ``summary``: the report's :class:`StoredDigest` as JSON, stored beside a cached report;
        validated instead of ``payload`` (the report itself is validated when decoded), and
        checked to name ``payload``.

        Raises:
            pydantic.ValidationError: ``summary`` (or ``payload`` without one) is not valid.
            CatalogueError: ``summary`` names another report than ``payload``, or ``payload``
                is not text.
        """
        if not isinstance(payload, str):  # a stored row not written as text (SQLite keeps any type)
            raise CatalogueError(f"the stored report of {entry.target} is not text")
        if summary is None:
            digest = ReportDigest.model_validate_json(payload)
        else:
            stored = StoredDigest.model_validate_json(summary)
            if stored.report_sha256 != _sha256(payload):
                raise CatalogueError(f"the stored summary of {entry.target} does not name its stored report")
            digest = stored.digest
        return cls(entry, digest.verdict, digest.seconds, cached, "", payload, digest)

    @classmethod
    def failed(cls, entry: CatalogueEntry, error: str, seconds: float = 0.0) -> ModelOutcome:
        """The outcome of a model that could not be judged: incomplete, never approved."""
        return cls(entry, "incomplete", seconds, error=error)

    @cached_property
    def report(self) -> Report | None:
        """The full report, decoded on first use; None when the model could not be judged.

        Raises:
            CatalogueError: the stored report is not a valid report (a damaged results cache).
        """
        if self.payload is None:
            return None
        try:
            return Report.model_validate_json(self.payload)
        except ValidationError as exc:
            raise CatalogueError(
                f"the stored report of {self.entry.target} is damaged: {exc.error_count()} error(s)",
                hint="delete the results cache (or its unit_results rows) and run again",
            ) from exc


@dataclass(frozen=True, slots=True)
class CatalogueSummary:
    """Everything a catalogue run produced.

    Attributes:
        models: One outcome per catalogue entry, in catalogue order.
        engine: The engine's name.
        executed: Work units that ran in this run.
        reused: Work units whose result came from the cache.
        files: File occurrences over the catalogue.
        unique_files: Distinct file contents over the catalogue.
        seconds: Wall time of the run.
        generated_at: When the run finished.
        read_files: File occurrences whose bytes were read to hash them (the others' digests
            were reused under ``--trust-file-metadata``).
    """

    models: tuple[ModelOutcome, ...]
    engine: str
    executed: int
    reused: int
    files: int
    unique_files: int
    seconds: float
    generated_at: dt.datetime
    read_files: int = 0
