"""The grid the default's scales were chosen from: TCPD (the 30 series every published method scored) and the
simulated histories, 100 per scenario, for each (screen scale, penalty scale, noise floor) of the grid.

    .venv/bin/python benchmarks/changepoint/sweep.py --tcpd /path/to/TCPD
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import run
from candidates import harness_detector

GRID = {
    "screen_scale": (1.0, 1.5, 2.0),
    "penalty_scale": (4.0, 4.5, 5.0, 6.0),
    "max_shrink": (1.25, 1.5, 1.75, 2.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tcpd", type=Path, required=True, help="a TCPD checkout or bare git directory")
    parser.add_argument("--histories", type=int, default=100)
    args = parser.parse_args()
    detectors = {}
    for values in itertools.product(*GRID.values()):
        options = dict(zip(GRID, values, strict=True))
        detectors[" ".join(f"{k}={v}" for k, v in options.items())] = harness_detector(**options)
    tcpd = run.score_tcpd(args.tcpd, detectors)
    simulated = run.simulate(detectors, args.histories)
    print("| options | TCPD F1 (30) | TCPD cover (30) | worst quiet | spike as change | 10% within 3 | 5% within 10 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in detectors:
        scores = {d: s for d, s in tcpd["scores"][name].items() if d != "uk_coal_employ"}
        row = simulated[name]
        worst_quiet = min(v for k, v in row.items() if k.startswith("quiet"))
        print(
            f"| {name} | {statistics.fmean(s['f1'] for s in scores.values()):.3f} | "
            f"{statistics.fmean(s['cover'] for s in scores.values()):.3f} | {worst_quiet:.2f} | "
            f"{row['spike reported as a change']:.2f} | {row['10% step found within 3 nights']:.2f} | "
            f"{row['5% step found within 10 nights']:.2f} |"
        )


if __name__ == "__main__":
    main()
