"""Change-point detectors on TCPD (human-annotated) and on simulated nightly histories; timing of our default.

    .venv/bin/python benchmarks/changepoint/run.py --tcpd /path/to/TCPD [--histories 500] [--out results.json]

``--tcpd`` is a checkout of https://github.com/alan-turing-institute/TCPD or a bare git directory of it (read at
HEAD with ``git show``); its commit is recorded. The data stays there: TCPD is not copied into this repository.
Only the univariate series whose JSON file is in the repository are used (the others are downloaded by TCPD's
scripts from the internet); the list used is printed and saved.

Scores follow TCPDBench's protocol (analysis/scripts/summarize.py and metrics.py): change points outside
``[1, n - 2]`` are dropped, F1 with a margin of 5 and covering against the annotations of every annotator
(:func:`harness.analysis.stats.changepoint.annotation_f1`, ``annotation_covering``). Missing values are left out
before a detector runs and its positions mapped back.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from candidates import CANDIDATES, Detector

from harness.analysis.stats import detect_change_points
from harness.analysis.stats.changepoint import annotation_covering, annotation_f1

HERE = Path(__file__).parent


# --- TCPD --------------------------------------------------------------------------------------------------


def _read_tcpd(path: Path) -> tuple[str, dict[str, dict], dict[str, dict]]:
    """(commit, datasets by name, annotations by name) from a TCPD checkout or bare git directory."""
    bare = not (path / "datasets").is_dir()
    git = ["git", "--git-dir", str(path)] if bare else ["git", "-C", str(path)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()

    def read(name: str) -> str:
        if bare:
            return subprocess.run([*git, "show", f"HEAD:{name}"], capture_output=True, text=True, check=True).stdout
        return (path / name).read_text()

    if bare:
        listing = subprocess.run(
            [*git, "ls-tree", "-r", "--name-only", "HEAD", "datasets"], capture_output=True, text=True, check=True
        ).stdout.split()
    else:
        listing = [str(p.relative_to(path)) for p in sorted((path / "datasets").glob("*/*.json"))]
    datasets = {}
    for name in sorted(listing):
        parts = name.split("/")
        if len(parts) == 3 and parts[2] == f"{parts[1]}.json":
            data = json.loads(read(name))
            if data["n_dim"] == 1:
                datasets[data["name"]] = data
    return commit, datasets, json.loads(read("annotations.json"))


def _with_missing_left_out(detect: Detector, raw: np.ndarray) -> list[int]:
    finite = np.flatnonzero(np.isfinite(raw))
    found = detect(raw[finite])
    return sorted({int(finite[i]) for i in found if 0 <= i < finite.size})


def score_tcpd(path: Path, detectors: dict[str, Detector]) -> dict:
    commit, datasets, annotations = _read_tcpd(path)
    scores: dict[str, dict[str, dict[str, float]]] = {name: {} for name in detectors}
    for dataset, data in datasets.items():
        raw = np.array([np.nan if v is None else float(v) for v in data["series"][0]["raw"]])
        n_obs = data["n_obs"]
        for name, detect in detectors.items():
            found = _with_missing_left_out(detect, raw)
            found = sorted({x for x in found if 1 <= x < n_obs - 1})  # TCPDBench's clean_cps
            scores[name][dataset] = {
                "f1": annotation_f1(annotations[dataset], found),
                "cover": annotation_covering(annotations[dataset], found, n_obs),
                "found": found,
            }
    return {"commit": commit, "datasets": sorted(datasets), "scores": scores}


def compare_published(tcpd: dict, ours: str) -> list[dict]:
    """Per published method: its mean F1 and covering over the series where it has a score, and ours there."""
    published = json.loads((HERE / "published_default_scores.json").read_text())
    rows = []
    methods = list(next(iter(published["f1"].values())))
    for method in methods:
        row: dict = {"method": method}
        for metric in ("f1", "cover"):
            series = [d for d in tcpd["datasets"] if published[metric][d][method] is not None]
            row[f"n_{metric}"] = len(series)
            row[f"{metric}_published"] = statistics.fmean(published[metric][d][method] for d in series)
            row[f"{metric}_ours"] = statistics.fmean(tcpd["scores"][ours][d][metric] for d in series)
        rows.append(row)
    return rows


# --- Simulated nightly histories -----------------------------------------------------------------------------

NIGHTS = 100
LEVEL = 100.0


def _gaussian(rng: np.random.Generator) -> np.ndarray:
    return LEVEL + rng.normal(0, 3, NIGHTS)


def _student_t3(rng: np.random.Generator) -> np.ndarray:
    return LEVEL + 3 * rng.standard_t(3, NIGHTS)


def _bimodal(share_slow: float) -> Callable[[np.random.Generator], np.ndarray]:
    def make(rng: np.random.Generator) -> np.ndarray:
        slow = rng.random(NIGHTS) < share_slow
        return LEVEL * np.where(slow, 1.10, 1.0) + rng.normal(0, 1, NIGHTS)

    return make


def _spiked(rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    values = _gaussian(rng)
    nights = sorted(rng.choice(np.arange(NIGHTS), size=3, replace=False).tolist())
    values[nights] *= rng.uniform(1.3, 3.0, size=3)
    return values, nights


NOISE = {
    "Gaussian 3%": _gaussian,
    "Student t3, scale 3%": _student_t3,
    "bimodal 0% / +10% (half the nights), 1% noise": _bimodal(0.5),
    "bimodal 0% / +10% (a fifth of the nights), 1% noise": _bimodal(0.2),
}


def simulate(detectors: dict[str, Detector], histories: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {name: {} for name in detectors}
    for name, detect in detectors.items():
        row = results[name]
        for noise, make in NOISE.items():
            rng = np.random.default_rng(1)
            row[f"quiet: {noise}"] = statistics.fmean(not detect(make(rng)) for _ in range(histories))
        rng = np.random.default_rng(2)
        quiet = spike_changes = 0
        for _ in range(histories):
            values, nights = _spiked(rng)
            found = detect(values)
            quiet += not found
            spike_changes += any(abs(f - s) <= 1 or abs(f - (s + 1)) <= 1 for f in found for s in nights)
        row["quiet: 3 one-night spikes of +30..200%"] = quiet / histories
        row["spike reported as a change"] = spike_changes / histories
        for step, within in ((0.10, 3), (0.05, 10)):
            rng = np.random.default_rng(3)
            hits = 0
            for _ in range(histories):
                at = int(rng.integers(20, 81))
                values = _gaussian(rng)
                values[at:] += LEVEL * step
                hits += any(abs(f - at) <= within for f in detect(values))
            row[f"{step:.0%} step found within {within} nights"] = hits / histories
        rng = np.random.default_rng(4)
        counts = []
        for _ in range(max(histories // 5, 20)):
            values = LEVEL * (1 + 0.003 * np.arange(NIGHTS)) + rng.normal(0, 3, NIGHTS)
            counts.append(len(detect(values)))
        row["drift 0.3%/night: median change points"] = float(np.median(counts))
        row["drift 0.3%/night: max change points"] = float(max(counts))
    return results


def interval_coverage(histories: int) -> dict[str, float]:
    """How often the default's 95% interval holds the true relative step, for steps it found within 3 nights."""
    out = {}
    for step in (0.10, 0.05):
        rng = np.random.default_rng(6)
        found = covered = 0
        for _ in range(histories):
            at = int(rng.integers(20, 81))
            values = _gaussian(rng)
            values[at:] *= 1 + step
            for change in detect_change_points(values).changes:
                if abs(change.index - at) <= 3:
                    found += 1
                    covered += change.low <= step <= change.high
                    break
        out[f"{step:.0%} step: interval holds it"] = covered / max(found, 1)
    return out


def time_default() -> dict[str, float]:
    """One call of the default on 365 nights (noise, a step and a spike), and the publish command's load."""
    rng = np.random.default_rng(5)
    values = LEVEL + rng.normal(0, 3, 365)
    values[200:] += 8
    values[100] *= 2
    detect_change_points(values)  # imports
    times = []
    for _ in range(200):
        start = time.perf_counter()
        detect_change_points(values)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(50 * 4):
        detect_change_points(LEVEL + rng.normal(0, 3, 365))
    publish = time.perf_counter() - start
    return {
        "median_ms_365": 1000 * statistics.median(times),
        "p95_ms_365": 1000 * float(np.quantile(times, 0.95)),
        "publish_50x4_series_of_365_s": publish,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tcpd", type=Path, required=True, help="a TCPD checkout or bare git directory")
    parser.add_argument("--histories", type=int, default=500, help="simulated histories per scenario")
    parser.add_argument("--only", nargs="*", help="candidates whose name contains one of these")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    detectors = {k: v for k, v in CANDIDATES.items() if not args.only or any(o in k for o in args.only)}
    started = datetime.now(UTC).isoformat(timespec="seconds")
    tcpd = score_tcpd(args.tcpd, detectors)
    print(f"TCPD {tcpd['commit']}: {len(tcpd['datasets'])} univariate series: {' '.join(tcpd['datasets'])}")
    print("| candidate | TCPD F1 | TCPD cover |")
    for name in detectors:
        s = tcpd["scores"][name]
        f1, cover = statistics.fmean(v["f1"] for v in s.values()), statistics.fmean(v["cover"] for v in s.values())
        print(f"| {name} | {f1:.3f} | {cover:.3f} |", flush=True)
    simulated = simulate(detectors, args.histories)
    for name, row in simulated.items():
        print(name, json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
    result = {
        "started": started,
        "machine": f"{platform.node()} {platform.processor() or platform.machine()} {platform.python_version()}",
        "command": " ".join(sys.argv),
        "histories": args.histories,
        "tcpd": tcpd,
        "simulated": simulated,
    }
    if "harness default" in detectors:
        result["published_comparison"] = compare_published(tcpd, "harness default")
        for row in result["published_comparison"]:
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
        result["interval_coverage"] = interval_coverage(args.histories)
        print(result["interval_coverage"])
        result["timing"] = time_default()
        print(result["timing"])
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
