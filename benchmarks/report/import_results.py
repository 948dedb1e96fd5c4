"""Time `harness import results` and `harness report` at paper scale (benchmarks/RESULTS.md, "Import").

    .venv/bin/python benchmarks/report/import_results.py [--algorithms 5] [--tasks 26] [--seeds 100]
                                                         [--folder /tmp/import-results]

Writes a published-results CSV of algorithms x tasks x seeds rows (one normalized score per row: 13,000 rows
at the defaults), then, each into a fresh SQLite store:

1. **bare MLflow**: ``MlflowClient`` logs the same values in a plain loop: a parent run, and per (algorithm,
   task, seed) one nested run with the algorithm, task and seed as params and the score as a metric
   (``create_run``, one ``log_batch``, ``set_terminated``): the least any importer must do. It runs before
   and after the import (the machine is shared), and the ratio is against the mean of the two;
2. **harness import results** in a fresh process (``--source``, ``--direction``, the CSV read and checked,
   every cell written through ``write_suite_run``), timed end to end;
3. **harness report** of the imported run in a fresh process (``--format html,md,tex,csv``), end to end.

Targets (issue 26): import under 2x the bare client; report under 30 s. The correctness check: the
aggregates CSV's pooled IQM of every algorithm equals scipy's 25% trimmed mean of its scores.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def write_csv(path: Path, algorithms: int, tasks: int, seeds: int) -> dict[str, list[float]]:
    rng = np.random.default_rng(26)
    scores: dict[str, list[float]] = {}
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["algorithm", "environment", "seed", "metric", "value"])
        for a in range(algorithms):
            for t in range(tasks):
                for seed in range(seeds):
                    value = round(float(40 + 5 * a + t + rng.normal(0, 3)), 6)
                    scores.setdefault(f"algo{a}", []).append(value)
                    writer.writerow([f"algo{a}", f"task{t:02d}", seed, "normalized_score", value])
    return scores


def bare_mlflow(uri: str, algorithms: int, tasks: int, seeds: int, path: Path) -> float:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    client.search_experiments()  # create the database before the clock starts, as the harness's store does
    started = time.perf_counter()
    experiment = client.create_experiment("bare")
    parent = client.create_run(experiment).info.run_id
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            run = client.create_run(experiment, tags={"mlflow.parentRunId": parent})
            now = int(time.time() * 1000)
            client.log_batch(
                run.info.run_id,
                metrics=[Metric(row["metric"], float(row["value"]), now, 0)],
                params=[Param("algorithm", row["algorithm"]), Param("environment", row["environment"]),
                        Param("seed", row["seed"])],
            )  # fmt: skip
            client.set_terminated(run.info.run_id)
    client.set_terminated(parent)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", type=Path, default=Path("/tmp/import-results"))
    parser.add_argument("--algorithms", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=26)
    parser.add_argument("--seeds", type=int, default=100)
    args = parser.parse_args()
    shutil.rmtree(args.folder, ignore_errors=True)
    args.folder.mkdir(parents=True)
    path = args.folder / "published.csv"
    scores = write_csv(path, args.algorithms, args.tasks, args.seeds)
    rows = args.algorithms * args.tasks * args.seeds
    print(f"{rows} rows ({args.algorithms} algorithms x {args.tasks} tasks x {args.seeds} seeds)")

    bare = bare_mlflow(f"sqlite:///{args.folder / 'bare.db'}", args.algorithms, args.tasks, args.seeds, path)
    print(f"bare MLflow client (before): {bare:.1f} s")

    harness = Path(sys.executable).with_name("harness")
    uri = f"sqlite:///{args.folder / 'harness.db'}"
    subprocess.run([sys.executable, "-c", f"from mlflow.tracking import MlflowClient; "
                    f"MlflowClient({uri!r}).search_experiments()"], check=True, capture_output=True)  # fmt: skip
    started = time.perf_counter()
    subprocess.run(
        [str(harness), "import", "results", str(path), "--suite", "paper", "--source", "benchmark table",
         "--direction", "normalized_score=higher", "--comparable-across-tasks", "normalized_score",
         "--tracking-uri", uri],
        check=True,
    )  # fmt: skip
    imported = time.perf_counter() - started
    print(f"harness import results: {imported:.1f} s (fresh process, end to end)")
    # The machine is shared: its load changes over minutes. The bare client runs again after the import and the
    # ratio is taken against the mean of both, so a quiet (or busy) spell does not favour either side.
    after = bare_mlflow(f"sqlite:///{args.folder / 'bare2.db'}", args.algorithms, args.tasks, args.seeds, path)
    bare = (bare + after) / 2
    print(f"bare MLflow client (after): {after:.1f} s; import / mean bare: {imported / bare:.2f}x (target < 2)")

    out = args.folder / "report"
    started = time.perf_counter()
    subprocess.run(
        [str(harness), "report", "source=benchmark table", "--suite", "paper", "--format", "html,md,tex,csv",
         "--out", str(out), "--tracking-uri", uri],
        check=True,
    )  # fmt: skip
    reported = time.perf_counter() - started
    print(f"harness report: {reported:.1f} s (fresh process, end to end)")

    from scipy.stats import trim_mean

    aggregates = list(csv.DictReader(io.StringIO((out / "aggregates.csv").read_text())))
    pooled = {row["algorithm"]: float(row["iqm"]) for row in aggregates if row["environment"] == "pooled"}
    for algorithm, values in scores.items():
        expected = float(trim_mean(values, 0.25))
        assert abs(pooled[algorithm] - expected) <= 1e-9 * abs(expected), (algorithm, pooled[algorithm], expected)
    print(f"check: the pooled IQM of all {len(pooled)} algorithms equals scipy.stats.trim_mean(scores, 0.25)")


if __name__ == "__main__":
    main()
