"""A cell whose logging was cut short (the server went away between creating its run and finishing it) is
logged again in full by `harness sync`, and the half-written run does not stay behind as a duplicate.

The store here is SQLite, to make the cut deterministic; the same code path serves an `mlflow server`.
"""

from __future__ import annotations

import json
from pathlib import Path

from core_support import harness_env, load_json, mlflow_cell_runs, run_harness

ENV = harness_env(HARNESS_DISABLE_PLUGIN_AUTOLOAD="1")


def test_sync_redoes_a_cell_run_cut_short_and_keeps_each_cell_once(tmp_path: Path) -> None:
    (tmp_path / "cut.toml").write_text("""
name = "cut"
description = "partial logging"
metrics = ["score"]
seeds = [0, 1]
algorithms = ["random"]
environments = ["constant"]
""")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    process = run_harness("-p", "fixture_plugin", "run", "cut.toml", "--tracking-uri", uri, "--json",
                          cwd=tmp_path, env=ENV)  # fmt: skip
    assert process.returncode == 0, process.stderr
    summary = load_json(process)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    victim = mlflow_cell_runs(uri, "cut")[0]
    record_id = victim.data.tags["harness.record_id"]
    # What a log_cell interrupted after create_run leaves: the run, its tags, no metrics, never terminated;
    # and in the journal, no "synced" line for that record.
    client.delete_run(victim.info.run_id)
    partial = client.create_run(victim.info.experiment_id, tags=dict(victim.data.tags))
    journal = tmp_path / "results" / "journal" / "cut--smoke.jsonl"
    lines = [line for line in journal.read_text().splitlines() if not (record_id in line and '"synced"' in line)]
    journal.write_text("\n".join(lines) + "\n")

    synced = run_harness("sync", "--json", cwd=tmp_path, env=ENV)
    assert synced.returncode == 0, synced.stderr
    (report,) = json.loads(synced.stdout)
    assert report["delivered"] == 1 and report["error"] is None
    runs = mlflow_cell_runs(uri, "cut")
    assert sorted(run.data.tags["harness.cell_key"] for run in runs) == sorted(c["key"] for c in summary["cells"])
    assert {run.data.tags["harness.cell_key"]: run.data.metrics.get("score") for run in runs} == {
        cell["key"]: cell["metrics"]["score"] for cell in summary["cells"]
    }
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert client.get_run(partial.info.run_id).info.lifecycle_stage == "deleted"
