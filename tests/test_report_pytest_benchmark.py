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
         "--benchmark-min-rounds=3"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        # Not the xdist worker's variables: pytest-benchmark turns itself off inside an xdist run.
        env={k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTEST_XDIST"))},
    )  # fmt: skip
    assert process.returncode == 0, process.stdout + process.stderr
    data = json.loads(saved.read_text())

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
    by_name = {cell.algorithm: cell for cell in run.cells}
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
