"""`harness export`: tidy rows (one per cell and metric) from a real SQLite MLflow store, read back with pyarrow."""

from __future__ import annotations

import json

import click
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from click.testing import CliRunner

from harness.cli.reporting import COMMANDS
from harness.tracking.writer import CellToWrite, write_suite_run

MACHINE = {"fingerprint": "fp1", "cpu": "Test CPU", "gpu": "none"}
METRICS = {"score": {"unit": "1", "direction": "higher", "threshold": 0.05},
           "wall_time_s": {"unit": "s", "direction": "lower", "threshold": 0.1}}  # fmt: skip


def test_export_writes_tidy_rows_in_csv_parquet_and_json(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cells = [
        CellToWrite("iql", env, seed, metrics={"score": 10.0 * seed, "wall_time_s": 1.0 + seed}, params={"lr": 3e-4})
        for env in ("hopper", "walker")
        for seed in range(2)
    ]
    cells.append(CellToWrite("iql", "ant", 0, status="failed", error="boom"))
    run_id = write_suite_run(MlflowClient(tracking_uri=uri), suite="tidy", profile="smoke", metrics=METRICS,
                             cells=cells, machine=MACHINE, git_commit="cafebabe1234")  # fmt: skip
    group = click.Group("harness")
    for command in COMMANDS:
        group.add_command(command)

    def export(*args: str) -> str:
        result = CliRunner().invoke(group, ["export", *args, "--tracking-uri", uri, "--results-dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        return result.output

    export("tidy", "--format", "parquet", "--out", str(tmp_path / "t.parquet"))
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.num_rows == 4 * 2 + 1  # 4 ok cells x 2 metrics, plus the failed cell's row
    rows = table.to_pylist()
    first = next(r for r in rows if r["environment"] == "hopper" and r["seed"] == 1 and r["metric"] == "score")
    assert first["value"] == 10.0 and first["unit"] == "1" and first["direction"] == "higher"
    assert first["run_id"] == run_id and first["cpu"] == "Test CPU" and first["git_commit"] == "cafebabe1234"
    assert first["param.algorithm.lr"] == 3e-4 and json.loads(first["code_versions"]) is not None
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["metric"] is None and failed["error"] == "boom"
    assert table.schema.field("seed").type == "int64" and table.schema.field("value").type == "double"
    assert table.schema.field("param.algorithm.lr").type == "double"  # typed as logged, not MLflow's text

    path = export("tidy", "--format", "csv").strip()
    assert path.endswith(".csv")
    assert pacsv.read_csv(path).num_rows == 9
    data = json.loads(export(run_id, "--format", "json", "--out", "-"))
    assert len(data) == 9 and {r["metric"] for r in data} == {"score", "wall_time_s", None}
    result = CliRunner().invoke(group, ["export", "tidy", "--format", "parquet", "--out", "-", "--tracking-uri", uri])
    assert result.exit_code == 2 and "stdout" in result.output
