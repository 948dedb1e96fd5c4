"""The ranking rules on tiny hand-checkable inputs, and on a real MLflow store through `harness report`."""

from __future__ import annotations

import math

import click
import numpy as np
import pytest
from click.testing import CliRunner

from harness.analysis.ranking import POOLED, describe_change, rank_metric
from harness.analysis.stability import stability_warnings
from harness.analysis.stats import BootstrapConfig
from harness.cli.reporting import COMMANDS
from harness.tracking.writer import CellToWrite, write_suite_run

CONFIG = BootstrapConfig(n_resamples=300)


def test_identical_scores_share_rank_one_and_are_marked_tied():
    table = {name: {"env": [1.0, 1.0, 1.0]} for name in ("a", "b", "c")}
    (ranking,) = rank_metric(table, True, CONFIG)
    assert [row.rank for row in ranking.rows] == [1, 1, 1]
    assert all(row.tied and row.best for row in ranking.rows)
    assert [row.rank_label for row in ranking.rows] == ["=1", "=1", "=1"]


def test_overlapping_intervals_tie_separated_ones_get_competition_ranks():
    spread = np.array([-1.5, -1.0, -0.5, 0.0, 0.0, 0.5, 1.0, 1.5])
    table = {
        "leader": {"env": list(10 + spread)},
        "close": {"env": list(9.8 + spread)},
        "far": {"env": list(0 + spread)},
    }
    (ranking,) = rank_metric(table, True, CONFIG)
    ranks = {row.algorithm: (row.rank, row.tied) for row in ranking.rows}
    assert ranks["leader"] == (1, True) and ranks["close"] == (1, True)
    assert ranks["far"] == (3, False)
    # Lower is better turns the order around.
    (lower,) = rank_metric(table, False, CONFIG)
    assert lower.rows[0].algorithm == "far" and lower.rows[0].rank == 1 and not lower.rows[0].tied


def test_one_run_a_side_has_no_interval_and_no_probability():
    (ranking,) = rank_metric({"a": {"env": [2.0]}, "b": {"env": [1.0]}}, True, CONFIG)
    assert [row.rank for row in ranking.rows] == [1, 2]
    assert not ranking.rows[0].estimate.has_interval
    assert ranking.rows[0].caution == "n=1: no interval"
    assert ranking.probability("a", "b") is None


def test_intervals_from_fewer_than_five_runs_carry_a_caution():
    (ranking,) = rank_metric({"a": {"env": [1.0, 2.0, 3.0]}, "b": {"env": [1.0, 2, 3, 4, 5, 6]}}, True, CONFIG)
    cautions = {row.algorithm: row.caution for row in ranking.rows}
    assert "3 runs" in cautions["a"] and cautions["b"] == ""
    probability = ranking.probability("a", "b")
    assert probability is not None and probability.has_interval


def test_metrics_are_ranked_per_environment_and_pooled_only_when_comparable():
    table = {"a": {"x": [1.0, 2.0], "y": [5.0, 6.0]}, "b": {"x": [3.0, 4.0], "y": [1.0, 2.0]}}
    per_env = rank_metric(table, True, CONFIG)
    assert [r.group for r in per_env] == ["x", "y"]
    assert per_env[0].rows[0].algorithm == "b" and per_env[1].rows[0].algorithm == "a"
    pooled = rank_metric(table, True, CONFIG, comparable_across_tasks=True)
    assert [r.group for r in pooled] == [POOLED, "x", "y"]
    # An algorithm missing an environment is left out of the pooled ranking, not ranked on its easy tasks.
    partial = rank_metric({**table, "c": {"x": [9.0, 9.5]}}, True, CONFIG, comparable_across_tasks=True)
    assert {row.algorithm for row in partial[0].rows} == {"a", "b"}


def test_probability_matrix_is_antisymmetric():
    table = {"a": {"e": [3.0, 4.0, 5.0]}, "b": {"e": [1.0, 2.0, 3.5]}}
    (ranking,) = rank_metric(table, True, CONFIG)
    ab, ba = ranking.probability("a", "b"), ranking.probability("b", "a")
    assert ab is not None and ba is not None
    assert math.isclose(ab.value + ba.value, 1.0)
    assert math.isclose(ab.low, 1 - ba.high) and math.isclose(ab.high, 1 - ba.low)


def test_changes_near_zero_are_absolute_and_every_change_has_a_direction():
    near = describe_change(0.0, -2.6e-5, higher_is_better=True)
    assert near["relative"] is None and "absolute" in near["text"] and near["direction"] == "worse"
    assert "+100%" not in near["text"]
    far = describe_change(10.0, 9.0, higher_is_better=False, unit="s")
    assert far["relative"] == pytest.approx(-0.1) and far["text"] == "-10.0% better"
    assert describe_change(1.0, 1.0, True)["direction"] == "same"


def test_stability_warnings_follow_pyperf():
    assert stability_warnings([1.0, 1.01, 0.99, 1.0], "s") == []
    noisy = stability_warnings([1.0, 1.5, 0.7, 1.2], "s")
    assert any("coefficient of variation" in w for w in noisy)
    assert any("under 1 ms" in w for w in stability_warnings([0.2, 0.21], "ms"))
    assert any("max is" in w for w in stability_warnings([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0], "1"))
    assert stability_warnings([], "s") == []


def harness_report(uri: str, *args: str):
    """`harness report ARGS` on the store at ``uri`` through the real CLI commands (100 bootstrap resamples)."""
    group = click.Group("harness")
    for command in COMMANDS:
        group.add_command(command)
    return CliRunner().invoke(group, ["report", *args, "--tracking-uri", uri, "--bootstrap-resamples", "100"])


def test_report_ranks_timings_per_environment_not_across_tasks(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    metrics = {"wall_time_s": {"unit": "s", "direction": "lower", "threshold": 0.1},
               "score": {"unit": "1", "direction": "higher", "threshold": 0.05}}  # fmt: skip
    cells = [
        CellToWrite(algorithm, environment, 0, metrics={"wall_time_s": t, "score": 1.0})
        for algorithm, environment, t in (("softmax-fused", "softmax", 0.5), ("rtn", "quantizer", 9.0),
                                          ("softmax-naive", "softmax", 1.0))
    ]  # fmt: skip
    write_suite_run(MlflowClient(tracking_uri=uri), suite="mixed", profile="smoke", metrics=metrics, cells=cells,
                    machine={"fingerprint": "f"})  # fmt: skip
    result = harness_report(uri, "mixed", "--out", str(tmp_path / "out"), "--format", "md")
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "out" / "report.md").read_text()
    wall = markdown.split("## wall\\_time\\_s")[1].split("## score")[0]
    assert "**quantizer**" in wall and "**softmax**" in wall and "pooled" not in wall
    # The three identical scores (one run each) tie at rank 1 in their environments; no probability from n=1.
    assert "| =1 | softmax-fused |" in markdown and "| =1 | softmax-naive |" in markdown
    assert "beats" not in markdown


def test_compare_changes_say_their_direction_and_are_absolute_near_zero():
    from harness.analysis.compare import CaseVerdict
    from harness.analysis.stats import ChangeTest
    from harness.report.formats import format_change

    def row(base: float, cand: float, direction: str) -> CaseVerdict:
        change = (cand - base) / abs(base) if base else float("nan")
        test = ChangeTest(base, cand, change, float("nan"), float("nan"), float("nan"), "none", 1, 1)
        return CaseVerdict("m", "a", "e", "s", direction, 0.05, "spec", "unchanged", test=test)

    assert format_change(row(0.0, -2.6e-5, "lower")) == "-2.6e-05 s (absolute) better"
    assert format_change(row(1.0, 1.2, "lower")) == "+20.0% worse"
    assert format_change(row(1.0, 1.2, "higher")) == "+20.0% better"


def test_pareto_front_keeps_the_undominated_points_in_each_direction():
    from harness.report.plots import pareto_front

    points = [(2.0, 0.80), (3.0, 0.90), (4.0, 0.85), (8.0, 0.95), (2.5, 0.70)]
    # Fewer bits (lower) and more accuracy (higher) are better.
    assert pareto_front(points, x_higher=False, y_higher=True) == [(2.0, 0.80), (3.0, 0.90), (8.0, 0.95)]


def test_roofline_only_where_a_ceiling_was_measured_and_stability_on_the_page(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    metrics = {"kernel_gbps": {"unit": "GB/s", "direction": "higher", "threshold": 0.05}}
    cells = [CellToWrite("k", "rows", seed, metrics={"kernel_gbps": v}) for seed, v in enumerate([10, 16, 7, 12])]
    write_suite_run(MlflowClient(tracking_uri=uri), suite="noroof", profile="smoke", metrics=metrics, cells=cells,
                    machine={"fingerprint": "f"})  # fmt: skip
    result = harness_report(uri, "noroof", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    html = (tmp_path / "out" / "index.html").read_text()
    assert 'id="roofline"' not in html
    assert "coefficient of variation" in html  # a 30% spread is flagged on the page


def test_a_leader_just_below_zero_against_zero_is_an_absolute_difference():
    # gap_to_fp of the smoke report: -0.0047 (leader) against 0, others around 0.12.
    change = describe_change(-0.004739, 0.0, higher_is_better=False, scale=0.1209)
    assert change["relative"] is None and change["text"] == "+0.004739 (absolute; base ≈ 0) worse"
    # Opposite signs never give a relative change; a base small against the metric's scale neither.
    assert describe_change(-1.0, 1.0, True)["relative"] is None
    assert describe_change(0.001, 0.5, True, scale=1.0)["relative"] is None
    assert describe_change(0.4, 0.5, True, scale=1.0)["relative"] == pytest.approx(0.25)
