"""Suite expansion and planning at scale: how long ``harness run --dry-run`` takes to expand and plan a suite.

Target (issue 15): 10^5 cells expanded and planned (keys, code versions, resume state against a journal) in
under 5 s on the project's 2-core machine; a 10^6-cell suite is refused before expansion (``--max-cells``).

Usage: .venv/bin/python benchmarks/core/expansion.py [--cells 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "plugins"))

from harness.plugins import PluginOptions, load_plugins  # noqa: E402
from harness.run.suite import load_suite_file  # noqa: E402
from harness.tracking.journal import Journal  # noqa: E402


def write_suite(directory: Path, cells: int) -> Path:
    seeds = min(100, cells)
    scales = [float(i) for i in range(cells // seeds)]
    path = directory / "expansion.toml"
    path.write_text(
        'name = "expansion"\ndescription = "expansion benchmark"\nmetrics = ["score"]\n'
        f"seeds = {list(range(seeds))}\n"
        f'algorithms = [{{name = "random", sweep = {{scale = {scales}}}}}]\nenvironments = ["constant"]\n'
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    registry = load_plugins(PluginOptions(extra_modules=("fixture_plugin",), autoload=False))
    with tempfile.TemporaryDirectory() as tmp:
        suite = load_suite_file(write_suite(Path(tmp), args.cells))
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            profile, cells = suite.expand(registry, None, (), max_cells=args.cells)
            state = Journal.for_suite(Path(tmp), suite.name, profile).read()
            finished = state.finished_keys()
            plan = [(cell.key, cell.key in finished, cell.compute_config_key()) for cell in cells]
            times.append(time.perf_counter() - started)
        assert len(plan) == args.cells
    median = statistics.median(times)
    print(f"| cells | expand + plan, median of {args.repeats} (s) | per cell (us) | target |")
    print("| --- | --- | --- | --- |")
    print(f"| {args.cells:,} | {median:.2f} | {1e6 * median / args.cells:.1f} | < 5 s for 100,000 |")


if __name__ == "__main__":
    main()
