"""Verdicts that can be trusted: paired tests, Datadog's interval rule, sane calibrations, hardware-aware refusals.

Real SQLite MLflow store, runs written in the tracker's layout; one store per module.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from harness.analysis.calibration import MAX_SANE_THRESHOLD, calibrate_from_runs
from harness.analysis.stats import compare_paired
from harness.cli.reporting import COMMANDS
from harness.tracking.reader import RunStore
from harness.tracking.writer import CellToWrite, write_suite_run

MACHINE = {"fingerprint": "fp-a", "cpu": "CPU A", "gpu": "none"}
OTHER_MACHINE = {**MACHINE, "fingerprint": "fp-b", "cpu": "CPU B"}
METRICS = {
    "work_time_s": {"unit": "s", "direction": "lower", "threshold": 0.05},
    "score": {"unit": "1", "direction": "higher", "threshold": 0.05},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp("trust")
    return f"sqlite:///{folder / 'mlflow.db'}", folder


def invoke(store, *args: str) -> tuple[int, str]:
    group = click.Group("harness")
    for command in COMMANDS:
        group.add_command(command)
    uri, folder = store
    result = CliRunner(env={"COLUMNS": "300"}).invoke(
        group, [*args, "--tracking-uri", uri, "--results-dir", str(folder)]
    )
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def write(store, suite: str, series: dict[str, list[float]], machine=None, seeds=None) -> str:
    from mlflow.tracking import MlflowClient

    names = list(series)
    n = len(series[names[0]])
    cells = [
        CellToWrite("algo", "env", (seeds or list(range(n)))[i], metrics={name: series[name][i] for name in names})
        for i in range(n)
    ]
    metrics = {name: METRICS[name] for name in names}
    return write_suite_run(MlflowClient(tracking_uri=store[0]), suite=suite, profile="smoke", metrics=metrics,
                           cells=cells, machine=machine or MACHINE, git_commit="0123456789ab")  # fmt: skip


def test_paired_test_sees_a_consistent_change_that_seed_noise_hides():
    # Seeds differ a lot from each other; every seed gets 8% slower. Unpaired, that drowns in the seed spread.
    seeds = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    test = compare_paired(seeds, seeds * 1.08 + np.array([0.001, -0.001, 0.002, 0.0, -0.002, 0.001]))
    assert test.test == "paired-permutation" and test.p_value < 0.05
    assert test.interval_excludes_zero and test.change_low > 0
    small = compare_paired([1.0, 2.0, 3.0], [1.1, 2.2, 3.3])
    assert small.test == "paired-t" and small.has_interval


def test_compare_pairs_same_seeds_and_prints_the_interval_of_the_change(store):
    rng = np.random.default_rng(0)
    levels = np.array([1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    base = write(store, "t-pair", {"work_time_s": list(levels)})
    slow = write(store, "t-pair", {"work_time_s": list(levels * 1.2 + rng.normal(0, 0.005, 6))})
    code, output = invoke(store, "compare", base, slow, "--json")
    row = json.loads(output)["rows"][0]
    assert code == 1 and row["verdict"] == "regressed" and row["test"] == "paired-permutation"
    assert row["change_low"] > 0.1 and row["change_high"] < 0.3
    code, text = invoke(store, "compare", base, slow)
    assert "[+" in text and "paired" in text
    # Other seeds: no pairing, the two samples are compared.
    other = write(store, "t-pair", {"work_time_s": list(levels * 1.2)}, seeds=[10, 11, 12, 13, 14, 15])
    _, output = invoke(store, "compare", base, other, "--json")
    assert json.loads(output)["rows"][0]["test"] == "permutation"


def test_datadog_rule_calls_a_regression_when_the_interval_excludes_zero(store):
    from harness.analysis.compare import _verdict
    from harness.analysis.stats import ChangeTest

    common = dict(metric="m", algorithm="a", environment="e", unit="s", direction="lower", threshold=0.05,
                  threshold_source="spec")  # fmt: skip
    # 3 a side: the permutation test cannot reach p < 0.05, but the interval of a +30% change excludes 0.
    test = ChangeTest(1.0, 1.3, 0.3, 0.2, 0.4, 0.1, "permutation", 3, 3)
    row = _verdict(common, test, 0.05, 0.05, False, 4, 0.02)
    assert row.verdict == "regressed" and "Datadog" in row.note
    # Beyond the threshold but the interval straddles 0 and no significance: not a regression.
    loose = ChangeTest(1.0, 1.3, 0.3, -0.1, 0.6, 0.3, "permutation", 3, 3)
    assert _verdict(common, loose, 0.05, 0.05, False, 4, 0.3).verdict == "inconclusive"
    # Within the threshold: never a regression, whatever the interval.
    tiny = ChangeTest(1.0, 1.02, 0.02, 0.01, 0.03, 0.01, "permutation", 8, 8)
    assert _verdict(common, tiny, 0.05, 0.05, False, 4, 0.01).verdict == "unchanged"


def test_calibrate_refuses_a_threshold_that_would_disable_detection(store):
    rng = np.random.default_rng(3)
    runs = [write(store, "t-noisy", {"work_time_s": list(1 + rng.normal(0, 0.3, 4)),
                                      "score": list(0.5 + rng.normal(0, 0.001, 4))}) for _ in range(3)]  # fmt: skip
    reader = RunStore(store[0])
    calibration = calibrate_from_runs([reader.load(r) for r in runs])
    noisy, quiet = calibration.metrics["work_time_s"], calibration.metrics["score"]
    assert noisy.too_noisy and noisy.threshold == noisy.configured_threshold <= MAX_SANE_THRESHOLD
    assert calibration.threshold("work_time_s", "algo", "env") is None and noisy.repeats_needed > 10
    assert "work" not in "".join(calibration.too_noisy).replace("work_time_s", "") and not quiet.too_noisy
    code, output = invoke(store, "calibrate", "t-noisy", "--profile", "smoke", "--from-existing", "--repeats", "3")
    assert code == 0, output
    assert "work_time_s" in output and "not stored (too noisy)" in output and "repeats a side" in output
    stored = json.loads((store[1] / "calibration" / "t-noisy-smoke.json").read_text())
    assert stored["metrics"]["work_time_s"]["threshold"] <= MAX_SANE_THRESHOLD
    assert stored["metrics"]["work_time_s"]["too_noisy"] is True


def _write_cases(store, suite: str, levels: dict[str, list[float]]) -> str:
    """A run of one algorithm in several environments: ``levels`` maps environment -> work_time_s per seed."""
    from mlflow.tracking import MlflowClient

    cells = [
        CellToWrite("algo", environment, seed, metrics={"work_time_s": value})
        for environment, values in levels.items()
        for seed, value in enumerate(values)
    ]
    return write_suite_run(MlflowClient(tracking_uri=store[0]), suite=suite, profile="smoke",
                           metrics={"work_time_s": METRICS["work_time_s"]}, cells=cells, machine=MACHINE,
                           git_commit="0123456789ab")  # fmt: skip


def test_calibration_is_per_case_so_one_noisy_case_does_not_blind_the_others(store):
    from harness.analysis.compare import compare_runs

    rng = np.random.default_rng(5)
    # "quiet" moves 1% run to run; "noisy" moves 25% (the case): its threshold is its own.
    levels = [{"quiet": list(1 + rng.normal(0, 0.01, 4)), "noisy": list(1 + rng.normal(0, 0.25, 4))} for _ in range(4)]
    runs = [_write_cases(store, "t-cases", level) for level in levels]
    reader = RunStore(store[0])
    calibration = calibrate_from_runs([reader.load(r) for r in runs])
    entry = calibration.metrics["work_time_s"]
    assert entry.too_noisy_cases == ["algo/noisy"] and "algo/quiet" in entry.case_thresholds
    assert calibration.threshold("work_time_s", "algo", "noisy") is None
    quiet_threshold = calibration.threshold("work_time_s", "algo", "quiet")
    assert quiet_threshold is not None and quiet_threshold < 0.15
    # A 20% slowdown of the quiet case is caught with the calibration in place.
    base = _write_cases(store, "t-cases", {"quiet": [1.0, 1.01, 0.99, 1.0, 1.0, 1.01], "noisy": [1.0] * 6})
    slow = _write_cases(store, "t-cases", {"quiet": [1.2, 1.21, 1.19, 1.2, 1.2, 1.21], "noisy": [1.0] * 6})
    comparison = compare_runs(reader.load(base), reader.load(slow), calibration=calibration)
    rows = {row.environment: row for row in comparison.rows}
    assert rows["quiet"].verdict == "regressed" and rows["quiet"].threshold == pytest.approx(quiet_threshold)
    assert rows["noisy"].threshold_source != "calibration"


def test_a_version_1_calibration_file_is_read_with_per_case_thresholds():
    from harness.analysis.calibration import Calibration

    old = {"suite": "s", "profile": "p", "fingerprint": "f", "runs": ["a", "b"], "alpha": 0.05, "created": 0.0,
           "version": 1, "metrics": {"m": {"cv": 0.2, "threshold": 0.05, "configured_threshold": 0.05, "effect": 0.05,
                                           "repeats_needed": 30, "too_noisy": True,
                                           "cases": {"a/quiet": 0.01, "a/noisy": 0.3}}}}  # fmt: skip
    calibration = Calibration.from_dict(old, source="old.json")
    assert calibration.threshold("m", "a", "quiet") == pytest.approx(0.05)
    assert calibration.threshold("m", "a", "noisy") is None and calibration.too_noisy == ["m"]


def test_different_hardware_is_refused_only_for_hardware_dependent_metrics(store):
    base = write(store, "t-hw", {"work_time_s": [1.0, 1.01, 0.99, 1.0], "score": [0.5, 0.5, 0.5, 0.5]})
    other = write(store, "t-hw", {"work_time_s": [2.0, 2.01, 1.99, 2.0], "score": [0.5, 0.5, 0.5, 0.5]},
                  machine=OTHER_MACHINE)  # fmt: skip
    code, output = invoke(store, "compare", base, other)
    assert code == 2 and "work_time_s" in output and "--allow-different-hardware" in output
    # The score does not depend on the machine: compared without the flag.
    code, output = invoke(store, "compare", base, other, "--metric", "score", "--json")
    assert code == 0, output
    # Allowed: the timing rows say the machine differs.
    code, output = invoke(store, "compare", base, other, "--allow-different-hardware", "--json")
    rows = {row["metric"]: row for row in json.loads(output)["rows"]}
    assert "different hardware" in rows["work_time_s"]["note"] and "different hardware" not in rows["score"]["note"]
    # report --vs annotates instead of refusing.
    out = store[1] / "vs-report"
    code, output = invoke(store, "report", other, "--vs", base, "--out", str(out), "--bootstrap-resamples", "100")
    assert code == 0, output
    html = (out / "index.html").read_text()
    assert "Different hardware or software" in html and "hardware-dependent metrics (work_time_s)" in html


def test_stability_warnings_appear_in_compare(store):
    base = write(store, "t-stab", {"work_time_s": [1.0, 1.6, 0.7, 1.3]})
    cand = write(store, "t-stab", {"work_time_s": [1.0, 1.5, 0.8, 1.2]})
    _, output = invoke(store, "compare", base, cand, "--json")
    row = json.loads(output)["rows"][0]
    assert any("coefficient of variation" in w for w in row["warnings"])
    _, text = invoke(store, "compare", base, cand)
    assert "unstable" in text


def test_nightly_and_calibrate_take_the_runner_and_hardware_flags(store):
    for command in ("nightly", "calibrate"):
        _, output = invoke(store, command, "--help")
        assert "--jobs" in output and "--executor" in output
    _, output = invoke(store, "nightly", "--help")
    assert "--allow-different-hardware" in output
