"""Write suite runs into MLflow in the harness layout, for results that did not come from ``harness run``.

``harness import pytest-benchmark`` uses it, so microbenchmarks appear in the same reports and comparisons
as suite results. The layout is the one :mod:`harness.tracking.store` writes and :mod:`harness.tracking.reader` reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.tracking import layout
from harness.tracking.record import SCHEMA_VERSION


@dataclass
class CellToWrite:
    """One cell: labels, seed, status, metric values (step 0) and curves (name -> [(step, value)])."""

    algorithm: str
    environment: str
    seed: int = 0
    status: str = "ok"
    metrics: Mapping[str, float] = field(default_factory=dict)
    curves: Mapping[str, Sequence[tuple[int, float]]] = field(default_factory=dict)
    error: str = ""
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


def write_suite_run(
    client: Any,
    *,
    suite: str,
    profile: str,
    metrics: Mapping[str, Mapping[str, Any]],
    cells: Sequence[CellToWrite],
    tags: Mapping[str, str],
    thresholds: Mapping[str, float] | None = None,
    start_time: float | None = None,
) -> str:
    """Create one parent run with nested cell runs; return the parent's run id.

    ``metrics`` maps each metric name to ``{"unit", "direction", "threshold", "description"}``; ``tags`` are
    the parent's machine and version tags (``harness.fingerprint``, ``harness.machine.cpu``, ...), copied to
    every cell as the tracker does.
    """
    from mlflow.entities import Metric, Param

    experiment = client.get_experiment_by_name(suite)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(suite, tags={layout.EXPERIMENT_KIND: layout.EXPERIMENT_KIND_VALUE})
    )
    started = start_time if start_time is not None else time.time()
    parent_tags = {
        "harness.kind": "suite-run",
        "harness.suite": suite,
        "harness.profile": profile,
        "harness.status": "running",
        **dict(tags),
    }
    parent = client.create_run(
        experiment_id, start_time=int(started * 1000), tags=parent_tags, run_name=f"{suite}:{profile}"
    )
    parent_id = parent.info.run_id
    suite_info = {
        "suite": suite,
        "profile": profile,
        "metrics": {name: dict(spec) for name, spec in metrics.items()},
        "thresholds": dict(thresholds or {}),
        "cells": len(cells),
    }
    client.log_text(parent_id, json.dumps(suite_info, indent=2), "suite.json")
    machine_tags = {k: v for k, v in tags.items() if k.startswith(("harness.machine.", "harness.versions."))}
    machine_tags["harness.fingerprint"] = tags.get("harness.fingerprint", "")
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    for index, cell in enumerate(cells):
        counts[cell.status] = counts.get(cell.status, 0) + 1
        cell_tags = {
            **machine_tags,
            "mlflow.parentRunId": parent_id,
            "harness.kind": "cell",
            "harness.suite": suite,
            "harness.profile": profile,
            "harness.cell_key": f"{cell.algorithm}/{cell.environment}/{cell.seed}",
            "harness.record_id": f"{parent_id}-{index}",
            "harness.status": cell.status,
            "harness.algorithm": cell.algorithm,
            "harness.algorithm_name": cell.algorithm.split("[")[0],
            "harness.environment": cell.environment,
            "harness.environment_name": cell.environment.split("[")[0],
            "harness.seed": str(cell.seed),
            layout.SCHEMA_VERSION: str(SCHEMA_VERSION),
            **dict(cell.tags),
        }
        if cell.error:
            cell_tags["harness.error"] = cell.error[:5000]
        run = client.create_run(
            experiment_id,
            start_time=int(started * 1000) + index,
            tags=cell_tags,
            run_name=f"{cell.algorithm}/{cell.environment}/seed{cell.seed}",
        )
        now = int(time.time() * 1000)
        metric_entities = [Metric(name, float(value), now, 0) for name, value in cell.metrics.items()]
        for name, points in cell.curves.items():
            metric_entities += [Metric(layout.curve_key(name), float(value), now, int(step)) for step, value in points]
        params = [
            Param("algorithm", cell.algorithm.split("[")[0]),
            Param("environment", cell.environment.split("[")[0]),
            Param("seed", str(cell.seed)),
        ] + [Param(key, str(value)[:6000]) for key, value in cell.params.items()]
        for start in range(0, max(len(metric_entities), 1), 900):
            client.log_batch(
                run.info.run_id,
                metrics=metric_entities[start : start + 900],
                params=params if start == 0 else [],
            )
        record = {
            "status": cell.status,
            "metrics": dict(cell.metrics),
            "history": [
                [name, int(step), float(value)] for name, points in cell.curves.items() for step, value in points
            ],
            "error": cell.error or None,
            "cell": {
                "suite": suite,
                "profile": profile,
                "seed": cell.seed,
                "label": f"{cell.algorithm}/{cell.environment}",
            },
        }
        client.log_text(run.info.run_id, json.dumps(record), "cell.json")
        client.set_terminated(run.info.run_id, status="FAILED" if cell.status == "failed" else "FINISHED")
    from mlflow.entities import RunTag

    now = int(time.time() * 1000)
    client.log_batch(
        parent_id,
        metrics=[Metric(f"cells_{k}", float(v), now, 0) for k, v in counts.items()],
        tags=[RunTag("harness.status", "finished" if not counts.get("failed") else "finished with failures")],
    )
    client.set_terminated(parent_id, status="FAILED" if counts.get("failed") else "FINISHED")
    return parent_id
