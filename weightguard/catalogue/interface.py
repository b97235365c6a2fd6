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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from weightguard.errors import WeightguardError
from weightguard.integrity.hashing import FileHashes
from weightguard.policy.load import LoadedPolicy
from weightguard.report.model import Report, Verdict


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
        target: A local path or an ``hf://`` target, as :func:`weightguard.pipeline.verify` takes it.
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
    """

    key: str
    target: str
    hashes: tuple[FileHashes, ...]
    scans: tuple[tuple[str, str], ...]
    probes: bool = False
    convert_dir: str = ""

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
    """Runs work units and yields one result per unit, in completion order."""

    name: str

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


@dataclass(frozen=True, slots=True)
class ModelOutcome:
    """One model's result in a catalogue run.

    Attributes:
        entry: The model.
        verdict: ``approved``, ``rejected`` or ``incomplete``.
        report: The full report, as :func:`weightguard.pipeline.verify` gives it; None when the
            model could not be judged at all (then ``error`` says why and the verdict is incomplete).
        seconds: Analysis time spent on this model (its files' scans and its model unit).
        cached: True when the verdict came from the results cache without running anything.
        error: Why the model could not be judged.
    """

    entry: CatalogueEntry
    verdict: Verdict
    report: Report | None
    seconds: float
    cached: bool = False
    error: str = ""


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
