"""The probes stage's interface: the Probe protocol, its records and its error.

A probe looks at what a loaded model *does* (or, for P4, at its weights) and
returns a :class:`ProbeResult`: the suspects it found, the coverage it actually
ran and the status it ended with. Probes never decide the verdict; the suite
(:mod:`weightguard.probes.suite`) does, fail closed. Not handled here: loading
(:mod:`weightguard.probes.loading`), device placement and batching
(:mod:`weightguard.probes.batching`), or rendering.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from weightguard.errors import ProbeError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from weightguard.policy.sections.probes import ProbesSpec

__all__ = [
    "Family",
    "ImagePrep",
    "LoadedModel",
    "PatchEvidence",
    "Probe",
    "ProbeContext",
    "ProbeError",
    "ProbeResult",
    "ProbeStatus",
    "Suspect",
    "SuspectLevel",
]


class Family(str, Enum):
    """The model families the suite can probe, in the order the brief ranks them."""

    SEQUENCE_CLASSIFICATION = "sequence-classification"
    CAUSAL_LM = "causal-lm"
    IMAGE_CLASSIFICATION = "image-classification"


class ProbeStatus(str, Enum):
    """How a probe ended. Only ``RAN`` counts as coverage; the others fail closed."""

    RAN = "ran"
    PARTIAL = "partial"  # the time budget ran out part-way: the result is a lower bound
    SKIPPED = "skipped"  # not applicable or not reached within the budget
    ERRORED = "errored"


SuspectLevel = Literal["block", "review", "info"]


@dataclass(frozen=True, slots=True)
class ImagePrep:
    """The image preprocessing read from ``preprocessor_config.json`` (no PIL needed).

    Probe images are generated as float tensors in [0, 1] at ``height`` x ``width``,
    so only rescaling is skipped; normalisation is the model's own.
    """

    height: int
    width: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    normalize: bool


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model loaded for probing, with its own preprocessing."""

    path: Path
    family: Family
    architecture: str
    model: PreTrainedModel
    labels: tuple[str, ...]
    tokenizer: PreTrainedTokenizerBase | None = None
    image: ImagePrep | None = None
    parameters: int = 0


@dataclass(frozen=True, slots=True)
class PatchEvidence:
    """What an image suspect's patch looks like and one probe image to show it on (CPU tensors in [0, 1]).

    The suite turns these into bounded report fields (rounded pixels, a small PNG);
    probes keep the raw tensors so that only suspects that reach the report are encoded.
    """

    height: int
    width: int
    values: torch.Tensor  # (C, size, size): the patch pixels exactly as stamped
    sample: torch.Tensor  # (C, height, width): a clean probe image, one the patch flips when there is one


@dataclass(frozen=True, slots=True)
class Suspect:
    """One suspected trigger, with the evidence behind it.

    ``kind`` is ``tokens`` (text trigger), ``patch`` (image patch) or
    ``target-text`` (an LM output found by target inversion). Image suspects carry
    ``patch`` as (top, left, size, pattern) and ``image`` with its pixels.
    ``controls`` are the random controls' flip rates the p-value was computed
    against (empty when the probe ran none); ``before`` and ``after`` are the
    output distributions on clean inputs and with the trigger (see
    :class:`weightguard.probes.report.SuspectModel` for their exact meaning per probe).
    """

    probe: str
    kind: Literal["tokens", "patch", "target-text"]
    level: SuspectLevel
    trigger: str
    target: str
    flip_rate: float
    p_value: float
    inputs: int
    tokens: tuple[int, ...] = ()
    position: str = ""
    patch: tuple[int, int, int, str] | None = None
    reproduced: bool = False
    detail: Mapping[str, str] = field(default_factory=dict)
    controls: tuple[float, ...] = ()
    before: Mapping[str, float] = field(default_factory=dict)
    after: Mapping[str, float] = field(default_factory=dict)
    image: PatchEvidence | None = None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe did and found."""

    name: str
    status: ProbeStatus
    suspects: tuple[Suspect, ...] = ()
    coverage: Mapping[str, int] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    note: str = ""
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ProbeContext:
    """Everything a probe may use: the model, the settings, the device and the clock."""

    loaded: LoadedModel
    spec: ProbesSpec
    device: torch.device
    texts: tuple[str, ...]
    prompts: tuple[str, ...]
    seed: int
    deadline: float
    clock: Callable[[], float] = time.monotonic

    @property
    def on_gpu(self) -> bool:
        """True when the probes run on a CUDA device (bf16 autocast, larger banks)."""
        return self.device.type == "cuda"

    def time_left(self) -> float:
        """Seconds left in the budget (negative once it is spent)."""
        return self.deadline - self.clock()

    def out_of_time(self) -> bool:
        """True once the budget is spent."""
        return self.time_left() <= 0


class Probe(Protocol):
    """A backdoor probe: a name, the families it applies to, and ``run``."""

    name: str
    families: frozenset[Family]

    def run(self, ctx: ProbeContext, hints: tuple[Suspect, ...]) -> ProbeResult:
        """Run on ``ctx``; ``hints`` are suspects earlier probes found (for re-checks and seeding)."""
        ...


def check_budget(ctx: ProbeContext, what: str) -> None:
    """Raise :class:`BudgetSpentError` when the budget is gone, naming ``what`` was cut short."""
    if ctx.out_of_time():
        raise BudgetSpentError(what)


class BudgetSpentError(ProbeError):
    """The time budget ran out inside a probe; the suite records the probe as partial."""

    def __init__(self, what: str) -> None:
        super().__init__(f"time budget spent during {what}", hint="raise spec.probes.budget_seconds or --budget")
