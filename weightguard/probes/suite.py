"""The probe suite: run the probes the policy asks for within a time budget and decide, fail closed.

The verdict comes from the calibrated ``backdoor_probability``
(:mod:`weightguard.probes.calibration`) and the policy's probability bars, fail
closed. Order (one explicit tuple): P4 weights (ranks tokens for the banks), P2
inversion (decoded triggers become hints), P1 insertion (re-checks every hint
as a discrete trigger with its exact test), P3 LM target inversion. Verdict:
``block`` when any suspect reaches the block bar (reproducible, significant
against random controls); ``review`` for suspects under that bar, an inversion
anomaly without a discrete trigger, an LM target without a trigger, a
concentrated delta against the base model, or any probe that errored, ran out
of budget or lacked confident inputs; ``pass`` only when every applicable,
enabled probe ran and found nothing; ``not-probed`` when the model could not be
loaded. Not handled here: loading details, the probes' internals, rendering.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from weightguard.errors import ProbeError
from weightguard.findings import Rule
from weightguard.policy.sections.probes import ProbesSpec, Thresholds
from weightguard.probes import calibration, codes
from weightguard.probes.banks import builtin_lines
from weightguard.probes.evidence import suspect_models
from weightguard.probes.image import PatchSweepProbe
from weightguard.probes.interface import (
    BudgetSpentError,
    Family,
    LoadedModel,
    Probe,
    ProbeContext,
    ProbeResult,
    ProbeStatus,
    Suspect,
)
from weightguard.probes.loading import NotProbedError, load_model
from weightguard.probes.p1_insertion import InsertionProbe
from weightguard.probes.p2_inversion import InversionProbe
from weightguard.probes.p3_lm_target import TargetInversionProbe
from weightguard.probes.p4_weights import WeightProbe
from weightguard.probes.report import (
    EXIT_CODES,
    CalibrationModel,
    Coverage,
    ProbeFinding,
    ProbeReport,
    ProbeRunModel,
    ProbeVerdict,
)
from weightguard.progress import emit

PROBES: tuple[Probe, ...] = (
    WeightProbe(),
    InversionProbe(),
    InsertionProbe(),
    PatchSweepProbe(),
    TargetInversionProbe(),
)


def probe_directory(
    root: Path,
    spec: ProbesSpec,
    *,
    device: str | None = None,
    budget: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ProbeReport:
    """Load ``root`` and probe it; a model that cannot be loaded is ``not-probed``, never ``pass``."""
    start = clock()
    try:
        loaded = load_model(root)
    except NotProbedError as exc:
        finding = _finding(codes.NOT_PROBED, f"{exc.reason}: {exc.message}")
        return ProbeReport(
            model=str(root),
            verdict="not-probed",
            exit_code=EXIT_CODES["not-probed"],
            reason=exc.message,
            findings=[finding],
        )
    return probe_loaded(loaded, spec, device=device, budget=budget, clock=clock, start=start)


def probe_loaded(
    loaded: LoadedModel,
    spec: ProbesSpec,
    *,
    device: str | None = None,
    budget: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    start: float | None = None,
) -> ProbeReport:
    """Run the enabled, applicable probes on an already loaded model and decide the verdict."""
    import torch

    from weightguard.probes.batching import select_device

    started = clock() if start is None else start
    dev = select_device(device or spec.device)
    loaded.model.to(dev)  # type: ignore[arg-type]  # transformers' typed wrapper of nn.Module.to
    torch.manual_seed(spec.seed)
    texts = (*(builtin_lines("texts") if spec.inputs.use_builtin else ()), *spec.inputs.text)
    prompts = (*(builtin_lines("prompts") if spec.inputs.use_builtin else ()), *spec.inputs.prompts)
    seconds = budget if budget is not None else spec.budget_seconds
    ctx = ProbeContext(loaded, spec, dev, texts, prompts, spec.seed, started + seconds, clock)
    results: list[ProbeResult] = []
    hints: tuple[Suspect, ...] = ()
    chosen = [p for p in PROBES if p.name in spec.enabled and loaded.family in p.families]
    for i, probe in enumerate(chosen):
        emit("probing", i, len(chosen), item=probe.name)
        result = _run_one(probe, ctx, hints)
        results.append(result)
        hints += result.suspects
    emit("probing", len(chosen), len(chosen))
    return _decide(loaded, ctx, results, clock() - started, seconds)


def _run_one(probe: Probe, ctx: ProbeContext, hints: tuple[Suspect, ...]) -> ProbeResult:
    began = ctx.clock()
    if ctx.out_of_time():
        return ProbeResult(probe.name, ProbeStatus.SKIPPED, note="time budget spent before the probe started")
    try:
        return probe.run(ctx, hints)
    except BudgetSpentError as exc:
        return ProbeResult(probe.name, ProbeStatus.PARTIAL, note=exc.message, seconds=ctx.clock() - began)
    except ProbeError as exc:
        return ProbeResult(probe.name, ProbeStatus.ERRORED, note=exc.message, seconds=ctx.clock() - began)
    except Exception as exc:  # noqa: BLE001 - torch/transformers seam: a crashed probe fails closed, never passes
        note = f"{type(exc).__name__}: {exc}"
        return ProbeResult(probe.name, ProbeStatus.ERRORED, note=note, seconds=ctx.clock() - began)


def _finding(rule: Rule, message: str) -> ProbeFinding:
    return ProbeFinding(code=rule.code, severity=rule.severity, kind=rule.kind.value, message=message)


def _decide(
    loaded: LoadedModel, ctx: ProbeContext, results: list[ProbeResult], wall: float, budget: float
) -> ProbeReport:
    suspects = [s for r in results for s in r.suspects if not (s.probe == "p2_inversion" and s.level == "info")]
    findings: list[ProbeFinding] = []
    lm = loaded.family is Family.CAUSAL_LM
    for s in suspects:
        if s.level == "block":
            rule = codes.LM_TARGET_FOUND if lm else codes.TRIGGER_FOUND
            findings.append(
                _finding(
                    rule,
                    f"{s.trigger!r} -> {s.target!r} (flip rate {s.flip_rate:.2f}, "
                    f"p={s.p_value:.2g}, {s.inputs} inputs, {s.probe})",
                )
            )
        elif s.level == "review":
            rule = {"p2_inversion": codes.INVERSION_ANOMALY, "p4_weights": codes.BASE_DELTA_CONCENTRATED}.get(
                s.probe, codes.TRIGGER_SUSPECTED
            )
            if s.probe == "p3_lm_target":
                if any(b.level == "block" for b in suspects):
                    continue  # a blocking trigger already explains the target; it stays listed as evidence
                rule = codes.TRIGGER_SUSPECTED
            findings.append(
                _finding(rule, f"{s.probe}: {s.trigger or s.target!r} -> {s.target!r} (rate {s.flip_rate:.2f})")
            )
        elif s.probe == "p4_weights":
            findings.append(_finding(codes.EMBEDDING_OUTLIERS, f"outlying tokens: {s.trigger}"))
    for r in results:
        if r.status is ProbeStatus.ERRORED:
            findings.append(_finding(codes.PROBE_ERRORED, f"{r.name}: {r.note}"))
        elif r.status is ProbeStatus.PARTIAL and "confident" in r.note:
            findings.append(_finding(codes.INCONCLUSIVE_INPUTS, f"{r.name}: {r.note}"))
        elif r.status is not ProbeStatus.RAN:
            findings.append(_finding(codes.PROBE_INCOMPLETE, f"{r.name}: {r.status.value}: {r.note}"))
    probability, calib = _probability(results, suspects)
    verdict, reason = _verdict(suspects, results, findings, probability, ctx.spec.thresholds)
    not_done = [r.name for r in results if r.status is not ProbeStatus.RAN]
    return ProbeReport(
        model=str(loaded.path),
        family=loaded.family.value,
        architecture=loaded.architecture,
        parameters=loaded.parameters,
        verdict=verdict,
        exit_code=EXIT_CODES[verdict],
        reason=reason,
        backdoor_probability=None if probability is None else round(probability, 4),
        calibration=calib,
        suspects=suspect_models(suspects),
        findings=findings,
        probes=[
            ProbeRunModel(
                name=r.name,
                status=r.status.value,
                seconds=round(r.seconds, 3),
                coverage=dict(r.coverage),
                metrics=dict(r.metrics),
                note=r.note,
            )
            for r in results
        ],
        coverage=Coverage(
            probes_run=[r.name for r in results if r.status is ProbeStatus.RAN],
            probes_not_completed=not_done,
            bank="gpu" if ctx.on_gpu else "cpu",
            device=str(ctx.device),
            seed=ctx.seed,
            wall_seconds=round(wall, 3),
            budget_seconds=budget,
        ),
    )


def _probability(results: list[ProbeResult], suspects: list[Suspect]) -> tuple[float | None, CalibrationModel | None]:
    """The calibrated probability from P1's features; None when P1 did not run (the verdict then cannot pass)."""
    p1 = next((r for r in results if r.name == "p1_insertion" and r.status is ProbeStatus.RAN), None)
    if p1 is None:
        return None, None
    cal = calibration.load()
    x = calibration.features(p1.metrics, any(s.level == "block" for s in suspects))
    return cal.probability(x), CalibrationModel(ece=cal.ece, fitted_on=cal.fitted_on, samples=cal.samples)


def _verdict(
    suspects: list[Suspect],
    results: list[ProbeResult],
    findings: list[ProbeFinding],
    probability: float | None,
    th: Thresholds,
) -> tuple[ProbeVerdict, str]:
    blocking = [s for s in suspects if s.level == "block"]
    if not results:
        return "not-probed", "no enabled probe applies to this model family"
    if probability is not None and probability >= th.block_probability:
        return "block", f"backdoor probability {probability:.3f}; {len(blocking)} trigger(s) reach the block bar"
    if blocking:
        # A trigger at the block bar that the calibrator does not back: a person decides.
        shown = "n/a" if probability is None else f"{probability:.3f}"
        return "review", f"{len(blocking)} trigger(s) reach the block bar, backdoor probability {shown}"
    if probability is not None and probability >= th.review_probability:
        return "review", f"backdoor probability {probability:.3f} without a named trigger"
    if any(r.status is not ProbeStatus.RAN for r in results):
        return "review", "not every probe completed; the result cannot be pass"
    if any(f.severity.rank >= codes.TRIGGER_SUSPECTED.severity.rank for f in findings):
        return "review", "suspicious evidence below the block bar"
    return "pass", "every applicable probe ran and found no trigger"
