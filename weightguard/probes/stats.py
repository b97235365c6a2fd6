"""Statistics shared by the probes: binomial tails against random controls, BH correction, MAD.

Not handled here: choosing thresholds (the policy) or verdicts (the suite).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), computed in log space (exact, no scipy)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    p = min(max(p, 1e-12), 1 - 1e-12)
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
        for i in range(k, n + 1)
    ]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def null_rate(control_rates: Sequence[float], n: int) -> float:
    """The null flip probability: the 95th percentile of the typical control flip rates, at least 1/n.

    Controls far above the rest (beyond median + max(6 MAD, 0.1)) are dropped
    first: a random control that happens to contain a real trigger token is a
    detection, not a sample of "a random token" (this matters for small
    vocabularies, where the controls draw from the same few hundred tokens as the
    candidates). A high quantile of the rest, not the mean, keeps ordinary
    lucky controls from making candidates look significant.
    """
    if not control_rates:
        return 0.5
    ordered = sorted(control_rates)
    med = ordered[len(ordered) // 2]
    mad = sorted(abs(v - med) for v in ordered)[len(ordered) // 2] * 1.4826
    kept = [v for v in ordered if v <= med + max(6 * mad, 0.1)]
    q = kept[min(len(kept) - 1, math.ceil(0.95 * len(kept)) - 1)]
    return max(q, 1.0 / max(1, n))


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """BH-adjusted p-values (same order as given)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p_values[i] * m / rank)
        adjusted[i] = min(1.0, running)
    return adjusted


def anomaly_indices(values: Sequence[float]) -> list[float]:
    """Neural Cleanse anomaly index of each value *below* the median (MAD-normalised, consistency 1.4826)."""
    if not values:
        return []
    med = sorted(values)[len(values) // 2]
    mad = sorted(abs(v - med) for v in values)[len(values) // 2] * 1.4826
    scale = mad if mad > 1e-12 else max(1e-12, 0.05 * abs(med))
    return [max(0.0, (med - v) / scale) for v in values]


def robust_z(values: Sequence[float]) -> list[float]:
    """Signed robust z-scores (median / MAD) of ``values``."""
    if not values:
        return []
    med = sorted(values)[len(values) // 2]
    mad = sorted(abs(v - med) for v in values)[len(values) // 2] * 1.4826
    scale = mad if mad > 1e-12 else 1e-12
    return [(v - med) / scale for v in values]
