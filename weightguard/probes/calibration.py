"""A calibrated ``backdoor_probability``: logistic regression on the probes' model-level features.

PROBES.md 2.5 asks for a probability, not a pile of thresholds, so that the
gate's own error can be measured (ECE, cross-entropy). The features are the
ones every family's P1 reports (best easy flip rate, best content-independent
flip rate, its robust anomaly against the model's natural bank) plus whether a
suspect reached the block bar. Coefficients are fitted by
``benchmarks/probe_twins.py fit`` on generated clean/backdoored twins and
shipped as ``data/calibration.json`` together with the set they were fitted on
and the fit's expected calibration error.

numpy only, on purpose: the fit is a few hundred rows and four features, so
Newton's method (IRLS) with an L2 penalty is twenty lines; scikit-learn would be
a heavy dependency for it. Not handled here: running probes, or the policy's
thresholds (the suite applies them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

from weightguard.errors import ProbeError

FEATURES = ("max_flip_rate", "max_hard_flip_rate", "natural_anomaly", "block_suspect")
ANOMALY_CAP = 50.0  # anomaly indices beyond this say nothing more; capping keeps the fit stable


@dataclass(frozen=True, slots=True)
class Calibrator:
    """Fitted coefficients, with the evidence of how well they are calibrated."""

    coef: tuple[float, ...]
    intercept: float
    ece: float
    fitted_on: str
    samples: int

    def probability(self, x: Sequence[float]) -> float:
        """P(backdoored | features) for one feature vector in :data:`FEATURES` order."""
        z = self.intercept + sum(c * v for c, v in zip(self.coef, x, strict=True))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def to_json(self) -> str:
        """The shipped JSON form."""
        doc = {
            "features": list(FEATURES),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "ece": self.ece,
            "fitted_on": self.fitted_on,
            "samples": self.samples,
        }
        return json.dumps(doc, indent=1) + "\n"


def features(metrics: Mapping[str, float], block_suspect: bool) -> list[float]:
    """The feature vector of one model from P1's metrics (0 where a metric is missing)."""
    anomaly = min(ANOMALY_CAP, max(0.0, float(metrics.get("max_natural_anomaly", 0.0))))
    return [
        float(metrics.get("max_flip_rate", 0.0)),
        max(0.0, float(metrics.get("max_hard_flip_rate", 0.0))),
        math.log1p(anomaly),
        1.0 if block_suspect else 0.0,
    ]


def fit(x: Sequence[Sequence[float]], y: Sequence[int], *, l2: float = 1.0, iterations: int = 50) -> np.ndarray:
    """Penalised logistic regression by Newton's method; returns [intercept, coef...].

    The L2 penalty (not on the intercept) keeps the weights finite on separable
    data, which well-separated twins are.
    """
    a = np.hstack([np.ones((len(x), 1)), np.asarray(x, dtype=float)])
    t = np.asarray(y, dtype=float)
    w = np.zeros(a.shape[1])
    penalty = np.eye(a.shape[1]) * l2
    penalty[0, 0] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ w, -60, 60)))
        grad = a.T @ (p - t) + penalty @ w
        hess = a.T @ (a * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(a.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return w


def ece(probs: Sequence[float], y: Sequence[int], bins: int = 10) -> float:
    """Expected calibration error: the bin-weighted gap between mean probability and observed rate."""
    if not probs:
        return 0.0
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(probs) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if idx:
            conf = sum(probs[i] for i in idx) / len(idx)
            rate = sum(y[i] for i in idx) / len(idx)
            total += len(idx) / len(probs) * abs(conf - rate)
    return total


def load() -> Calibrator:
    """The shipped calibrator; a missing or malformed file is an error (the gate cannot run uncalibrated)."""
    try:
        text = resources.files("weightguard.probes").joinpath("data", "calibration.json").read_text(encoding="utf-8")
        doc = json.loads(text)
        if list(doc["features"]) != list(FEATURES):
            raise ProbeError("calibration.json was fitted on other features; refit it")
        return Calibrator(
            coef=tuple(float(v) for v in doc["coef"]),
            intercept=float(doc["intercept"]),
            ece=float(doc["ece"]),
            fitted_on=str(doc["fitted_on"]),
            samples=int(doc["samples"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProbeError(f"the shipped probe calibration cannot be read: {exc}") from exc
