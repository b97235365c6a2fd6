"""P2: gradient trigger inversion for classifiers, every target label in one optimisation.

Text (DBS-style): per label, a short trigger is a distribution over the
vocabulary pool (softmax of logits at a falling temperature) whose expected
embedding is inserted after the leading specials of clean inputs; all labels
are stacked on the batch dimension, so L labels cost one optimisation. The
decoded (argmax) tokens are handed to P1 as hints and re-checked there as
discrete triggers. Images (Neural Cleanse): per label a mask and pattern,
``x' = (1 - m) x + m p``, trained with cross-entropy plus an L1 penalty on the
mask; the labels' mask norms give the MAD anomaly index, and the inverted patch
(bounding box of the mask, at most a quarter of the side) is re-checked as a
discrete patch. Masters stay fp32; on CUDA the forwards run in bf16 autocast.
Not handled here: the verdict (a high anomaly without a reproducible discrete
trigger is only ``review``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator

import torch

from weightguard.probes import banks
from weightguard.probes.batching import Items, assemble, tokenise
from weightguard.probes.image import (
    Evidence,
    Patch,
    flip_counts,
    normalise,
    one_hot,
    patch_suspect,
    predict,
    procedural_images,
    stamp,
)
from weightguard.probes.interface import (
    Family,
    ProbeContext,
    ProbeResult,
    ProbeStatus,
    Suspect,
    SuspectLevel,
    check_budget,
)
from weightguard.probes.loading import embedding_matrix
from weightguard.probes.p2_patch import invert_patches
from weightguard.probes.stats import anomaly_indices, binomial_tail, null_rate

TRIGGER_LEN = 2
BATCH = 16
CONTROLS = 20  # random-noise patches per label in the discrete re-check of an inverted patch


@contextlib.contextmanager
def _frozen(model: torch.nn.Module, device: torch.device) -> Iterator[None]:
    """Freeze the weights (only the trigger is optimised) and autocast on CUDA."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def invert_text(ctx: ProbeContext) -> ProbeResult:
    """Soft-token inversion for a sequence classifier; returns decoded triggers as ``info`` hints."""
    start = time.monotonic()
    model, tok, device = ctx.loaded.model, ctx.loaded.tokenizer, ctx.device
    banks_ = ctx.spec.gpu_banks if ctx.on_gpu else ctx.spec.cpu_banks
    labels = len(ctx.loaded.labels)
    data = tokenise(tok, ctx.texts[: banks_.inputs], max_body=64)
    pad = int(tok.pad_token_id)  # type: ignore[union-attr]
    pool = torch.tensor(banks.token_pool(tok), dtype=torch.long)
    weight = embedding_matrix(model).detach()
    table = weight[pool.to(weight.device)].float().to(device)
    g = torch.Generator().manual_seed(ctx.seed)
    theta = (0.01 * torch.randn(labels, TRIGGER_LEN, len(pool), generator=g)).to(device).requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=0.5)
    holes = torch.full((1, TRIGGER_LEN), pad, dtype=torch.long)
    embed = model.get_input_embeddings()
    p = len(data.prefix)
    steps = banks_.inversion_steps
    with _frozen(model, device):
        for step in range(steps):
            check_budget(ctx, "P2 text inversion")
            temp = 2.0 * (0.05 / 2.0) ** (step / max(1, steps - 1))
            idx = torch.randint(0, data.size, (BATCH,), generator=g)
            items = Items(torch.zeros(BATCH, dtype=torch.long), idx, torch.zeros(BATCH, dtype=torch.long))
            ids, mask = assemble(data, holes, torch.tensor([TRIGGER_LEN]), items, pad=pad, left=False)
            base = embed(ids.to(device)).float()  # (B, W, H)
            soft = (theta / temp).softmax(-1) @ table  # (L, k, H)
            x = base[None].repeat(labels, 1, 1, 1)
            x[:, :, p : p + TRIGGER_LEN] = soft[:, None]
            out = model(inputs_embeds=x.flatten(0, 1).to(base.dtype), attention_mask=mask.repeat(labels, 1).to(device))
            target = torch.arange(labels, device=device).repeat_interleave(BATCH)
            loss = torch.nn.functional.cross_entropy(out.logits.float(), target)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    decoded = pool[theta.detach().argmax(-1).cpu()]  # (L, k)
    hints = []
    for t in range(labels):
        ids_t = tuple(int(i) for i in decoded[t])
        hints.append(
            Suspect(
                probe="p2_inversion",
                kind="tokens",
                level="info",
                trigger=banks.show(tok, ids_t),
                target=ctx.loaded.labels[t],
                flip_rate=0.0,
                p_value=1.0,
                inputs=0,
                tokens=ids_t,
                detail={"note": "decoded inverted trigger; re-checked by P1"},
            )
        )
        for single in dict.fromkeys(ids_t):
            hints.append(
                Suspect(
                    probe="p2_inversion",
                    kind="tokens",
                    level="info",
                    trigger=banks.show(tok, (single,)),
                    target=ctx.loaded.labels[t],
                    flip_rate=0.0,
                    p_value=1.0,
                    inputs=0,
                    tokens=(single,),
                )
            )
    return ProbeResult(
        name="p2_inversion",
        status=ProbeStatus.RAN,
        suspects=tuple(hints),
        coverage={"labels": labels, "steps": steps, "trigger_tokens": TRIGGER_LEN, "vocabulary": len(pool)},
        metrics={"final_loss": float(loss.detach())},
        seconds=time.monotonic() - start,
    )


def invert_image(ctx: ProbeContext) -> ProbeResult:
    """Neural Cleanse mask + pattern inversion for every label at once, then a discrete re-check."""
    start = time.monotonic()
    prep = ctx.loaded.image
    assert prep is not None
    model, device = ctx.loaded.model, ctx.device
    banks_ = ctx.spec.gpu_banks if ctx.on_gpu else ctx.spec.cpu_banks
    labels = len(ctx.loaded.labels)
    images = procedural_images(banks_.inputs, prep, ctx.seed + 101)
    g = torch.Generator().manual_seed(ctx.seed)
    mask_raw = torch.full((labels, 1, prep.height, prep.width), -3.0).to(device).requires_grad_(True)
    pattern_raw = (0.1 * torch.randn(labels, prep.channels, prep.height, prep.width, generator=g)).to(device)
    pattern_raw.requires_grad_(True)
    opt = torch.optim.Adam([mask_raw, pattern_raw], lr=0.1)
    steps = banks_.inversion_steps
    area = prep.height * prep.width
    with _frozen(model, device):
        for _ in range(steps):
            check_budget(ctx, "P2 image inversion")
            x = images[torch.randint(0, len(images), (BATCH,), generator=g)].to(device)
            m, pat = mask_raw.sigmoid(), pattern_raw.sigmoid()
            mixed = (1 - m[:, None]) * x[None] + (m * pat)[:, None]  # (L, B, C, H, W)
            logits = model(pixel_values=normalise(mixed.flatten(0, 1), prep)).logits.float()
            target = torch.arange(labels, device=device).repeat_interleave(BATCH)
            ce = torch.nn.functional.cross_entropy(logits, target)
            loss = ce + 20.0 * m.sum() / (labels * area)  # L1 weight calibrated on the sample twins
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    m = mask_raw.detach().sigmoid().cpu()
    pat = pattern_raw.detach().sigmoid().cpu()
    norms = [float(m[t].sum()) for t in range(labels)]
    anomaly = anomaly_indices(norms)
    # The free mask alone misses compact patches it cannot localise on a CPU budget; the fixed-place patch
    # inversion (p2_patch) recovers those (issue 19).
    suspects = _recheck_patches(ctx, m, pat, anomaly) + invert_patches(ctx)
    return ProbeResult(
        name="p2_inversion",
        status=ProbeStatus.RAN,
        suspects=tuple(suspects),
        coverage={"labels": labels, "steps": steps, "inputs": len(images), "controls_per_patch": CONTROLS},
        metrics={
            **{f"mask_l1[{ctx.loaded.labels[t]}]": round(norms[t], 3) for t in range(labels)},
            **{f"anomaly_index[{ctx.loaded.labels[t]}]": round(anomaly[t], 3) for t in range(labels)},
        },
        seconds=time.monotonic() - start,
    )


def _recheck_patches(
    ctx: ProbeContext, mask: torch.Tensor, pattern: torch.Tensor, anomaly: list[float]
) -> list[Suspect]:
    prep = ctx.loaded.image
    assert prep is not None
    th = ctx.spec.thresholds
    fresh = procedural_images(96, prep, ctx.seed + 202)
    clean = predict(ctx, fresh)
    g = torch.Generator().manual_seed(ctx.seed + 303)
    out: list[Suspect] = []
    for t, index in enumerate(anomaly):
        on = (mask[t, 0] > 0.5).nonzero()
        side = max(2, min(prep.height, prep.width) // 4)
        patch = None
        if len(on):
            top, left = int(on[:, 0].min()), int(on[:, 1].min())
            size = max(int(on[:, 0].max()) - top, int(on[:, 1].max()) - left) + 1
            if size <= side:
                top, left = min(top, prep.height - size), min(left, prep.width - size)
                values = pattern[t, :, top : top + size, left : left + size]
                patch = Patch(top, left, size, "inverted", values)
        level: SuspectLevel = "info"  # block only with a reproducible discrete patch
        rate, p_value, n = 0.0, 1.0, 0
        evidence = None
        if patch is not None:
            after = predict(ctx, stamp(fresh, patch)).argmax(-1)
            k, n_all = flip_counts(clean, one_hot(after, clean.shape[-1]), th.min_clean_confidence)
            n = int(n_all[t])
            rate = float(k[t]) / max(1, n)
            null = []
            for _ in range(CONTROLS):
                top = int(torch.randint(0, prep.height - patch.size + 1, (1,), generator=g))
                left = int(torch.randint(0, prep.width - patch.size + 1, (1,), generator=g))
                noise = Patch(
                    top, left, patch.size, "control", torch.rand(prep.channels, patch.size, patch.size, generator=g)
                )
                kc, nc = flip_counts(clean, predict(ctx, stamp(fresh, noise)), th.min_clean_confidence)
                null.append(float(kc[t]) / max(1.0, float(nc[t])))
            p_value = binomial_tail(int(k[t]), n, null_rate(null, n)) * len(anomaly) if n else 1.0
            evidence = Evidence(ctx, fresh, clean, after, null)
            if rate >= th.block_flip_rate and min(1.0, p_value) < th.p_value and n >= th.min_inputs:
                level = "block"
        if level != "block" and index <= th.anomaly_index:
            continue  # neither a reproducible compact patch nor an outlying mask: nothing to report
        suspect = (
            patch_suspect("p2_inversion", patch, t, rate, min(1.0, p_value), n, level, evidence)
            if patch is not None and evidence is not None
            else Suspect(
                probe="p2_inversion",
                kind="patch",
                # A small inverted mask with no reproducible compact patch is the known false-positive
                # zone (PROBES.md 1.4): evidence, not a verdict; clean models hit it (issue 19).
                level="info",
                trigger="inverted mask (no compact patch)",
                target=ctx.loaded.labels[t],
                flip_rate=0.0,
                p_value=1.0,
                inputs=0,
            )
        )
        out.append(dataclasses.replace(suspect, detail={"anomaly_index": f"{index:.2f}"}))
    return out


class InversionProbe:
    """P2 for sequence and image classifiers."""

    name = "p2_inversion"
    families = frozenset({Family.SEQUENCE_CLASSIFICATION, Family.IMAGE_CLASSIFICATION})

    def run(self, ctx: ProbeContext, hints: tuple[Suspect, ...]) -> ProbeResult:
        """Invert triggers for every label at once."""
        if ctx.loaded.family is Family.IMAGE_CLASSIFICATION:
            return invert_image(ctx)
        return invert_text(ctx)
