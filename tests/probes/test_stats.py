"""Statistics: exact binomial tails, BH correction, the trimmed control null, MAD anomaly index."""

from __future__ import annotations

import math

import pytest

from weightguard.probes.stats import anomaly_indices, benjamini_hochberg, binomial_tail, null_rate


def test_binomial_tail_matches_the_direct_sum() -> None:
    n, p = 20, 0.1
    direct = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(15, n + 1))
    assert binomial_tail(15, n, p) == pytest.approx(direct, rel=1e-9)
    assert binomial_tail(0, n, p) == 1.0 and binomial_tail(21, n, p) == 0.0


def test_bh_adjusted_p_values_are_monotone_and_never_below_raw() -> None:
    raw = [0.01, 0.04, 0.03, 0.5]
    adjusted = benjamini_hochberg(raw)
    assert all(a >= r for a, r in zip(adjusted, raw, strict=True))
    assert adjusted == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])


def test_a_control_that_contains_a_real_trigger_does_not_inflate_the_null() -> None:
    typical = [0.0] * 45 + [0.02, 0.02, 0.05]
    assert null_rate([*typical, 1.0, 0.98], n=50) == pytest.approx(0.02)


def test_the_smallest_mask_gets_the_largest_anomaly_index() -> None:
    index = anomaly_indices([300.0, 280.0, 310.0, 20.0, 295.0])
    assert max(range(5), key=lambda i: index[i]) == 3 and index[3] > 2
