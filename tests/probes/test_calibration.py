"""The calibrator: numpy logistic regression, its calibration error, and the shipped coefficients."""

from __future__ import annotations

import pytest

from weightguard.probes import calibration


def test_a_fit_on_separated_twins_orders_backdoored_above_clean_and_stays_finite() -> None:
    x = [[1.0, 0.0, 0.0, 0.0]] * 10 + [[1.0, 1.0, 3.9, 1.0]] * 10
    y = [0] * 10 + [1] * 10
    w = calibration.fit(x, y)
    cal = calibration.Calibrator(tuple(float(v) for v in w[1:]), float(w[0]), 0.0, "test", 20)
    assert all(abs(v) < 100 for v in w)  # the L2 penalty keeps separable data from diverging
    assert cal.probability(x[-1]) > 0.9 > 0.1 > cal.probability(x[0])


def test_expected_calibration_error_is_zero_when_probabilities_match_outcomes() -> None:
    assert calibration.ece([0.0, 1.0, 1.0], [0, 1, 1]) == 0.0
    assert calibration.ece([0.9, 0.9], [0, 0]) == pytest.approx(0.9)


def test_the_shipped_calibrator_names_its_fit_set_and_error() -> None:
    cal = calibration.load()
    assert cal.fitted_on and 0.0 <= cal.ece <= 1.0
    assert len(cal.coef) == len(calibration.FEATURES)


def test_features_cap_the_anomaly_and_default_missing_metrics_to_zero() -> None:
    assert calibration.features({}, block_suspect=False) == [0.0, 0.0, 0.0, 0.0]
    capped = calibration.features({"max_natural_anomaly": 1e9}, block_suspect=True)
    assert capped[2] == pytest.approx(calibration.features({"max_natural_anomaly": 50.0}, True)[2])
    assert capped[3] == 1.0
