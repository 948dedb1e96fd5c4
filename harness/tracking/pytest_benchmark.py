"""pytest-benchmark's saved JSON as harness suite runs, so microbenchmarks join reports and comparisons.

A file (``pytest --benchmark-json=FILE`` or ``--benchmark-autosave``) becomes one suite run; each benchmark
becomes one cell whose algorithm is the test name (with its parameters) and whose environment is the
benchmark's group (``default`` without one). Its statistics become metrics in seconds (lower is better) and
operations per second (higher is better); ``rounds`` and ``iterations`` are parameters, not metrics (more
rounds is not better code); ``machine_info`` and ``commit_info`` become tags.

Per-round data (saved with ``--benchmark-save-data`` as ``stats.data``) is kept: every round as the curve
``round_s`` of the benchmark's cell, and as repeats that comparisons can test, ``bench_round_s`` in cells
``round=<i>`` of the same case (each round with up to :data:`MAX_ROUND_REPEATS` rounds, else the mean of each
of :data:`MAX_ROUND_REPEATS` consecutive batches of rounds). Those repeats carry the unpaired-repeat mark
(:attr:`harness.record.CellRun.unpaired_repeat`): round i of one file has nothing to do with round i of
another, so ``compare`` never pairs them.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.errors import BadInput
from harness.record import MetricDeclaration
from harness.tracking.writer import CellToWrite, write_suite_run

#: pytest-benchmark statistic -> (metric name, unit, direction).
STATISTICS = {
    "min": ("bench_min_s", "s", "lower"),
    "max": ("bench_max_s", "s", "lower"),
    "mean": ("bench_mean_s", "s", "lower"),
    "median": ("bench_median_s", "s", "lower"),
    "stddev": ("bench_stddev_s", "s", "lower"),
    "iqr": ("bench_iqr_s", "s", "lower"),
    "ops": ("bench_ops_per_s", "ops/s", "higher"),
}
#: Counts that describe how a benchmark was run: parameters of its cell, never metrics.
RUN_COUNTS = ("rounds", "iterations")
ROUND_METRIC = "bench_round_s"
ROUND_CURVE = "round_s"
MAX_ROUND_REPEATS = 50
MAX_ROUND_CURVE_POINTS = 10_000


def round_repeats(rounds: list[float]) -> list[float]:
    """The rounds themselves, or the means of ``MAX_ROUND_REPEATS`` consecutive batches of them."""
    import numpy as np

    if len(rounds) <= MAX_ROUND_REPEATS:
        return [float(v) for v in rounds]
    return [float(batch.mean()) for batch in np.array_split(np.asarray(rounds, dtype=float), MAX_ROUND_REPEATS)]


def _machine(data: dict[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's ``machine_info`` as the harness's machine facts (what comparisons filter on)."""
    machine = data.get("machine_info") or {}
    cpu = machine.get("cpu") or {}
    cpu_name = str(cpu.get("brand_raw") or cpu.get("brand") or machine.get("processor") or "unknown")
    python = str(machine.get("python_version", "none"))
    comparable = json.dumps({"cpu": cpu_name, "python": python})
    return {
        "fingerprint": hashlib.sha256(comparable.encode()).hexdigest()[:12],
        "cpu": cpu_name,
        "gpu": "none",
        "hostname": str(machine.get("node", "")),
        "versions": {"python": python},
    }


def _source_tags(data: dict[str, Any]) -> dict[str, str]:
    """pytest-benchmark's own facts that have no harness field, kept under its own tag names."""
    machine = data.get("machine_info") or {}
    tags = {"pytest_benchmark.version": str(data.get("version", ""))}
    for key in ("machine", "system", "release", "python_implementation", "python_compiler"):
        if machine.get(key):
            tags[f"pytest_benchmark.machine.{key}"] = str(machine[key])[:500]
    return tags


def import_file(
    path: Path, tracking_uri: str, *, suite: str = "pytest-benchmark", profile: str = "pytest-benchmark"
) -> str:
    """Log one pytest-benchmark JSON file as a suite run; return the parent run id."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not a readable JSON file ({exc})") from None
    benchmarks = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(benchmarks, list):
        raise BadInput(f"{path}: no 'benchmarks' list; is this a pytest-benchmark --benchmark-json file?")
    cells = []
    for index, bench in enumerate(benchmarks):
        stats = bench.get("stats") if isinstance(bench, dict) else None
        if not isinstance(stats, dict) or "name" not in bench:
            raise BadInput(f"{path}: benchmarks[{index}] has no 'name' or 'stats'")
        metrics = {
            name: float(stats[key])
            for key, (name, _unit, _direction) in STATISTICS.items()
            if isinstance(stats.get(key), (int, float))
        }
        params = dict(bench.get("params") or {})
        params["fullname"] = str(bench.get("fullname", bench["name"]))
        for key in RUN_COUNTS:
            if isinstance(stats.get(key), (int, float)):
                params[key] = int(stats[key])
        rounds = [float(v) for v in stats.get("data") or [] if isinstance(v, (int, float))]
        algorithm, environment = str(bench["name"]), str(bench.get("group") or "default")
        curve = {ROUND_CURVE: list(enumerate(rounds[:MAX_ROUND_CURVE_POINTS]))} if rounds else {}
        cells.append(CellToWrite(algorithm, environment, 0, metrics=metrics, params=params, curves=curve))
        for repeat, value in enumerate(round_repeats(rounds) if len(rounds) >= 2 else []):
            cells.append(
                CellToWrite(algorithm, environment, repeat, metrics={ROUND_METRIC: value},
                            params={**params, "round": repeat}, unpaired_repeat=True)
            )  # fmt: skip
    from mlflow.tracking import MlflowClient

    started = None
    if data.get("datetime"):
        try:
            started = datetime.fromisoformat(str(data["datetime"]).replace("Z", "+00:00")).timestamp()
        except ValueError:
            started = None
    declarations = {
        name: MetricDeclaration(name, unit, direction, 0.05, f"pytest-benchmark {key}")
        for key, (name, unit, direction) in STATISTICS.items()
    }
    declarations[ROUND_METRIC] = MetricDeclaration(
        ROUND_METRIC, "s", "lower", 0.05,
        f"time of one round (with more than {MAX_ROUND_REPEATS} rounds: the mean of each of "
        f"{MAX_ROUND_REPEATS} consecutive batches); the repeats comparisons test",
    )  # fmt: skip
    commit = data.get("commit_info") or {}
    return write_suite_run(
        MlflowClient(tracking_uri=tracking_uri),
        suite=suite,
        profile=profile,
        metrics=declarations,
        cells=cells,
        machine=_machine(data),
        git_commit=str(commit.get("id") or "none"),
        git_dirty=bool(commit.get("dirty")),
        plugins={"pytest-benchmark": str(data.get("version", ""))},
        start_time=started,
        source="pytest-benchmark",
        extra_tags=_source_tags(data),
    )
