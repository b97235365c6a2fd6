"""P4: weight-space evidence: embedding-norm outliers, and the delta against a pinned base model.

A trigger token trained into a model moves away from its untrained neighbours,
so tokens whose embedding norm is a robust outlier are handed to P1/P3 as
candidates to try first (``info`` only: never a verdict on its own). When the
policy pins a base model with the same embedding shape, the per-row change is
measured: most of the change concentrated in a handful of token rows is
``review``-level evidence. Not handled here: behavioural tests.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from weightguard.errors import ProbeError
from weightguard.probes import banks
from weightguard.probes.interface import Family, ProbeContext, ProbeResult, ProbeStatus, Suspect
from weightguard.probes.loading import embedding_matrix, load_model
from weightguard.probes.stats import robust_z

OUTLIER_Z = 4.0
MAX_OUTLIERS = 64


class WeightProbe:
    """P4 for every family with token embeddings (image models: skipped as not applicable)."""

    name = "p4_weights"
    families = frozenset({Family.SEQUENCE_CLASSIFICATION, Family.CAUSAL_LM})

    def run(self, ctx: ProbeContext, hints: tuple[Suspect, ...]) -> ProbeResult:
        """Rank tokens by embedding-norm outlierness; compare with the base model when pinned."""
        start = time.monotonic()
        tok = ctx.loaded.tokenizer
        weight = embedding_matrix(ctx.loaded.model).detach().float().cpu()
        pool = banks.token_pool(tok)
        norms = weight[torch.tensor(pool)].norm(dim=-1).tolist()
        z = robust_z(norms)
        ranked = sorted(range(len(pool)), key=lambda i: -abs(z[i]))
        outliers = [pool[i] for i in ranked if abs(z[i]) >= OUTLIER_Z][:MAX_OUTLIERS]
        suspects = []
        if outliers:
            suspects.append(
                Suspect(
                    probe=self.name,
                    kind="tokens",
                    level="info",
                    trigger=", ".join(banks.show(tok, (i,)) for i in outliers[:10]),
                    target="",
                    flip_rate=0.0,
                    p_value=1.0,
                    inputs=0,
                    tokens=tuple(outliers),
                    detail={"outliers": str(len(outliers)), "z_threshold": str(OUTLIER_Z)},
                )
            )
        metrics = {"max_abs_norm_z": round(max((abs(v) for v in z), default=0.0), 3)}
        if ctx.spec.base_model:
            concentration, top = _delta(weight, Path(ctx.spec.base_model))
            metrics["delta_top1pct_share"] = round(concentration, 4)
            if concentration >= ctx.spec.thresholds.embedding_delta_concentration:
                suspects.append(
                    Suspect(
                        probe=self.name,
                        kind="tokens",
                        level="review",
                        trigger=", ".join(banks.show(tok, (i,)) for i in top[:10]),
                        target="",
                        flip_rate=round(concentration, 4),
                        p_value=1.0,
                        inputs=0,
                        tokens=tuple(top),
                        detail={"check": "embedding delta vs base model"},
                    )
                )
        return ProbeResult(
            name=self.name,
            status=ProbeStatus.RAN,
            suspects=tuple(suspects),
            coverage={"tokens": len(pool)},
            metrics=metrics,
            seconds=time.monotonic() - start,
        )


def _delta(weight: torch.Tensor, base_dir: Path) -> tuple[float, list[int]]:
    """Share of the squared embedding change held by the top 1 % of rows, and those rows."""
    base = embedding_matrix(load_model(base_dir).model).detach().float().cpu()
    if base.shape != weight.shape:
        raise ProbeError(
            f"the pinned base model's embeddings are {tuple(base.shape)}, this model's {tuple(weight.shape)}"
        )
    rows = (weight - base).pow(2).sum(-1)
    total = float(rows.sum())
    if total == 0.0:
        return 0.0, []
    k = max(1, len(rows) // 100)
    top = rows.topk(k)
    return float(top.values.sum()) / total, [int(i) for i in top.indices]
