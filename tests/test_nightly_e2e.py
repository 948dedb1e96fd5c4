"""End to end through the real `harness` command: run a timed suite nightly, promote, catch a slowdown.

The suite's cells sleep (fixture plugin, loaded with -p) and are timed by core-metrics' wall_time_s, so the
timing is real but insensitive to how busy this shared machine's CPUs are. Night 1 has no baseline and is
promoted; night 2 runs the same cells again and must not be flagged; night 3 injects a 20% slowdown
(--set sleep.seconds) and must be flagged, exit 1 and not be promoted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import BadInput

TESTS = Path(__file__).parent
SUITE = """
name = "toy-nightly"
description = "sleeping cells timed by wall_time_s"
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
metrics = ["wall_time_s", "score"]
algorithms = [{ name = "sleep", params = { seconds = 0.2 } }]
environments = ["constant"]

[profiles.smoke]
"""


def harness(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS / "plugins"), env.get("PYTHONPATH")]))
    env.pop("HARNESS_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "harness.cli.main", "-p", "fixture_plugin", "--results-dir", "results", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )


@pytest.mark.slow
def test_nightly_promotes_ignores_a_rerun_and_flags_a_20_percent_slowdown(tmp_path: Path):
    (tmp_path / "toy.toml").write_text(SUITE)
    first = harness(tmp_path, "nightly", "toy.toml", "--promote")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "no baseline yet" in first.stdout and "promoted" in first.stdout

    same = harness(tmp_path, "nightly", "toy.toml", "--promote")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "no alert" in same.stdout

    slow = harness(tmp_path, "nightly", "toy.toml", "--promote", "--set", "sleep.seconds=0.24")
    assert slow.returncode == 1, slow.stdout + slow.stderr
    assert "NEW REGRESSION: wall_time_s" in slow.stdout
    assert "not promoted" in slow.stdout

    report = tmp_path / "results" / "reports" / "nightly-toy-nightly-smoke"
    html = (report / "index.html").read_text()
    assert "Comparison with run" in html and "regressed" in html and "Trends across runs" in html
    assert "regressed" in (report / "report.md").read_text()

    # The baseline is still night 2; compare it with the slow night from MLflow directly.
    compared = harness(tmp_path, "compare", "baseline", "latest", "--suite", "toy-nightly", "--json")
    assert compared.returncode == 1, compared.stderr
    rows = {row["metric"]: row for row in json.loads(compared.stdout)["rows"]}
    assert rows["wall_time_s"]["verdict"] == "regressed"
    assert rows["wall_time_s"]["relative_change"] == pytest.approx(0.2, abs=0.08)
    assert rows["score"]["verdict"] == "unchanged"


def test_calibrate_reruns_the_suite_and_stores_thresholds_that_compare_uses(tmp_path: Path):
    (tmp_path / "toy.toml").write_text(SUITE.replace("seeds = [0, 1, 2, 3, 4, 5, 6, 7]", "seeds = [0, 1, 2]"))
    calibrated = harness(tmp_path, "calibrate", "toy.toml", "--repeats", "2", "--json")
    assert calibrated.returncode == 0, calibrated.stdout + calibrated.stderr
    assert calibrated.stderr.count("calibration run") == 2  # really ran the suite twice
    calibration = json.loads(calibrated.stdout)
    wall = calibration["metrics"]["wall_time_s"]
    assert 0 <= wall["cv"] < 0.5 and wall["threshold"] >= wall["configured_threshold"] and wall["repeats_needed"] >= 1
    stored = list((tmp_path / "results" / "calibration").glob("toy-nightly-*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["metrics"].keys() == calibration["metrics"].keys()

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("toy-nightly")
    suite_runs = client.search_runs([experiment.experiment_id], "tags.`harness.kind` = 'suite-run'")
    assert len(suite_runs) == 2
    kinds = client.search_runs([experiment.experiment_id], "tags.`harness.kind` = 'calibration'")
    assert len(kinds) == 1
    # The repeats are calibration runs: never nights of the history, never a baseline.
    from harness.tracking.reader import RunStore

    store = RunStore(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    assert store.history("toy-nightly", "smoke") == []
    repeat = store.load(suite_runs[0].info.run_id)
    assert repeat.purpose == "calibration" and repeat.history_problem == "a calibration repeat"
    with pytest.raises(BadInput, match="has only 0 finished run"):  # a repeat is never `latest`
        store.resolve("latest", "toy-nightly")

    # The two calibration runs are the same code: compare must not flag them, and judges with the calibration.
    baseline, candidate = (run.info.run_id for run in sorted(suite_runs, key=lambda r: r.info.start_time))
    compared = harness(tmp_path, "compare", baseline, candidate, "--json")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    rows = {row["metric"]: row for row in json.loads(compared.stdout)["rows"]}
    assert rows["wall_time_s"]["verdict"] != "regressed"
    assert rows["wall_time_s"]["threshold"] == pytest.approx(wall["threshold"])


def test_nightly_never_compares_timings_with_another_machines_baseline_unless_allowed(tmp_path: Path):
    """A baseline from another machine is not this machine's: the night starts this machine's history (exit 0,
    no refusal after a full run); --allow-different-hardware compares with it anyway and says so. The nights
    run with --jobs 2 on the local pool, as a nightly job would."""
    import mlflow

    (tmp_path / "toy.toml").write_text(SUITE.replace("seeds = [0, 1, 2, 3, 4, 5, 6, 7]", "seeds = [0, 1, 2, 3]"))
    first = harness(tmp_path, "nightly", "toy.toml", "--promote", "--jobs", "2", "--executor", "local")
    assert first.returncode == 0 and "promoted" in first.stdout, first.stdout + first.stderr
    # The baseline now claims another machine: its parent run's machine tags, as another host would write them.
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("toy-nightly")
    (baseline,) = client.search_runs([experiment.experiment_id], "tags.`baseline` = 'true'")
    client.set_tag(baseline.info.run_id, "harness.fingerprint", "another-machine")
    client.set_tag(baseline.info.run_id, "harness.machine.cpu", "Another CPU")

    own = harness(tmp_path, "nightly", "toy.toml", "--jobs", "2")
    assert own.returncode == 0, own.stdout + own.stderr
    assert "other machines have theirs (another-machine (Another CPU))" in own.stderr
    assert "starts its own history" in own.stdout and "against baseline" not in own.stdout

    allowed = harness(tmp_path, "nightly", "toy.toml", "--jobs", "2", "--allow-different-hardware")
    assert allowed.returncode in (0, 1), allowed.stdout + allowed.stderr
    assert "different hardware or software" in allowed.stdout and "Another CPU" in allowed.stdout
    report = (tmp_path / "results" / "reports" / "nightly-toy-nightly-smoke" / "index.html").read_text()
    assert "Different hardware or software" in report
