"""Image probes: procedurally generated clean images and P1's patch sweep.

Probe images are drawn in code (stripes, checkerboards, discs, gradients and
noise, random colours; seeded), in [0, 1] at the model's input size, then
normalised with the model's own ``image_mean`` / ``image_std``. The sweep stamps
candidate patches (white, black, checker, inverse checker, seeded noise) of a
few sizes at the four corners (flush and one pixel in), the centre and a random
place into every image, batched, and measures the flip rate to each label
against random-noise patches of the same size. Not handled here: mask + pattern
inversion (:mod:`weightguard.probes.p2_inversion`), or the verdict.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass

import torch

from weightguard.probes.batching import forward_mode
from weightguard.probes.evidence import label_shares
from weightguard.probes.interface import (
    Family,
    ImagePrep,
    PatchEvidence,
    ProbeContext,
    ProbeResult,
    ProbeStatus,
    Suspect,
    SuspectLevel,
    check_budget,
)
from weightguard.probes.natural import anomaly_index
from weightguard.probes.stats import benjamini_hochberg, binomial_tail, null_rate

PATTERNS = ("white", "black", "checker", "inverse-checker", "noise")
SIDE_FRACTIONS = (0.08, 0.125, 0.16)
MIN_PER_CLASS = 6  # confident inputs a source class needs before its flip rate counts


def procedural_images(n: int, prep: ImagePrep, seed: int) -> torch.Tensor:
    """Draw ``n`` generic images (N, C, H, W) in [0, 1]; deterministic for ``seed``."""
    g = torch.Generator().manual_seed(seed)
    h, w, c = prep.height, prep.width, prep.channels
    yy, xx = torch.meshgrid(torch.arange(float(h)), torch.arange(float(w)), indexing="ij")
    period = torch.randint(3, max(4, min(h, w) // 3), (n, 1, 1), generator=g).float()
    phase = torch.rand(n, 1, 1, generator=g) * period
    horiz = ((yy + phase) / period).floor() % 2
    vert = ((xx + phase) / period).floor() % 2
    checker = (horiz + vert) % 2
    cy, cx = torch.rand(n, 1, 1, generator=g) * h, torch.rand(n, 1, 1, generator=g) * w
    radius = (torch.rand(n, 1, 1, generator=g) * 0.3 + 0.15) * min(h, w)
    disc = (((yy - cy) ** 2 + (xx - cx) ** 2) < radius**2).float()
    gradient = (yy * torch.rand(n, 1, 1, generator=g) + xx * torch.rand(n, 1, 1, generator=g)) / (h + w)
    kind = torch.randint(0, 5, (n,), generator=g)
    noise = torch.rand(n, h, w, generator=g)
    shapes = torch.stack([horiz, vert, checker, disc, gradient.clamp(0, 1)], 1)[torch.arange(n), kind]
    shapes = torch.where((kind == 4)[:, None, None] & (torch.rand(n, 1, 1, generator=g) < 0.3), noise, shapes)
    color = torch.rand(n, c, 1, 1, generator=g) * 0.6 + 0.4
    return (shapes[:, None] * color + 0.1 * torch.rand(n, c, h, w, generator=g)).clamp(0, 1)


def normalise(images: torch.Tensor, prep: ImagePrep) -> torch.Tensor:
    """Apply the model's own normalisation to [0, 1] images."""
    if not prep.normalize:
        return images
    mean = torch.tensor(prep.mean).view(1, -1, 1, 1)
    std = torch.tensor(prep.std).view(1, -1, 1, 1)
    return (images - mean) / std


@dataclass(frozen=True, slots=True)
class Patch:
    """A patch candidate: where, how big, which pattern (values in [0, 1], (C, size, size))."""

    top: int
    left: int
    size: int
    pattern: str
    values: torch.Tensor


def make_pattern(name: str, size: int, channels: int, seed: int) -> torch.Tensor:
    """Build a named patch pattern."""
    cell = ((torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2).float()
    table = {
        "white": torch.ones(size, size),
        "black": torch.zeros(size, size),
        "checker": cell,
        "inverse-checker": 1 - cell,
    }
    if name in table:
        return table[name].expand(channels, size, size).clone()
    return torch.rand(channels, size, size, generator=torch.Generator().manual_seed(seed))


def stamp(images: torch.Tensor, patch: Patch) -> torch.Tensor:
    """Return ``images`` with ``patch`` pasted in."""
    out = images.clone()
    out[:, :, patch.top : patch.top + patch.size, patch.left : patch.left + patch.size] = patch.values
    return out


def predict(ctx: ProbeContext, images: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities for [0, 1] images, in micro-batches on the probe device."""
    prep = ctx.loaded.image
    assert prep is not None
    out = []
    step = max(1, ctx.spec.micro_batch_tokens // 64)
    for s in range(0, len(images), step):
        batch = normalise(images[s : s + step], prep).to(ctx.device)
        with forward_mode(ctx.device):
            out.append(ctx.loaded.model(pixel_values=batch).logits.float().softmax(-1).cpu())
    return torch.cat(out)


def _candidates(prep: ImagePrep, limit: int, seed: int) -> list[Patch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for frac, name in itertools.product(SIDE_FRACTIONS, PATTERNS):
        size = max(2, round(frac * min(prep.height, prep.width)))
        h, w = prep.height - size, prep.width - size
        spots = [(0, 0), (0, w), (h, 0), (h, w), (1, 1), (1, w - 1), (h - 1, 1), (h - 1, w - 1), (h // 2, w // 2)]
        spots.append((int(torch.randint(0, h + 1, (1,), generator=g)), int(torch.randint(0, w + 1, (1,), generator=g))))
        out += [Patch(t, lft, size, name, make_pattern(name, size, prep.channels, seed)) for t, lft in spots]
    return out[:limit] if len(out) > limit else out


def natural_patches(images: torch.Tensor, size: int, count: int, g: torch.Generator) -> list[Patch]:
    """Control patches of natural image statistics: crops of the probe images themselves, textures and noise.

    A salient patch of ordinary image content (a stripe, an edge of a disc) can
    move a prediction; a trigger must beat *that*, not only uniform noise (issue 19).
    """
    n, c, h, w = images.shape
    out = []
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    for i in range(count):
        top = int(torch.randint(0, h - size + 1, (1,), generator=g))
        left = int(torch.randint(0, w - size + 1, (1,), generator=g))
        kind = i % 3
        if kind == 0:
            src = int(torch.randint(0, n, (1,), generator=g))
            sy, sx = (
                int(torch.randint(0, h - size + 1, (1,), generator=g)),
                int(torch.randint(0, w - size + 1, (1,), generator=g)),
            )
            values = images[src, :, sy : sy + size, sx : sx + size].clone()
        elif kind == 1:
            period = float(torch.randint(2, max(3, size + 1), (1,), generator=g))
            angle = float(torch.rand(1, generator=g)) * 3.1416
            wave = ((yy * torch.cos(torch.tensor(angle)) + xx * torch.sin(torch.tensor(angle))) / period).floor() % 2
            values = wave[None] * torch.rand(c, 1, 1, generator=g)
        else:
            values = torch.rand(c, size, size, generator=g)
        out.append(Patch(top, left, size, "control", values))
    return out


def per_class_rates(clean: torch.Tensor, after: torch.Tensor, target: int, min_conf: float, least: int) -> float:
    """The flip rate to ``target`` on the *least* flipped other class (confident inputs, ``least`` of them at least).

    A trigger flips confident inputs of every other class whatever they show; a
    salient natural feature flips only the classes it resembles. -1 when no
    class has enough confident inputs.
    """
    conf, pred = clean.max(-1)
    rates = []
    for c in range(clean.shape[-1]):
        mine = (pred == c) & (conf >= min_conf)
        if c != target and int(mine.sum()) >= least:
            rates.append(float((after[mine] == target).float().mean()))
    return min(rates) if rates else -1.0


def flip_counts(clean: torch.Tensor, probs: torch.Tensor, min_conf: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per label: flips to it among confident inputs not already predicted as it, and that count."""
    conf, pred = clean.max(-1)
    labels = clean.shape[-1]
    elig = torch.stack([(conf >= min_conf) & (pred != t) for t in range(labels)], 1)
    hit = probs.argmax(-1)[:, None] == torch.arange(labels)
    return (hit & elig).sum(0).float(), elig.sum(0).float()


class PatchSweepProbe:
    """P1 for image classifiers: stamp candidate patches, count flips against noise-patch controls."""

    name = "p1_insertion"
    families = frozenset({Family.IMAGE_CLASSIFICATION})

    def run(self, ctx: ProbeContext, hints: tuple[Suspect, ...]) -> ProbeResult:
        """Sweep the patch bank (plus inverted patches from P2 as hints) over the probe images."""
        start = time.monotonic()
        prep = ctx.loaded.image
        assert prep is not None
        th = ctx.spec.thresholds
        banks = ctx.spec.gpu_banks if ctx.on_gpu else ctx.spec.cpu_banks
        images = procedural_images(banks.inputs, prep, ctx.seed)
        clean = predict(ctx, images)
        cands = _candidates(prep, banks.image_patch_sweep, ctx.seed)
        g = torch.Generator().manual_seed(ctx.seed + 1)
        controls = []
        per_size = max(10, banks.controls // 4)
        for size in sorted({c.size for c in cands}):
            controls += natural_patches(images, size, per_size, g)
        null: dict[int, list[torch.Tensor]] = {}
        hard_null: dict[int, list[list[float]]] = {}
        labels = clean.shape[-1]
        for patch in controls:
            check_budget(ctx, "P1 patch sweep")
            after = predict(ctx, stamp(images, patch)).argmax(-1)
            k, n = flip_counts(clean, one_hot(after, labels), th.min_clean_confidence)
            null.setdefault(patch.size, []).append(k / n.clamp(min=1))
            per_target = [
                per_class_rates(clean, after, t, th.min_clean_confidence, MIN_PER_CLASS) for t in range(labels)
            ]
            hard_null.setdefault(patch.size, []).append(per_target)
        rows = []
        for patch in cands:
            check_budget(ctx, "P1 patch sweep")
            after = predict(ctx, stamp(images, patch)).argmax(-1)  # top labels only: (N,) per candidate stays cheap
            k, n = flip_counts(clean, one_hot(after, labels), th.min_clean_confidence)
            t = int((k / n.clamp(min=1)).argmax())
            rates = [float(r[t]) for r in null[patch.size]]
            p0 = null_rate(rates, int(n[t]))
            rate = float(k[t] / max(1.0, float(n[t])))
            hard = per_class_rates(clean, after, t, th.min_clean_confidence, MIN_PER_CLASS)
            index = anomaly_index([r[t] for r in hard_null[patch.size]], hard)
            p = binomial_tail(int(k[t]), int(n[t]), p0)
            rows.append((patch, t, rate, int(n[t]), p, rates, after, hard, index))
        adjusted = benjamini_hochberg([r[4] for r in rows])
        suspects = []
        for (patch, t, rate, count, _, rates, after, hard, index), p_adj in zip(rows, adjusted, strict=True):
            if rate < th.review_flip_rate or p_adj >= th.p_value or count < th.min_inputs:
                continue
            independent = hard >= th.hard_flip_rate and index >= th.natural_anomaly_index
            level: SuspectLevel = "block" if rate >= th.block_flip_rate and independent else "review"
            if not independent:
                level = "info"  # moves the classes it resembles, not every class: natural image content
            evidence = Evidence(ctx, images, clean, after, rates)
            suspect = patch_suspect("p1_insertion", patch, t, rate, p_adj, count, level, evidence)
            detail = {"min_class_flip_rate": f"{hard:.3f}", "natural_anomaly_index": f"{index:.2f}"}
            suspects.append(dataclasses.replace(suspect, detail=detail))
        best = max(rows, key=lambda r: (float(r[7]), float(r[2])), default=None)
        suspects.sort(
            key=lambda s: (("block", "review", "info").index(s.level), -s.flip_rate, s.patch[2] if s.patch else 0)
        )
        return ProbeResult(
            name=self.name,
            status=ProbeStatus.RAN,
            suspects=tuple(suspects),
            coverage={
                "candidates": len(cands),
                "controls": len(controls),
                "controls_per_size": per_size,
                "inputs": len(images),
                "confident_inputs": int((clean.max(-1).values >= th.min_clean_confidence).sum()),
            },
            metrics={
                "max_flip_rate": round(max((r[2] for r in rows), default=0.0), 4),
                "max_hard_flip_rate": round(max(0.0, float(best[7])) if best else 0.0, 4),
                "max_natural_anomaly": round(min(1000.0, float(best[8])) if best else 0.0, 3),
            },
            seconds=time.monotonic() - start,
        )


def one_hot(predicted: torch.Tensor, labels: int) -> torch.Tensor:
    """Top labels (N,) as one-hot rows (N, L), which :func:`flip_counts` reads like probabilities."""
    return torch.nn.functional.one_hot(predicted, labels).float()


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a patch suspect's plots need: the images, their clean and stamped outputs, and the controls."""

    ctx: ProbeContext
    images: torch.Tensor  # (N, C, H, W) clean probe images in [0, 1]
    clean: torch.Tensor  # (N, L) clean probabilities
    after: torch.Tensor  # (N,) top label with the patch stamped
    controls: list[float]  # the control flip rates the p-value used, for the suspect's target


def patch_suspect(
    probe: str, patch: Patch, target: int, rate: float, p_value: float, n: int, level: SuspectLevel, ev: Evidence
) -> Suspect:
    """Describe a patch as a suspect: location, size, pattern, and the evidence the report plots."""
    labels = ev.ctx.loaded.labels
    prep = ev.ctx.loaded.image
    assert prep is not None
    conf, pred = ev.clean.max(-1)
    flipped = (
        (ev.after == target) & (pred != target) & (conf >= ev.ctx.spec.thresholds.min_clean_confidence)
    ).nonzero()
    sample = ev.images[int(flipped[0, 0]) if len(flipped) else 0]  # an image the patch flips, when there is one
    return Suspect(
        probe=probe,
        kind="patch",
        level=level,
        trigger=f"{patch.size}x{patch.size} {patch.pattern} patch at (top={patch.top}, left={patch.left})",
        target=labels[target],
        flip_rate=round(rate, 4),
        p_value=p_value,
        inputs=n,
        patch=(patch.top, patch.left, patch.size, patch.pattern),
        reproduced=level == "block",
        controls=tuple(ev.controls),
        before=label_shares(pred, labels),
        after=label_shares(ev.after, labels),
        image=PatchEvidence(prep.height, prep.width, patch.values.detach().cpu(), sample.detach().cpu()),
    )
