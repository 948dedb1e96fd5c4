"""Permutation and calibrated tests, repeats needed, and change-point detection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis.stats import (
    compare_samples,
    detect_change_points,
    minimum_permutation_repeats,
    relative_spread,
    repeats_needed,
)


def test_permutation_minimum_follows_the_binomial_coefficient():
    # 2 / C(6, 3) = 0.1 > 0.05 but 2 / C(8, 4) = 0.029: four runs a side are the minimum at alpha 0.05.
    assert minimum_permutation_repeats(0.05) == 4
    assert minimum_permutation_repeats(0.2) == 3


def test_clear_shift_is_significant_and_same_distribution_is_not():
    rng = np.random.default_rng(1)
    baseline = 100 + rng.normal(0, 1, size=8)
    slower = 120 + rng.normal(0, 1, size=8)
    shifted = compare_samples(baseline, slower, n_resamples=2000)
    assert shifted.test == "permutation"
    assert shifted.p_value < 0.01
    assert shifted.relative_change == pytest.approx(0.2, abs=0.02)
    assert shifted.change_low < 0.2 < shifted.change_high
    same = compare_samples(baseline, 100 + rng.normal(0, 1, size=8), n_resamples=2000)
    assert same.p_value > 0.01


def test_one_run_a_side_needs_calibration():
    untested = compare_samples([10.0], [12.0])
    assert untested.test == "none" and math.isnan(untested.p_value)
    calibrated = compare_samples([10.0], [12.0], calibrated_cv=0.02)
    # z = 0.2 / (0.02 * sqrt(2)) = 7.07: far beyond any noise.
    assert calibrated.test == "calibrated-z" and calibrated.p_value < 1e-6
    noisy = compare_samples([10.0], [10.3], calibrated_cv=0.05)
    assert noisy.p_value > 0.5


def test_identical_deterministic_values_are_not_a_change():
    result = compare_samples([0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5])
    assert result.relative_change == 0 and result.p_value == 1.0


def test_repeats_needed_grows_with_noise_and_shrinks_with_effect():
    assert relative_spread([9.0, 11.0]) == pytest.approx(math.sqrt(2) / 10)
    assert repeats_needed(0.001, 0.2) == 4  # floored at the permutation minimum
    # 2 * (1.96 + 0.84)^2 * (0.1 / 0.05)^2 = 62.8 -> 63
    assert repeats_needed(0.1, 0.05) == 63
    assert repeats_needed(0.1, 0.1) < repeats_needed(0.1, 0.05)


def test_change_point_finds_a_step_and_a_slow_drift_but_not_noise():
    rng = np.random.default_rng(0)
    flat = 100 + rng.normal(0, 1, size=30)
    assert detect_change_points(flat).indices == []
    step = np.concatenate([100 + rng.normal(0, 1, 15), 110 + rng.normal(0, 1, 15)])
    found = detect_change_points(step)
    assert found.indices == [15]
    assert found.total_relative_shift == pytest.approx(0.1, abs=0.02)
    # 1% a night for 30 nights: no night-to-night change beyond noise, yet the history has drifted ~30%.
    drift = 100 * (1 + 0.01 * np.arange(30)) + rng.normal(0, 1, 30)
    drifted = detect_change_points(drift)
    assert drifted.indices, "a slow drift must show up as change points"
    # The detector's penalty comes from the whole series' spread (benchmarks/changepoint), so a linear drift
    # comes out as one or two steps between segment means: about half the end-to-end drift, never nothing.
    assert drifted.total_relative_shift > 0.1


def test_short_series_have_no_change_points():
    assert detect_change_points([1.0, 2.0, 3.0]).indices == []
