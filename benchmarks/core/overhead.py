"""The harness's own overhead: 500 cells of a no-op algorithm through the local executor with --jobs 2.

Targets (issue 2), measured side by side in one run:
  * without tracking, the runner adds at most 5 ms per cell (median);
  * with MLflow tracking, the whole run takes at most 1.3x what the bare MLflow client takes to log the same
    500 nested runs with the same params, metrics, tags and artifact.

Usage: .venv/bin/python benchmarks/core/overhead.py [--cells 500] [--jobs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "plugins"))

from harness.plugins import PluginOptions, load_plugins  # noqa: E402
from harness.run.runner import RunOptions, run_suite  # noqa: E402
from harness.run.suite import load_suite_file  # noqa: E402


class Arrivals:
    """Progress sink recording when each result reached the driver."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.started = 0.0

    def start(self, total: int, already_done: int, cells=()) -> None:
        self.started = time.perf_counter()

    def cell_progress(self, event) -> None:
        pass

    def advance(self, result) -> None:
        self.times.append(time.perf_counter())

    def stop(self) -> None:
        pass


def write_suite(directory: Path, cells: int) -> Path:
    path = directory / "overhead.toml"
    path.write_text(
        'name = "overhead"\ndescription = "no-op cells"\n'
        f"seeds = {list(range(cells))}\n"
        'metrics = ["score"]\nalgorithms = ["noop"]\nenvironments = ["constant"]\n'
    )
    return path


def run_harness(suite_path: Path, results: Path, jobs: int, tracking_uri: str | None):
    registry = load_plugins(PluginOptions(extra_modules=("fixture_plugin",), autoload=False))
    suite = load_suite_file(suite_path)
    arrivals = Arrivals()
    started = time.perf_counter()
    summary = run_suite(
        suite, registry, RunOptions(jobs=jobs, tracking_uri=tracking_uri, results_dir=results), progress=arrivals
    )
    total = time.perf_counter() - started
    assert summary.counts["ok"] == len(summary.results), summary.counts
    return summary, arrivals, total


def bare_mlflow(uri: str, summary) -> float:
    """Log the same nested runs with the bare client: what any MLflow user would write by hand."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    started = time.perf_counter()
    client = MlflowClient(uri)
    experiment = client.create_experiment("bare")
    parent = client.create_run(experiment, run_name="bare", tags={"harness.kind": "suite-run"}).info.run_id
    for result in summary.results:
        cell = result.cell
        tags = {
            "mlflow.parentRunId": parent,
            "harness.kind": "cell",
            "harness.status": result.status,
            "harness.cell_key": cell.key,
            "harness.record_id": result.record_id,
            "harness.algorithm": cell.algorithm.name,
            "harness.environment": cell.environment.name,
            "harness.seed": str(cell.seed),
        }
        run_id = client.create_run(experiment, run_name=cell.label, tags=tags).info.run_id
        now = int(time.time() * 1000)
        params = [
            Param("algorithm", cell.algorithm.name),
            Param("environment", cell.environment.name),
            Param("seed", str(cell.seed)),
            Param("environment.value", "1.0"),
        ]
        metrics = [Metric(name, value, now, 0) for name, value in result.metrics.items()]
        client.log_batch(run_id, metrics=metrics, params=params)
        client.log_text(run_id, json.dumps(result.to_dict(), default=str), "cell.json")
        client.set_terminated(run_id)
    client.set_terminated(parent)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            suite_path = write_suite(tmp_path, args.cells)
            # 1. No tracking: the runner alone. Per-cell overhead = gap between results at the driver x jobs
            # (no-op cells take microseconds, so the gap is what the runner and the pool add).
            _summary, arrivals, untracked_total = run_harness(suite_path, tmp_path / "r0", args.jobs, None)
            gaps = [b - a for a, b in zip(arrivals.times, arrivals.times[1:], strict=False)]
            per_cell_ms = statistics.median(gaps) * args.jobs * 1000
            startup = arrivals.times[0] - arrivals.started
            # 2. With MLflow tracking (fresh SQLite store) against 3. the bare client logging the same runs.
            # Both stores are created (schema migration) before timing: that is the same fixed cost for both.
            from mlflow.tracking import MlflowClient

            tracked_uri = f"sqlite:///{tmp_path / 'tracked.db'}"
            bare_uri = f"sqlite:///{tmp_path / 'bare.db'}"
            MlflowClient(tracked_uri).search_experiments()
            MlflowClient(bare_uri).search_experiments()
            tracked_summary, _, tracked_total = run_harness(suite_path, tmp_path / "r1", args.jobs, tracked_uri)
            bare_total = bare_mlflow(bare_uri, tracked_summary)
            rows.append((repeat, per_cell_ms, startup, untracked_total, tracked_total, bare_total))
            print(
                f"repeat {repeat}: runner {per_cell_ms:.2f} ms/cell (median), startup {startup:.2f} s, "
                f"untracked {untracked_total:.2f} s, tracked {tracked_total:.2f} s, bare MLflow {bare_total:.2f} s, "
                f"ratio {tracked_total / bare_total:.2f}",
                flush=True,
            )
    print()
    print("| cells | jobs | runner overhead ms/cell (median) | tracked run s | bare MLflow s | ratio (target <= 1.3) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for _, per_cell, _, _, tracked, bare in rows:
        print(f"| {args.cells} | {args.jobs} | {per_cell:.2f} | {tracked:.2f} | {bare:.2f} | {tracked / bare:.2f} |")


if __name__ == "__main__":
    main()
