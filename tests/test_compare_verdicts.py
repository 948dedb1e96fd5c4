"""`harness compare` on runs written in the tracker's layout into a real SQLite MLflow store.

One store per module (creating an MLflow database costs seconds); each test writes its own suite.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from harness.analysis.calibration import calibrate_from_runs, load_calibration
from harness.cli.reporting import COMMANDS
from harness.tracking.reader import RunStore
from harness.tracking.writer import CellToWrite, write_suite_run

MACHINE = {
    "fingerprint": "fp-same",
    "cpu": "Test CPU",
    "gpu": "none",
    "versions": {"python": "3.11.0", "torch": "2.13.0"},
}
TIMING = {"work_time_s": {"unit": "s", "direction": "lower", "threshold": 0.05, "description": "time of the work"}}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp("compare")
    return f"sqlite:///{folder / 'mlflow.db'}", folder


def cli() -> click.Group:
    group = click.Group("harness")
    for command in COMMANDS:
        group.add_command(command)
    return group


def invoke(store: tuple[str, Path], *args: str) -> tuple[int, str]:
    uri, folder = store
    result = CliRunner().invoke(cli(), [*args, "--tracking-uri", uri, "--results-dir", str(folder)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def write(store, suite: str, values: dict[tuple[str, str], list[float]], machine=None, metrics=None) -> str:
    from mlflow.tracking import MlflowClient

    cells = [
        CellToWrite(algorithm, environment, seed, metrics={"work_time_s": value})
        for (algorithm, environment), series in values.items()
        for seed, value in enumerate(series)
    ]
    return write_suite_run(
        MlflowClient(tracking_uri=store[0]),
        suite=suite,
        profile="smoke",
        metrics=metrics or TIMING,
        cells=cells,
        machine=machine or MACHINE,
        git_commit="0123456789ab",
        source="",  # as `harness run` records them: these runs can be baselines
    )


def noisy(mean: float, n: int, seed: int, spread: float = 0.01) -> list[float]:
    return list(mean * (1 + np.random.default_rng(seed).normal(0, spread, n)))


def test_same_distribution_passes_and_a_20_percent_slowdown_fails(store):
    base = write(store, "cmp-a", {("algo", "env"): noisy(1.0, 8, 0), ("algo", "env2"): noisy(2.0, 8, 1)})
    same = write(store, "cmp-a", {("algo", "env"): noisy(1.0, 8, 2), ("algo", "env2"): noisy(2.0, 8, 3)})
    slow = write(store, "cmp-a", {("algo", "env"): noisy(1.2, 8, 4), ("algo", "env2"): noisy(2.0, 8, 5)})

    code, output = invoke(store, "compare", base, same, "--json")
    assert code == 0, output
    assert {row["verdict"] for row in json.loads(output)["rows"]} == {"unchanged"}

    code, output = invoke(store, "compare", base, slow, "--json")
    assert code == 1, output
    rows = {row["environment"]: row for row in json.loads(output)["rows"]}
    assert rows["env"]["verdict"] == "regressed"
    assert rows["env"]["relative_change"] == pytest.approx(0.2, abs=0.03)
    assert rows["env"]["p_value"] < 0.01 and rows["env"]["test"] == "paired-permutation"  # same seeds: paired
    assert rows["env2"]["verdict"] == "unchanged"
    # Lower is better: the same 20% the other way is an improvement, not a regression.
    code, output = invoke(store, "compare", slow, base, "--json")
    assert code == 0 and json.loads(output)["rows"][0]["verdict"] == "improved"


def test_thresholds_come_from_spec_then_suite_then_command_line(store):
    base = write(store, "cmp-b", {("algo", "env"): noisy(1.0, 8, 0)})
    slow = write(store, "cmp-b", {("algo", "env"): noisy(1.2, 8, 1)})
    code, output = invoke(store, "compare", base, slow, "--threshold", "work_time_s=0.5", "--json")
    assert code == 0
    row = json.loads(output)["rows"][0]
    assert row["threshold"] == 0.5 and row["threshold_source"] == "command line"
    code, output = invoke(store, "compare", base, slow, "--json")
    assert json.loads(output)["rows"][0]["threshold_source"] == "metric spec"


def test_too_few_repeats_exit_3_and_say_how_many(store):
    base = write(store, "cmp-c", {("algo", "env"): [1.0, 1.1]})
    slow = write(store, "cmp-c", {("algo", "env"): [1.3, 1.15]})
    code, output = invoke(store, "compare", base, slow, "--json")
    assert code == 3, output
    data = json.loads(output)
    assert data["rows"][0]["verdict"] == "inconclusive"
    assert data["rows"][0]["repeats_needed"] >= 4
    assert "repeats" in data["summary"]
    single_base = write(store, "cmp-c2", {("algo", "env"): [1.0]})
    single_slow = write(store, "cmp-c2", {("algo", "env"): [1.3]})
    code, output = invoke(store, "compare", single_base, single_slow)
    assert code == 3 and "TOO LITTLE DATA" in output


def test_different_hardware_is_refused_unless_allowed_and_then_annotated(store):
    base = write(store, "cmp-d", {("algo", "env"): noisy(1.0, 6, 0)})
    other = write(
        store,
        "cmp-d",
        {("algo", "env"): noisy(1.0, 6, 1)},
        machine={**MACHINE, "fingerprint": "fp-other", "gpu": "NVIDIA H100"},
    )
    code, output = invoke(store, "compare", base, other)
    assert code == 2 and "--allow-different-hardware" in output and "H100" in output
    code, output = invoke(store, "compare", base, other, "--allow-different-hardware", "--json")
    assert code == 0
    assert json.loads(output)["hardware_differences"]["gpu"] == ["none", "NVIDIA H100"]


def test_markdown_and_junit_outputs_and_tag_selectors(store, tmp_path):
    base = write(store, "cmp-e", {("algo|x", "env"): noisy(1.0, 8, 0)})
    RunStore(store[0]).mark_baseline(base)
    time.sleep(0.01)
    write(store, "cmp-e", {("algo|x", "env"): noisy(1.25, 8, 1)})
    md, junit = tmp_path / "c.md", tmp_path / "c.xml"
    code, output = invoke(store, "compare", "baseline", "latest", "--suite", "cmp-e", "--markdown", str(md),
                          "--junit", str(junit))  # fmt: skip
    assert code == 1, output
    text = md.read_text()
    assert "regressed" in text and "algo\\|x" in text and "| metric |" in text
    root = ElementTree.fromstring(junit.read_text())
    assert root.get("failures") == "1"
    assert root.find("testcase/failure").get("type") == "regressed"
    code, output = invoke(store, "compare", "baseline", "nonsense=1", "--suite", "cmp-e")
    assert code == 2 and "no run tagged nonsense=1" in output


def test_calibration_raises_thresholds_to_the_noise_and_judges_single_runs(store):
    uri, folder = store
    # Five repeated runs of the same code: 1 seed each, 4% run-to-run noise.
    repeated = [write(store, "cmp-f", {("algo", "env"): noisy(1.0, 1, seed, 0.04)}) for seed in range(5)]
    reader = RunStore(uri)
    calibration = calibrate_from_runs([reader.load(r) for r in repeated])
    entry = calibration.metrics["work_time_s"]
    assert 0.005 < entry.cv < 0.1
    assert entry.threshold == pytest.approx(max(0.05, 3 * entry.cv))
    assert entry.repeats_needed >= 4
    calibration.save(folder)
    assert load_calibration(folder, "cmp-f", "smoke", "fp-same") is not None
    assert load_calibration(folder, "cmp-f", "smoke", "fp-elsewhere") is None

    # A single run with the same code is not flagged; a single run 40% slower is (calibrated z-test).
    same = write(store, "cmp-f", {("algo", "env"): noisy(1.0, 1, 10, 0.01)})
    slow = write(store, "cmp-f", {("algo", "env"): [1.4]})
    code, output = invoke(store, "compare", repeated[0], same, "--json")
    assert code == 0, output
    code, output = invoke(store, "compare", repeated[0], slow, "--json")
    row = json.loads(output)["rows"][0]
    assert code == 1 and row["test"] == "calibrated-z" and row["verdict"] == "regressed"
    # Without the calibration, one run a side cannot be judged.
    code, _ = invoke(store, "compare", repeated[0], slow, "--no-calibration")
    assert code == 3
