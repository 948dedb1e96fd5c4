"""Issue 17's table: per-algorithm scores with Student t intervals, and each algorithm's ratio to a baseline.

Reads the summaries `harness run ... --json` printed (one or more files), takes ``METRIC`` (default
normalized_score, the last evaluation) of each finished cell, groups by algorithm label, and prints per label the
per-seed values, mean and 95% t interval over seeds, then for each ``--ratio NUM/DEN`` the ratio of means with a
95% percentile bootstrap interval (scipy.stats.bootstrap, seeds of each algorithm resampled independently).

    python benchmarks/d4rl/ratio.py offline.json o2o.json --ratio arsq/iql --ratio arsq/td3-bc \
        --ratio arsq-o2o/iql-o2o
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats


def scores(paths: list[Path], metric: str) -> dict[str, dict[int, float]]:
    by_label: dict[str, dict[int, float]] = defaultdict(dict)
    for path in paths:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["status"] != "ok" or metric not in cell["metrics"]:
                continue
            algorithm, _environment, seed = cell["label"].split("/")
            by_label[algorithm][int(re.sub(r"\D", "", seed))] = float(cell["metrics"][metric])
    return dict(by_label)


def t_interval(values: np.ndarray) -> tuple[float, float]:
    if len(values) < 2:
        return float("nan"), float("nan")
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    return float(low), float(high)


def ratio_interval(numerator: np.ndarray, denominator: np.ndarray) -> tuple[float, float]:
    result = stats.bootstrap(
        (numerator, denominator),
        lambda x, y, axis=-1: np.mean(x, axis=axis) / np.mean(y, axis=axis),
        paired=False,
        vectorized=True,
        n_resamples=10_000,
        method="percentile",
        random_state=0,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("summaries", nargs="+", type=Path)
    parser.add_argument("--metric", default="normalized_score")
    parser.add_argument("--ratio", action="append", default=[], help="NUMERATOR/DENOMINATOR algorithm labels")
    args = parser.parse_args()
    table = scores(args.summaries, args.metric)
    print(f"| algorithm | {args.metric} per seed | mean | 95% t interval |")
    print("|---|---|---|---|")
    for label, by_seed in table.items():
        values = np.array([by_seed[s] for s in sorted(by_seed)])
        low, high = t_interval(values)
        seeds = ", ".join(f"{s}: {by_seed[s]:.1f}" for s in sorted(by_seed))
        print(f"| {label} | {seeds} | **{values.mean():.1f}** | [{low:.1f}, {high:.1f}] |")
    for spec in args.ratio:
        numerator, denominator = spec.split("/")
        x, y = (np.array(list(table[name].values())) for name in (numerator, denominator))
        low, high = ratio_interval(x, y)
        ratio = x.mean() / y.mean()
        print(f"\n{numerator} / {denominator}: {ratio:.2f}, bootstrap 95% interval [{low:.2f}, {high:.2f}]")


if __name__ == "__main__":
    main()
