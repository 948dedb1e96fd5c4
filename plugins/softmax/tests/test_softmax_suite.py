"""The softmax plugin through the real harness: its specs, `harness list`, and suites run by the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness_softmax.availability import cupy_unavailable_reason
from harness_softmax.plugin import MEASURED_KEYS

from harness.testing import check_plugin

REPO = Path(__file__).resolve().parents[3]
HARNESS = [sys.executable, "-m", "harness.cli.main"]
FIXTURES = Path(__file__).parent / "fixtures"
METRICS = {
    "softmax_time_s",
    "softmax_gbps",
    "softmax_gbps_actual",
    "softmax_bandwidth_ceiling_gbps",
    "softmax_fraction_of_ceiling",
    "softmax_speedup_vs_torch",
    "softmax_speedup_vs_reload",
    "softmax_max_rel_error",
}


def harness(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*HARNESS, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def test_plugin_conforms_running_its_smoke_cells(tmp_path):
    # Runs each available algorithm twice on the suite's smoke shapes and compares everything but measurements.
    report = check_plugin("softmax", results_dir=tmp_path, ignore_outcome_keys=MEASURED_KEYS)
    assert report.ok, report.format()
    ran = [item for item in report.items if item.check == "runs one smoke cell" and item.status == "passed"]
    assert len(ran) >= 7  # every CPU algorithm (the GPU ones are skipped without a GPU)


def test_every_profile_expands_without_pairings_that_cannot_run():
    from harness_softmax.gpu import FUSED_MAX_COLS

    from harness.plugins import load_plugins
    from harness.run.suite import load_suite_file

    registry = load_plugins()
    suite = load_suite_file(REPO / "suites" / "softmax.toml")
    for profile in ("smoke", "short", "full"):
        _, cells = suite.expand(registry, profile)
        for cell in cells:
            algorithm, params = cell.algorithm.name, cell.environment.params
            cols = params.get("cols", params.get("n"))
            if algorithm == "softmax-fused-cpu":  # fused rows: a row (and its float32 scratch) fits L2
                assert cell.environment.name == "softmax-rows" and cols <= 1 << 16, cell.label
            if algorithm == "softmax-fused-gpu":
                assert cols <= FUSED_MAX_COLS, cell.label
            if algorithm == "softmax-scipy-cpu":
                assert params["dtype"] != "bfloat16", cell.label
        names = {cell.algorithm.name for cell in cells}
        if profile == "smoke":
            assert all(name.endswith("-cpu") for name in names) and len(cells) <= 12
        else:
            assert len([name for name in names if name.endswith(("-gpu", "-cuda"))]) == 6
            sizes = {cell.environment.params.get("n") for cell in cells} | {
                cell.environment.params.get("cols") for cell in cells
            }
            assert {10**4, 10**8, 781, 262144} <= sizes  # in cache to far out of cache, irregular rows
            # The Two-Pass paper's CPU figure: every compiled algorithm on 1e7 and 5e7 vectors and 4096 x 16384
            # rows, on one and two threads.
            paper = {
                (cell.algorithm.name, cell.environment.params.get("n"), cell.algorithm.params.get("threads"))
                for cell in cells
                if cell.algorithm.name.endswith("-cpu")
            }
            for name in ("three-pass-recompute", "three-pass-reload", "two-pass", "online", "torch"):
                for n in (10**7, 5 * 10**7):
                    assert {(f"softmax-{name}-cpu", n, 1), (f"softmax-{name}-cpu", n, 2)} <= paper


def test_list_shows_gpu_algorithms_unavailable_with_the_reason_and_cpu_ones_available():
    completed = harness("list", "algorithms", "--json")
    assert completed.returncode == 0, completed.stderr
    listed = {entry["name"]: entry for entry in json.loads(completed.stdout) if entry["plugin"] == "softmax"}
    cpu = [name for name in listed if name.endswith("-cpu")]
    gpu = [name for name in listed if name.endswith("-gpu")]
    assert len(cpu) == 7 and len(gpu) == 5 and "softmax-torch-cuda" in listed
    assert all(listed[name]["unavailable"] is None for name in cpu)
    reason = cupy_unavailable_reason()
    for name in gpu:
        assert listed[name]["unavailable"] == reason  # None on a GPU machine with CuPy
    if reason is not None:
        assert "CUDA" in reason or "CuPy" in reason


@pytest.mark.slow
def test_smoke_profile_runs_through_the_cli_and_lands_in_mlflow(tmp_path):
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    completed = harness(
        "--results-dir", str(tmp_path / "results"),
        "run", "suites/softmax.toml", "--profile", "smoke", "--tracking-uri", tracking_uri, "--json",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout)
    assert summary["counts"] == {"ok": len(summary["cells"]), "failed": 0, "skipped": 0}
    labels = {cell["label"].split("/")[0] for cell in summary["cells"]}
    assert labels >= {
        "softmax-three-pass-recompute-cpu",
        "softmax-three-pass-reload-cpu",
        "softmax-two-pass-cpu",
        "softmax-online-cpu",
        "softmax-fused-cpu",
        "softmax-torch-cpu",
        "softmax-scipy-cpu",
    }
    for cell in summary["cells"]:
        metrics = cell["metrics"]
        baseline = cell["label"].startswith(("softmax-torch-cpu", "softmax-scipy-cpu"))
        uncounted = {"softmax_gbps_actual", "softmax_speedup_vs_reload"}  # a library's passes are not ours
        assert set(metrics) == METRICS - (uncounted if baseline else set()), cell["label"]
        assert 0 < metrics["softmax_max_rel_error"] <= 1e-5
        assert metrics["softmax_gbps"] > 0 and metrics["softmax_speedup_vs_torch"] > 0
        assert metrics["softmax_fraction_of_ceiling"] == pytest.approx(
            metrics["softmax_gbps"] / metrics["softmax_bandwidth_ceiling_gbps"]
        )

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    children = client.search_runs(
        experiment_ids=[e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'",
    )
    assert len(children) == len(summary["cells"])
    by_key = {cell["key"]: cell for cell in summary["cells"]}
    for run in children:
        cell = by_key[run.data.tags["harness.cell_key"]]
        assert run.data.tags["harness.status"] == "ok"
        assert {name: run.data.metrics[name] for name in cell["metrics"]} == pytest.approx(cell["metrics"])


@pytest.mark.slow
def test_a_wrong_kernel_fails_its_cell_and_a_gpu_algorithm_without_gpu_is_skipped(tmp_path):
    suite = tmp_path / "softmax-gates.toml"
    suite.write_text(
        """
name = "softmax-gates"
description = "the softmax protocol's gates, through the runner"
seeds = [0]
metrics = ["softmax_gbps", "softmax_max_rel_error"]
[[matrix]]
algorithms = ["softmax-skips-last-element", "softmax-too-large", "softmax-online-gpu", "softmax-online-cpu"]
environments = [{ name = "softmax-rows", params = { rows = 31, cols = 257, buffers = 1 } }]
[profiles.smoke]
budget = { warmup = 1, repeats = 2, copy_mb = 8 }
params = { "softmax-online-cpu.threads" = 1 }
"""
    )
    completed = harness(
        "--results-dir", str(tmp_path / "results"), "run", str(suite), "-p", "softmax_broken_fixture",
        "--no-tracking", "--json",
        env={"PYTHONPATH": os.pathsep.join(filter(None, [str(FIXTURES), os.environ.get("PYTHONPATH")]))},
    )  # fmt: skip
    assert completed.returncode == 1, completed.stderr[-3000:]  # 1: some cell failed
    cells = {cell["label"].split("/")[0]: cell for cell in json.loads(completed.stdout)["cells"]}

    unwritten = cells["softmax-skips-last-element"]
    assert unwritten["status"] == "failed" and unwritten["metrics"] == {}
    assert "left 1 of 7967 output elements unwritten" in unwritten["error"]
    assert "row 30, column 256" in unwritten["error"]

    inexact = cells["softmax-too-large"]
    assert inexact["status"] == "failed" and inexact["metrics"] == {}
    assert "max relative error 0.001 exceeds the float32 tolerance 1e-05" in inexact["error"]

    assert cells["softmax-online-cpu"]["status"] == "ok"
    gpu = cells["softmax-online-gpu"]
    reason = cupy_unavailable_reason()
    if reason is None:
        assert gpu["status"] == "ok"
    else:
        assert gpu["status"] == "skipped" and gpu["metrics"] == {}
        assert reason in gpu["error"]
