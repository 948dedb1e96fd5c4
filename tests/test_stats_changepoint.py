"""The change-point detector's defaults on simulated nightly histories, its intervals, and the TCPDBench metrics.

The full measurement (500 histories per scenario, TCPD) is benchmarks/changepoint/run.py; these are the same
scenarios with fewer histories and fixed seeds, so they run in seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis.stats import ChangePoints, LevelChange, detect_change_points
from harness.analysis.stats.changepoint import annotation_covering, annotation_f1

NIGHTS = 100
HISTORIES = 60


def _quiet_share(make, seed: int) -> float:
    rng = np.random.default_rng(seed)
    return sum(not detect_change_points(make(rng)).indices for _ in range(HISTORIES)) / HISTORIES


def _gaussian(rng: np.random.Generator) -> np.ndarray:
    return 100 + rng.normal(0, 3, NIGHTS)


def _student_t3(rng: np.random.Generator) -> np.ndarray:
    return 100 + 3 * rng.standard_t(3, NIGHTS)


def _bimodal_half(rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(NIGHTS) < 0.5, 110.0, 100.0) + rng.normal(0, 1, NIGHTS)


def _bimodal_fifth(rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(NIGHTS) < 0.2, 110.0, 100.0) + rng.normal(0, 1, NIGHTS)


@pytest.mark.parametrize("make", [_gaussian, _student_t3, _bimodal_half, _bimodal_fifth])
def test_pure_noise_has_no_change_point_in_95_percent_of_histories(make):
    assert _quiet_share(make, seed=11) >= 0.95


def test_a_one_night_spike_is_never_a_change():
    rng = np.random.default_rng(12)
    for _ in range(HISTORIES):
        values = _gaussian(rng)
        nights = rng.choice(NIGHTS, size=3, replace=False)
        values[nights] *= rng.uniform(1.3, 3.0, size=3)
        found = detect_change_points(values)
        assert found.indices == [], (sorted(nights.tolist()), found.indices)
        assert set(found.outliers) >= set(nights.tolist())


def test_a_spike_next_to_a_real_step_is_not_counted_twice():
    rng = np.random.default_rng(13)
    values = np.concatenate([100 + rng.normal(0, 1, 50), 120 + rng.normal(0, 1, 50)])
    values[30] = 300
    found = detect_change_points(values)
    assert found.indices == [50]
    assert 30 in found.outliers


def test_a_10_percent_step_under_3_percent_noise_is_found_within_3_nights():
    rng = np.random.default_rng(14)
    for _ in range(HISTORIES):
        at = int(rng.integers(20, 81))
        values = _gaussian(rng)
        values[at:] += 10
        found = detect_change_points(values).indices
        assert any(abs(i - at) <= 3 for i in found), (at, found)


def test_a_5_percent_step_is_found_within_10_nights_in_80_percent_of_histories():
    rng = np.random.default_rng(15)
    hits = 0
    for _ in range(HISTORIES):
        at = int(rng.integers(20, 81))
        values = _gaussian(rng)
        values[at:] += 5
        hits += any(abs(i - at) <= 10 for i in detect_change_points(values).indices)
    assert hits / HISTORIES >= 0.8


def test_smooth_and_trending_series_are_not_cut_into_dozens_of_segments():
    nights = np.arange(365, dtype=float)
    # A smooth S-curve with tiny noise: night-to-night differences say nothing about the level's spread.
    smooth = 100 + 30 / (1 + np.exp(-(nights - 180) / 40)) + np.random.default_rng(16).normal(0, 0.05, 365)
    assert len(detect_change_points(smooth).indices) <= 4
    drift = 100 * (1 + 0.002 * nights) + np.random.default_rng(17).normal(0, 1, 365)
    found = detect_change_points(drift)
    assert 1 <= len(found.indices) <= 4, "a drift shows up, as a few steps"
    assert found.total_relative_shift > 0.3


def test_each_change_says_its_size_with_an_interval_that_holds_the_true_step():
    rng = np.random.default_rng(18)
    covered = 0
    for _ in range(HISTORIES):
        values = _gaussian(rng)
        values[50:] *= 1.10
        found = detect_change_points(values)
        assert [c.index for c in found.changes] == found.indices
        (change,) = found.changes
        assert change.low < change.relative < change.high
        assert change.relative == pytest.approx((change.after - change.before) / abs(change.before))
        covered += change.low <= 0.10 <= change.high
    assert covered / HISTORIES >= 0.9


def test_level_change_of_a_known_step():
    values = np.array([10.0, 11.0, 9.0, 10.0, 10.0, 10.0, 10.0, 10.0, 20.0, 21.0, 19.0, 20.0, 20.0, 20.0, 20.0, 20.0])
    found = detect_change_points(values)
    assert found.indices == [8]
    change = found.changes[0]
    assert isinstance(change, LevelChange)
    assert (change.before, change.after, change.relative) == (10.0, 20.0, 1.0)
    assert 0.85 < change.low < 1.0 < change.high < 1.2
    data = found.to_dict()
    assert data["changes"] == [
        {"index": 8, "before": 10.0, "after": 20.0, "relative": 1.0, "low": change.low, "high": change.high}
    ]
    assert data["total_relative_shift"] == 1.0
    assert set(data) >= {"indices", "segments", "noise", "penalty", "changes", "outliers", "total_relative_shift"}


def test_missing_values_are_left_out_and_positions_refer_to_the_series_as_given():
    rng = np.random.default_rng(19)
    values = np.concatenate([100 + rng.normal(0, 1, 40), 110 + rng.normal(0, 1, 40)])
    values[[5, 20, 60]] = np.nan
    found = detect_change_points(values)
    assert found.indices == [40]
    assert found.segments[0].start == 0 and found.segments[-1].end == 80
    assert found.changes[0].index == 40


def test_short_and_constant_series():
    assert detect_change_points([1.0, 2.0, 3.0]).indices == []
    assert detect_change_points([]).segments == []
    constant = detect_change_points([5.0] * 20)
    assert constant.indices == [] and constant.segments[0].mean == 5.0
    assert ChangePoints().changes == []


# --- TCPDBench's metrics: the examples documented in its analysis/scripts/metrics.py, and hand-computed ones ---


def test_f1_matches_tcpdbench_examples():
    assert annotation_f1({"1": [10, 20], "2": [11, 20], "3": [10], "4": [0, 5]}, [10, 20]) == 1.0
    assert annotation_f1({"1": [], "2": [10], "3": [50]}, [10]) == pytest.approx(0.9090909090909091)
    assert annotation_f1({"1": [], "2": [10], "3": [50]}, []) == pytest.approx(0.8)


def test_f1_by_hand():
    # One annotator at 30; predictions 33 (within the margin of 5) and 60. With 0 added to both sets:
    # precision = |{0, 30}| / |{0, 33, 60}| = 2/3, recall = |{0, 30}| / |{0, 30}| = 1, F1 = 2 (2/3) / (5/3) = 0.8.
    assert annotation_f1({"a": [30]}, [33, 60]) == pytest.approx(0.8)
    # 36 is 6 away: outside the margin. precision 1/2, recall 1/2, F1 1/2.
    assert annotation_f1({"a": [30]}, [36]) == pytest.approx(0.5)
    # One prediction cannot match two annotated points: precision 2/2, recall (0 and 30 of 0, 30, 32) 2/3.
    assert annotation_f1({"a": [30, 32]}, [31]) == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))


def test_covering_matches_tcpdbench_examples():
    assert annotation_covering({"1": [10, 20], "2": [10], "3": [0, 5]}, [10, 20], 45) == pytest.approx(
        0.7962962962962963
    )
    assert annotation_covering({"1": [], "2": [10], "3": [40]}, [10], 45) == pytest.approx(0.7954144620811286)
    assert annotation_covering({"1": [], "2": [10], "3": [40]}, [], 45) == pytest.approx(0.8189300411522634)


def test_covering_by_hand():
    # Truth [0, 5) [5, 10); prediction [0, 4) [4, 10). Segment [0, 5): best Jaccard 4/5; [5, 10): 5/6.
    # Covering = (5 * 4/5 + 5 * 5/6) / 10 = (4 + 25/6) / 10.
    assert annotation_covering({"a": [5]}, [4], 10) == pytest.approx((4 + 25 / 6) / 10)
    assert annotation_covering({"a": [5]}, [5], 10) == 1.0
    assert math.isclose(annotation_covering({"a": []}, [5], 10), 0.5)


def test_the_final_search_is_binary_segmentation_by_default_and_pelt_on_request():
    import numpy as np

    rng = np.random.default_rng(11)
    step = np.concatenate([100 + rng.normal(0, 3, 50), 110 + rng.normal(0, 3, 50)])
    assert detect_change_points(step).indices == detect_change_points(step, search="pelt").indices
    assert abs(detect_change_points(step).indices[0] - 50) <= 3
    with pytest.raises(ValueError, match="search must be one of binseg, pelt"):
        detect_change_points(step, search="e-divisive")
