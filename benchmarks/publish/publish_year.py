"""Time `harness publish` on a year of nights (benchmarks/RESULTS.md, "Publish").

    .venv/bin/python benchmarks/publish/publish_year.py [--nights 365] [--cases 50] [--folder /tmp/publish-year]

Writes ``--nights`` suite runs of one suite, profile and machine into a SQLite MLflow store, each with
``--cases`` cases (5 algorithms x 10 environments) x 4 metrics x 3 seeds, through the same store writer
``harness run`` uses (parent run, suite.json, per-case aggregates; the cell runs themselves are not written:
publish never reads them). A 20% step appears in 10 series at night 200 and an alert is opened for each, as
``harness nightly`` would. Then ``harness publish`` runs in a fresh process, timed end to end (MLflow reads,
change points of every series, pages), and the page sizes are listed. Targets (issue 25): under 60 s on the
2-core machine, pages under a few MB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from harness.record import Alert, CellResult, ComponentRef, SuiteRunRecord, make_cell
from harness.tracking.reader import RunStore
from harness.tracking.store import MlflowTracker

METRICS = {
    "wall_time_s": {"unit": "s", "direction": "lower", "threshold": 0.05},
    "throughput_gbps": {"unit": "GB/s", "direction": "higher", "threshold": 0.05},
    "peak_memory_mb": {"unit": "MB", "direction": "lower", "threshold": 0.05},
    "score": {"unit": "1", "direction": "higher", "threshold": 0.05},
}
MACHINE = {"fingerprint": "bench-machine", "cpu": "bench CPU", "gpu": "none", "hostname": "bench",
           "versions": {"python": "3.11.7"}}  # fmt: skip
STEP_NIGHT = 200


def write_year(folder: Path, nights: int, cases: int) -> tuple[str, float]:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    tracker = MlflowTracker(uri)
    rng = np.random.default_rng(0)
    algorithms = [f"algo{i}" for i in range(5)]
    environments = [f"env{i}" for i in range(max(1, cases // 5))]
    stepped = {(a, e) for a in algorithms[:1] for e in environments}  # algo0: 10 series get slower
    started = time.perf_counter()
    parents = []
    for night in range(nights):
        commit = hashlib.sha1(f"night {night}".encode()).hexdigest()
        results = []
        for algorithm in algorithms:
            for environment in environments:
                level = 1.2 if (algorithm, environment) in stepped and night >= min(STEP_NIGHT, nights - 1) else 1.0
                for seed in range(3):
                    cell = make_cell(
                        suite="year", profile="nightly",
                        algorithm=ComponentRef(algorithm, "1", "bench", "1", {}, "code"),
                        environment=ComponentRef(environment, "1", "bench", "1", {}, "code"),
                        seed=seed, metrics=tuple(METRICS),
                    )  # fmt: skip
                    noise = rng.normal(0, 0.02, 4)
                    values = [level * (1 + noise[0]), (1 / level) * 10 * (1 + noise[1]), 100 * (1 + noise[2]),
                              0.8 * (1 + noise[3])]  # fmt: skip
                    results.append(CellResult(cell, "ok", metrics=dict(zip(METRICS, values, strict=True)),
                                              record_id=f"{night}-{algorithm}-{environment}-{seed}"))  # fmt: skip
        keys = [result.cell.key for result in results]
        record = SuiteRunRecord(
            suite="year", profile="nightly", config_id=f"night-{night}", cell_keys=keys, tracking_uri=uri,
            machine=MACHINE, git_commit=commit, started_at=1_700_000_000 + 86_400 * night,
            suite_info={"suite": "year", "profile": "nightly", "metrics": METRICS, "cells": len(keys)},
        )  # fmt: skip
        parent = tracker.start_parent(record)
        tracker.finish_parent(parent, results, expected=len(keys))
        parents.append((parent, commit))
        if night % 50 == 0:
            print(f"wrote night {night} of {nights}", file=sys.stderr)
    store = RunStore(uri)
    experiment = store.experiment_id("year")
    step = min(STEP_NIGHT, nights - 1)
    opened, baseline = parents[step], parents[step - 1]
    for algorithm, environment in sorted(stepped):
        store.open_alert(
            Alert(
                suite="year",
                profile="nightly",
                fingerprint="bench-machine",
                metric="wall_time_s",
                algorithm=algorithm,
                environment=environment,
                relative_change=0.2,
                low=0.18,
                high=0.22,
                opened_run_id=opened[0],
                opened_commit=opened[1],
                opened_at_ms=(1_700_000_000 + 86_400 * step) * 1000,
                baseline_run_id=baseline[0],
                baseline_commit=baseline[1],
                unit="s",
            ),
            experiment,
        )
    return uri, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=365)
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/publish-year"))
    args = parser.parse_args()
    shutil.rmtree(args.folder, ignore_errors=True)
    args.folder.mkdir(parents=True)
    uri, written = write_year(args.folder, args.nights, args.cases)
    print(f"wrote {args.nights} nights in {written:.0f} s", file=sys.stderr)
    out = args.folder / "site"
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-m", "harness.cli.main", "publish", "--out", str(out), "--tracking-uri", uri, "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    site = json.loads(process.stdout)
    pages = {Path(page["path"]).name: page["bytes"] for page in site["pages"]}
    script = (out / "assets" / "plotly.min.js").stat().st_size
    print(json.dumps({"nights": args.nights, "cases": args.cases, "metrics": len(METRICS), "seconds": round(elapsed, 1),
                      "in_process_seconds": site["seconds"], "page_bytes": pages, "plotly_js_bytes": script},
                     indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
