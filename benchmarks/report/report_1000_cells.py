"""Time `harness report` on a 1,000-cell suite run in a SQLite MLflow store (benchmarks/RESULTS.md, "Report").

    .venv/bin/python benchmarks/report/report_1000_cells.py [--curves] [--folder /tmp/report-1000]

10 algorithms x 10 environments x 10 seeds, three metrics (a normalized score comparable across tasks, a
wall time, a peak memory); with --curves every cell also logs a 20-point curve. The cells are written with
harness.tracking.writer.write_suite_run (the same layout `harness run` writes), then `harness report` runs
in a fresh process and is timed end to end (MLflow reads, statistics, plots, HTML and Markdown).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from harness.tracking.writer import CellToWrite, write_suite_run

METRICS = {
    "normalized_score": {"unit": "1", "direction": "higher", "threshold": 0.05, "comparable_across_tasks": True},
    "wall_time_s": {"unit": "s", "direction": "lower", "threshold": 0.1},
    "peak_memory_mb": {"unit": "MB", "direction": "lower", "threshold": 0.1},
}
MACHINE = {"fingerprint": "bench", "cpu": "bench CPU", "gpu": "none"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", type=Path, default=Path("/tmp/report-1000"))
    parser.add_argument("--curves", action="store_true")
    args = parser.parse_args()
    shutil.rmtree(args.folder, ignore_errors=True)
    args.folder.mkdir(parents=True)
    uri = f"sqlite:///{args.folder / 'mlflow.db'}"
    rng = np.random.default_rng(0)
    cells = []
    for a in range(10):
        for e in range(10):
            for seed in range(10):
                level = 0.3 + 0.05 * a + 0.02 * e
                curves = {"normalized_score": [(s * 100, level * s / 19) for s in range(20)]} if args.curves else {}
                cells.append(
                    CellToWrite(
                        f"algo{a}", f"env{e}", seed,
                        metrics={"normalized_score": level + rng.normal(0, 0.05), "wall_time_s": 1 + rng.random(),
                                 "peak_memory_mb": 100 + 10 * a + rng.random()},
                        curves=curves,
                    )
                )  # fmt: skip
    from mlflow.tracking import MlflowClient

    started = time.perf_counter()
    write_suite_run(MlflowClient(tracking_uri=uri), suite="scale", profile="bench", metrics=METRICS, cells=cells,
                    machine=MACHINE)  # fmt: skip
    print(f"wrote {len(cells)} cells in {time.perf_counter() - started:.1f} s")
    harness = Path(sys.executable).with_name("harness")
    started = time.perf_counter()
    subprocess.run([str(harness), "report", "scale", "--tracking-uri", uri, "--out", str(args.folder / "out")],
                   check=True)  # fmt: skip
    print(f"harness report: {time.perf_counter() - started:.1f} s (end to end, fresh process)")


if __name__ == "__main__":
    main()
