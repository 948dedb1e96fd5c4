"""N CPU-bound cells through the Ray executor on 1 and on 2 workers, side by side; the speedup.

One local Ray instance with 2 CPUs runs both configurations, alternating round by round so that a change in
the machine's load hits both alike. The work is identical; only the CPUs each cell declares differ:

* 1 worker:  ``spin-whole-node`` cells declare 2 CPUs, so Ray runs one at a time;
* 2 workers: ``spin`` cells declare 1 CPU, so Ray runs two at a time.

Correctness check first: every cell's checksum must equal the one computed in this process, and both
configurations must agree cell by cell (same seeds, same work). A second table gives the executor's own cost
per cell (cells with no work) and the time of one cell run in this process, the floor for the speedup.

    .venv/bin/python benchmarks/scaling/ray_speedup.py --cells 16 --iterations 4000000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# Ray workers import the plugin through the driver's PYTHONPATH, as they would a user's -p module.
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])

from harness.plugins import PluginOptions, load_plugins  # noqa: E402
from harness.run.suite import load_suite_file  # noqa: E402
from harness.run.worker import execute_cell  # noqa: E402

SUITE = """
name = "scaling"
description = "CPU-bound cells for the Ray scaling benchmark"
metrics = ["scaling_checksum"]
seeds = {seeds}
algorithms = ["spin", "spin-whole-node"]
environments = ["spin-workload"]
[profiles.smoke]
budget = {{ iterations = {iterations} }}
"""


def expand(directory: Path, cells: int, iterations: int):
    path = directory / f"scaling-{iterations}.toml"
    path.write_text(SUITE.format(seeds=list(range(cells)), iterations=iterations))
    options = PluginOptions(extra_modules=("scaling_plugin",), autoload=False)
    _, expanded = load_suite_file(path).expand(load_plugins(options), "smoke")
    by_algorithm: dict[str, list] = {"spin": [], "spin-whole-node": []}
    for cell in expanded:
        by_algorithm[cell.algorithm.name].append(cell)
    return options, by_algorithm["spin-whole-node"], by_algorithm["spin"]


@dataclass
class Round:
    wall_s: float
    busy_s: float  # sum of the cells' own durations: busy_s / wall_s is how many ran at once
    cpu_s: float  # CPU seconds the cells got: cpu_s / wall_s is the share of the machine they had
    checksums: dict[int, float]


def timed_run(executor, cells) -> Round:
    started = time.perf_counter()
    results = list(executor.run(cells))
    wall = time.perf_counter() - started
    failed = [r for r in results if r.status != "ok"]
    if failed or len(results) != len(cells):
        raise SystemExit(f"benchmark cells failed: {[(r.cell.label, r.error) for r in failed]}")
    return Round(
        wall_s=wall,
        busy_s=sum(r.duration_s for r in results),
        cpu_s=sum(r.outcome.get("cpu_s", 0.0) for r in results),
        checksums={r.cell.seed: r.metrics["scaling_checksum"] for r in results},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=16, help="cells per configuration")
    parser.add_argument("--iterations", type=int, default=4_000_000, help="loop iterations per cell")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds of both configurations")
    parser.add_argument("--overhead-cells", type=int, default=100, help="empty cells to measure per-cell cost")
    args = parser.parse_args()

    from harness.run.executors.ray import RayExecutor

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        options, one_worker, two_workers = expand(directory, args.cells, args.iterations)
        _, _, empty = expand(directory, args.overhead_cells, 0)

        # The floor: one cell in this process (plugin already imported), and the reference checksums.
        execute_cell(one_worker[0], options, directory)
        started = time.perf_counter()
        reference = {
            cell.seed: execute_cell(cell, options, directory).metrics["scaling_checksum"] for cell in one_worker[:2]
        }
        in_process_s = (time.perf_counter() - started) / 2

        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        executor = RayExecutor(None, options, directory, max_retries=0)
        init_s = time.perf_counter() - started
        import ray

        cpus = ray.cluster_resources().get("CPU", 0)
        try:
            timed_run(executor, one_worker[:2] + two_workers[:2])  # warm-up: workers started, plugin imported
            rounds: dict[str, list[Round]] = {"1 worker": [], "2 workers": []}
            for round_number in range(args.rounds):
                order = [("1 worker", one_worker), ("2 workers", two_workers)]
                for name, cells in order if round_number % 2 == 0 else order[::-1]:
                    rounds[name].append(timed_run(executor, cells))
            empty_wall = timed_run(executor, empty).wall_s
        finally:
            executor.close()

    last = {name: values[-1].checksums for name, values in rounds.items()}
    assert last["1 worker"] == last["2 workers"], "configurations disagree"
    assert all(last["1 worker"][seed] == value for seed, value in reference.items()), "checksum mismatch"

    print(
        f"Ray {ray.__version__}, local instance with {cpus:g} CPUs (started in {init_s:.1f} s, not timed); "
        f"os.cpu_count()={os.cpu_count()}; load average before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{args.cells} cells x {args.iterations:,} iterations; one cell in-process: {in_process_s:.3f} s; "
        f"{args.rounds} alternating rounds\n"
    )
    print(
        "| configuration | wall per round (s) | median wall (s) | cells/s | speedup vs 1 worker "
        "| cells at once (busy/wall) | CPU share (cpu/wall) |"
    )
    print("|---|---|---|---|---|---|---|")
    base = statistics.median(r.wall_s for r in rounds["1 worker"])
    for name, values in rounds.items():
        median = statistics.median(r.wall_s for r in values)
        walls = ", ".join(f"{r.wall_s:.2f}" for r in values)
        at_once = statistics.median(r.busy_s / r.wall_s for r in values)
        share = statistics.median(r.cpu_s / r.wall_s for r in values)
        print(
            f"| {name} | {walls} | {median:.2f} | {args.cells / median:.2f} | {base / median:.2f}x "
            f"| {at_once:.2f} | {share:.2f} |"
        )
    ratios = [a.wall_s / b.wall_s for a, b in zip(rounds["1 worker"], rounds["2 workers"], strict=True)]
    print(f"\nper-round speedups: {', '.join(f'{r:.2f}' for r in ratios)}")
    ideal = args.cells * in_process_s
    print(f"1 worker vs the in-process floor ({ideal:.2f} s for {args.cells} cells): {base / ideal:.2f}x")
    print(
        f"executor cost: {args.overhead_cells} empty cells on 2 workers in {empty_wall:.2f} s = "
        f"{1000 * empty_wall / args.overhead_cells:.1f} ms per cell (wall, includes result transfer)"
    )


if __name__ == "__main__":
    main()
