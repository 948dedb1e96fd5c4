"""What a d4rl cell's record says, through the real CLI, a real SQLite MLflow store and real RL training on a
tiny generated dataset: which file it trained on and whose it is, and that a rerun trains again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(sys.executable).with_name("harness")
SUITE = """
name = "d4rl-record"
description = "one bc cell on a tiny generated hopper file"
seeds = [0]
metrics = ["normalized_score", "gradient_steps_per_s"]
timeout_s = 900
algorithms = [{ name = "bc", params = { batch_size = 32 } }]
environments = [{ name = "hopper-medium-replay", params = { max_episode_steps = 50 } }]

[profiles.smoke]
budget = { gradient_steps = 60, eval_every = 60, eval_episodes = 1, d4rl_generate_if_missing = true, \
d4rl_generate_steps = 400, d4rl_generate_budget = 100 }
"""


def harness(tmp_path: Path, *args: str) -> dict:
    pytest.importorskip("harness_rl", reason="bc comes from harness-rl: pip install -e plugins/rl")
    env = {**os.environ, "D4RL_DATASET_DIR": str(tmp_path / "no-d4rl-files"), "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [str(HARNESS), "--results-dir", str(tmp_path / "results"), "run", str(tmp_path / "suite.toml"),
         "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--json", *args],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_d4rl_cell_records_its_generated_dataset_and_a_rerun_trains_again(tmp_path: Path) -> None:
    import mlflow

    from harness.context import file_sha256
    from harness.tracking import layout
    from harness.tracking.reader import RunStore

    (tmp_path / "suite.toml").write_text(SUITE)
    first = harness(tmp_path)
    (cell,) = first["cells"]
    assert cell["status"] == "ok", cell["error"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs(
        [client.get_run(first["parent_run_id"]).info.experiment_id],
        filter_string=f"tags.`{layout.KIND}` = 'cell'",
    )
    # Provenance: the file, its hash and its origin, as an MLflow dataset input and as tags.
    (dataset_input,) = run.inputs.dataset_inputs
    source = json.loads(dataset_input.dataset.source)
    assert source["origin"] == "generated" and Path(source["path"]).is_file()
    assert dataset_input.dataset.digest == file_sha256(source["path"])[:36]
    assert {t.key: t.value for t in dataset_input.tags}["harness.origin"] == "generated"
    assert run.data.tags[layout.INPUT_ORIGINS] == "generated"
    name = dataset_input.dataset.name
    assert run.data.tags[f"{layout.INPUT_PREFIX}{name}.sha256"] == file_sha256(source["path"])
    # In the report a generated file never passes for D4RL's own.
    loaded = RunStore(f"sqlite:///{tmp_path}/mlflow.db").load(first["parent_run_id"])
    assert loaded.cells[0].environment == "hopper-medium-replay"  # the label as recorded: exports keep it
    assert loaded.cells[0].environment_display == "hopper-medium-replay [generated data]"

    # A fresh run trains again: the first attempt's checkpoint is gone and is never reloaded.
    assert not (tmp_path / "results" / "checkpoints" / cell["key"]).exists()
    second = harness(tmp_path, "--no-resume")
    (again,) = second["cells"]
    assert again["status"] == "ok" and second["already_finished"] == 0
    assert again["metrics"]["gradient_steps_per_s"] != cell["metrics"]["gradient_steps_per_s"], (
        "a rerun reported the first attempt's measured rate: it reloaded the finished checkpoint"
    )
    assert second["parent_run_id"] != first["parent_run_id"], "a fresh run is a new suite run"
