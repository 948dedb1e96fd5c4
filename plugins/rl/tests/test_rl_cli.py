"""End to end through the real CLI: every rl algorithm runs a tiny budget on a test task, the rl metrics
reach the run summary and the MLflow store (SQLite), curves become metric histories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

SUITE = """
name = "rl-e2e"
description = "harness-rl end-to-end test: every algorithm, tiny budgets"
seeds = [0]
metrics = ["return_mean", "gradient_steps_per_s", "env_steps_per_s", "success_auc"]
algorithms = [
    "bc", "td3-bc", "iql", "riql", "arsq",
    { name = "iql", label = "iql-o2o", params = { protocol = "offline-to-online" } },
    "sac", "wsrl",
]
environments = ["rl-test-inverted-pendulum"]

[profiles.smoke]
budget = { gradient_steps = 20, env_steps = 40, eval_every = 20, eval_episodes = 1 }
[profiles.smoke.params]
"bc.batch_size" = 32
"td3-bc.batch_size" = 32
"iql.batch_size" = 32
"riql.batch_size" = 32
"arsq.batch_size" = 32
"iql-o2o.batch_size" = 32
"sac.batch_size" = 32
"sac.learning_starts" = 32
"wsrl.batch_size" = 32
"wsrl.warmup_fraction" = 0.5
"""


@pytest.mark.slow
def test_every_rl_algorithm_runs_through_the_cli(tmp_path):
    suite = tmp_path / "rl-e2e.toml"
    suite.write_text(SUITE)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent), OMP_NUM_THREADS="1")
    command = [
        str(Path(sys.executable).parent / "harness"), "--results-dir", str(tmp_path / "results"),
        "run", str(suite), "--profile", "smoke", "-p", "harness_rl_testtask",
        "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--json",
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:] + completed.stdout[-3000:]
    summary = json.loads(completed.stdout)
    cells = {c["label"].split("/")[0]: c for c in summary["cells"]}  # "algorithm/environment..." -> algorithm
    assert len(cells) == 8 and all(c["status"] == "ok" for c in cells.values()), cells
    for label, cell in cells.items():
        assert cell["metrics"]["gradient_steps_per_s"] > 0, label
        assert cell["metrics"]["env_steps_per_s"] > 0, label
        assert "return_mean" in cell["metrics"], label
        assert "success_auc" not in cell["metrics"], label  # no success signal in this task: not applicable

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("rl-e2e")
    runs = client.search_runs([experiment.experiment_id], "tags.`harness.kind` = 'cell'")
    by_label = {r.data.tags["harness.algorithm"]: r for r in runs}
    assert sorted(by_label) == sorted(cells)
    iql_run = by_label["iql"]
    assert iql_run.data.metrics["return_mean"] == pytest.approx(cells["iql"]["metrics"]["return_mean"])
    history = client.get_metric_history(iql_run.info.run_id, "curve/normalized_score")  # curves: curve/<name>
    assert [m.step for m in history] == [20]
