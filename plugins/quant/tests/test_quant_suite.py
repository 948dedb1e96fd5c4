"""The quantization suite's smoke profile through the real ``harness`` CLI, tracked in a temporary SQLite MLflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow

REPO = Path(__file__).resolve().parents[3]


def test_smoke_profile_runs_every_quantizer_through_the_cli(tmp_path):
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [
        str(Path(sys.executable).parent / "harness"),
        "--results-dir", str(tmp_path / "results"),
        "run", "suites/quantization.toml", "--profile", "smoke", "--tracking-uri", tracking_uri, "--json",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"ok": 24, "failed": 0, "skipped": 0}
    cells = {cell["label"]: cell["metrics"] for cell in summary["cells"]}
    for environment, quality in (("digits-mlp", "accuracy"), ("digits-cnn", "accuracy"), ("char-lm", "perplexity")):
        baseline = cells[f"none/{environment}/seed=0"]
        assert baseline["gap_to_fp"] == 0.0 and baseline["effective_bits"] == 32.0
        for label in ("rtn-w4", "gptq-w3", "ste-w4a4", "lsq-w4a4", "quest-w4a4", "quest-w1a1"):
            metrics = cells[f"{label}/{environment}/seed=0"]
            assert quality in metrics and "gap_to_fp" in metrics
            assert metrics["model_size_mb"] < baseline["model_size_mb"]
        assert 1.0 < cells[f"quest-w1a1/{environment}/seed=0"]["effective_bits"] < 1.5
        assert (
            cells[f"gptq-w3/{environment}/seed=0"]["effective_bits"]
            < cells[f"rtn-w4/{environment}/seed=0"]["effective_bits"]
        )

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], filter_string="metrics.gap_to_fp >= -10"
    )
    assert len(runs) == 24
    logged = {run.data.metrics.get("effective_bits") for run in runs}
    assert 32.0 in logged and any(1.0 < b < 1.5 for b in logged if b)
