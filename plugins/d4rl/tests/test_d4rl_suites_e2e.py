"""The d4rl suites' smoke profiles through the real `harness` command line, a real SQLite MLflow store and the
rl plugin's algorithms on tiny generated datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HARNESS = Path(sys.executable).with_name("harness")


def run_smoke(suite: str, tmp_path: Path) -> dict:
    pytest.importorskip("harness_rl", reason="the d4rl suites run harness-rl's algorithms: pip install -e plugins/rl")
    env = {**os.environ, "D4RL_DATASET_DIR": str(tmp_path / "no-d4rl-files"), "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [
            str(HARNESS),
            "--results-dir",
            str(tmp_path / "results"),
            "run",
            str(REPO / "suites" / f"{suite}.toml"),
            "--profile",
            "smoke",
            "--tracking-uri",
            f"sqlite:///{tmp_path}/mlflow.db",
            "--json",
            # Fewer updates than the profile: this test proves the plumbing, the profile is the user's.
            "--set",
            "budget.gradient_steps=50",
            "--set",
            "budget.eval_every=50",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=1500,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout)


def assert_scores_in_mlflow(summary: dict, tmp_path: Path) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    children = client.search_runs(
        [client.get_run(summary["parent_run_id"]).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'",
    )
    logged = [run.data.metrics["normalized_score"] for run in children if "normalized_score" in run.data.metrics]
    assert len(logged) == len(summary["cells"])
    for cell in summary["cells"]:
        assert cell["status"] == "ok"
        score, ret = cell["metrics"]["normalized_score"], cell["metrics"]["return_mean"]
        assert score == pytest.approx(100 * (ret + 20.272305) / (3234.3 + 20.272305))  # hopper references


@pytest.mark.slow
# Several cells of real training in one subprocess: minutes on a busy 2-core machine.
@pytest.mark.timeout(900)
def test_d4rl_suite_smoke_profile(tmp_path: Path) -> None:
    summary = run_smoke("d4rl", tmp_path)
    assert summary["counts"]["ok"] == 6
    assert {cell["label"].split("/")[0] for cell in summary["cells"]} == {
        "bc",
        "td3-bc",
        "iql",
        "riql",
        "arsq",
        "iql-o2o",
    }
    assert_scores_in_mlflow(summary, tmp_path)


@pytest.mark.slow
# Several cells of real training in one subprocess: minutes on a busy 2-core machine.
@pytest.mark.timeout(900)
def test_d4rl_corruption_suite_smoke_profile(tmp_path: Path) -> None:
    summary = run_smoke("d4rl-corruption", tmp_path)
    assert summary["counts"]["ok"] == 6
    assert_scores_in_mlflow(summary, tmp_path)


@pytest.mark.parametrize("suite", ["d4rl", "d4rl-corruption"])
def test_the_plugin_ships_its_suites_so_they_run_by_name_anywhere(suite: str, tmp_path: Path) -> None:
    listed = subprocess.run(
        [str(HARNESS), "list", "suites", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    (entry,) = [s for s in json.loads(listed.stdout) if s["name"] == suite]
    assert Path(entry["path"]).read_text() == (REPO / "suites" / f"{suite}.toml").read_text()
