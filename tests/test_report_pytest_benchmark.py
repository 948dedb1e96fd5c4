"""`harness import pytest-benchmark`: a JSON file written by the real pytest-benchmark becomes MLflow runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from harness.cli.reporting import COMMANDS
from harness.tracking.reader import RunStore

BENCHMARKS = """
import pytest

@pytest.mark.benchmark(group="sums")
@pytest.mark.parametrize("n", [100, 1000])
def test_sum(benchmark, n):
    benchmark(sum, range(n))
"""


def test_pytest_benchmark_json_becomes_a_suite_run_that_reports(tmp_path: Path):
    (tmp_path / "test_bench_sums.py").write_text(BENCHMARKS)
    saved = tmp_path / "bench.json"
    process = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-o", "addopts=", "-o", "filterwarnings=", str(tmp_path / "test_bench_sums.py"),
         f"--benchmark-json={saved}", "--benchmark-max-time=0.05",
         "--benchmark-min-rounds=20", "--benchmark-save-data"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        # Not the xdist worker's variables: pytest-benchmark turns itself off inside an xdist run.
        env={k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTEST_XDIST"))},
    )  # fmt: skip
    assert process.returncode == 0, process.stdout + process.stderr
    data = json.loads(saved.read_text())
    bench_by_name = {bench["name"]: bench for bench in data["benchmarks"]}

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    group = click.Group("harness")
    for command in COMMANDS:
        group.add_command(command)
    result = CliRunner().invoke(group, ["import", "pytest-benchmark", str(saved), "--tracking-uri", uri])
    assert result.exit_code == 0, result.output

    store = RunStore(uri)
    run = store.load(store.resolve("pytest-benchmark"))
    assert run.tags["harness.machine.cpu"] == (data["machine_info"]["cpu"].get("brand_raw") or "unknown")
    assert run.tags["harness.versions.python"] == data["machine_info"]["python_version"]
    by_name = {cell.algorithm: cell for cell in run.cells if "bench_median_s" in cell.metrics}
    assert set(by_name) == {"test_sum[100]", "test_sum[1000]"}
    for bench in data["benchmarks"]:
        cell = by_name[bench["name"]]
        assert cell.environment == "sums"
        assert cell.metrics["bench_median_s"] == bench["stats"]["median"]
        assert cell.metrics["bench_ops_per_s"] == bench["stats"]["ops"]
    assert run.info("bench_median_s").direction == "lower"

    out = tmp_path / "report"
    result = CliRunner().invoke(group, ["report", run.run_id, "--out", str(out), "--tracking-uri", uri,
                                       "--format", "md", "--bootstrap-resamples", "200"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "test\\_sum\\[1000\\]" in (out / "report.md").read_text()

    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "benchmarks"}')
    result = CliRunner().invoke(group, ["import", "pytest-benchmark", str(bad), "--tracking-uri", uri])
    assert result.exit_code == 2 and "pytest-benchmark --benchmark-json" in result.output

    # Rounds are a parameter, not a higher-is-better metric; the per-round data is kept.
    assert "bench_rounds" not in run.metric_names
    summary = next(c for c in run.cells if c.algorithm == "test_sum[1000]" and "bench_median_s" in c.metrics)
    assert int(summary.params["algorithm.rounds"]) == bench_by_name["test_sum[1000]"]["stats"]["rounds"]
    assert [v for _, v in summary.curves["round_s"]] == bench_by_name["test_sum[1000]"]["stats"]["data"][:10_000]
    repeats = [c for c in run.cells if c.algorithm == "test_sum[1000]" and "bench_round_s" in c.metrics]
    assert len(repeats) >= 8

    # The same benchmarks 3x slower: the per-round repeats make the regression significant (never paired).
    slower = json.loads(saved.read_text())
    for bench in slower["benchmarks"]:
        bench["stats"]["data"] = [3.0 * v for v in bench["stats"]["data"]]
        for key in ("min", "max", "mean", "median"):
            bench["stats"][key] *= 3.0
    slow_file = tmp_path / "slow.json"
    slow_file.write_text(json.dumps(slower))
    result = CliRunner().invoke(group, ["import", "pytest-benchmark", str(slow_file), "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    slow_id = result.output.strip().rsplit(" ", 1)[-1]
    result = CliRunner().invoke(group, ["compare", run.run_id, slow_id, "--metric", "bench_round_s", "--json",
                                        "--tracking-uri", uri, "--results-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 1, result.output
    rows = json.loads(result.output)["rows"]
    assert {row["verdict"] for row in rows} == {"regressed"}, [
        (r["note"], r["p_value"], r["n_baseline"], r["warnings"]) for r in rows
    ]
    assert {row["test"] for row in rows} == {"permutation"}
