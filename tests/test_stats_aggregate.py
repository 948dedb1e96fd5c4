"""Aggregates, stratified bootstrap intervals, profiles, probability of improvement on hand-checkable data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis.stats import (
    BootstrapConfig,
    aggregate_all,
    aggregate_estimate,
    interquartile_mean,
    performance_profile,
    probability_of_improvement,
)

CONFIG = BootstrapConfig(n_resamples=500, seed=3)


def test_iqm_drops_the_outer_quartiles():
    # 8 runs: the middle 4 are 3, 4, 5, 6 -> IQM 4.5, untouched by the outliers -100 and 1000.
    scores = np.array([-100, 2, 3, 4, 5, 6, 7, 1000], dtype=float)
    assert interquartile_mean(scores) == pytest.approx(4.5)


def test_aggregates_pool_runs_over_tasks():
    tasks = [[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]]
    estimates = aggregate_all(tasks, CONFIG)
    assert estimates["mean"].value == pytest.approx(13.75)
    assert estimates["median"].value == pytest.approx(7.0)
    assert estimates["iqm"].value == pytest.approx(np.mean([3, 4, 10, 20]))
    for estimate in estimates.values():
        assert estimate.n_runs == 8 and estimate.n_tasks == 2
        assert estimate.low <= estimate.value <= estimate.high


def test_stratified_bootstrap_keeps_every_task_in_every_replicate():
    # Task A's runs are all 0, task B's all 100: any replicate that kept both tasks has mean exactly 50.
    # An unstratified bootstrap would produce means anywhere from 0 to 100.
    tasks = [[0.0, 0.0, 0.0], [100.0, 100.0, 100.0]]
    estimate = aggregate_estimate(tasks, "mean", CONFIG)
    assert (estimate.low, estimate.value, estimate.high) == (50.0, 50.0, 50.0)


def test_interval_is_reproducible_from_the_recorded_seed_and_narrows_with_more_runs():
    rng = np.random.default_rng(0)
    few = [rng.normal(size=4), rng.normal(size=4)]
    first = aggregate_estimate(few, "iqm", CONFIG)
    again = aggregate_estimate(few, "iqm", CONFIG)
    assert (first.low, first.high) == (again.low, again.high)
    many = [rng.normal(size=200), rng.normal(size=200)]
    wide = first.high - first.low
    narrow = aggregate_estimate(many, "iqm", CONFIG)
    assert narrow.high - narrow.low < wide


def test_single_runs_give_a_point_without_an_interval():
    estimate = aggregate_estimate([[3.0], [5.0]], "mean", CONFIG)
    assert estimate.value == 4.0
    assert not estimate.has_interval
    assert estimate.to_dict()["low"] is None


def test_tasks_with_one_run_stay_fixed_while_others_resample():
    estimate = aggregate_estimate([[10.0], [0.0, 2.0]], "mean", CONFIG)
    # Replicates resample task 2 only: its mean ranges 0..2, so the pooled mean ranges (10+0)/3..(10+4)/3.
    assert 10 / 3 - 1e-9 <= estimate.low <= estimate.value <= estimate.high <= 14 / 3 + 1e-9


def test_performance_profile_counts_runs_above_each_threshold():
    tasks = [[0.1, 0.5, 0.9, 0.9], [0.2, 0.2, 0.6, 1.0]]
    profile = performance_profile(tasks, [0.0, 0.5, 0.95], CONFIG)
    # Task 1 above 0.5: 2/4; task 2: 2/4 -> 0.5. Above 0.95: 0 and 1/4 -> 0.125.
    assert profile.fraction.tolist() == pytest.approx([1.0, 0.5, 0.125])
    assert np.all(profile.low <= profile.fraction + 1e-12)
    assert np.all(profile.high >= profile.fraction - 1e-12)
    lower_better = performance_profile(tasks, [0.5], CONFIG, higher_is_better=False)
    assert lower_better.fraction.tolist() == pytest.approx([0.375])


def test_probability_of_improvement_is_the_normalized_mann_whitney_u():
    x = {"a": [3.0, 4.0], "b": [1.0, 1.0]}
    y = {"a": [1.0, 2.0], "b": [1.0, 2.0]}
    estimate = probability_of_improvement(x, y, CONFIG)
    # Task a: X always wins -> 1. Task b: pairs (1,1) tie x2, (1,2) lose x2 -> (0.5*2)/4 = 0.25. Mean 0.625.
    assert estimate.value == pytest.approx(0.625)
    assert 0.0 <= estimate.low <= estimate.value <= estimate.high <= 1.0
    reversed_direction = probability_of_improvement(x, y, CONFIG, higher_is_better=False)
    assert reversed_direction.value == pytest.approx(1 - 0.625)


def test_probability_of_improvement_without_shared_tasks_is_nan():
    estimate = probability_of_improvement({"a": [1.0]}, {"b": [2.0]}, CONFIG)
    assert math.isnan(estimate.value)
