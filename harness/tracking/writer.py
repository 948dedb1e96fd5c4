"""Write suite runs into MLflow in the harness layout, for results that did not come from ``harness run``.

``harness import pytest-benchmark`` uses it, so microbenchmarks appear in the same reports and comparisons
as suite results: the same records, encoded by :mod:`harness.tracking.layout`, written by
:class:`harness.tracking.store.MlflowTracker`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.record import CellResult, ComponentRef, MetricDeclaration, SuiteRunRecord, make_cell, metric_number
from harness.tracking import layout


@dataclass
class CellToWrite:
    """One cell: labels, seed, status, metric values and curves (name -> [(step, value)]).

    ``params`` are the algorithm's parameters (logged as ``algorithm.<name>``); ``unpaired_repeat``: the seed
    numbers a repeat that is not a seed (never paired across runs); ``tags`` the source's own cell tags.
    """

    algorithm: str
    environment: str
    seed: int = 0
    status: str = "ok"
    metrics: Mapping[str, float] = field(default_factory=dict)
    curves: Mapping[str, Sequence[tuple[int, float]]] = field(default_factory=dict)
    error: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    unpaired_repeat: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)


def write_suite_run(
    client: Any,
    *,
    suite: str,
    profile: str,
    metrics: Mapping[str, MetricDeclaration | Mapping[str, Any]],
    cells: Sequence[CellToWrite],
    machine: Mapping[str, Any],
    git_commit: str = "none",
    git_dirty: bool = False,
    plugins: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    start_time: float | None = None,
    source: str = "import",
    extra_tags: Mapping[str, str] | None = None,
) -> str:
    """Write one suite run from outside ``harness run`` as the same records, through the same store writer;
    return the parent's run id.

    ``metrics`` declares each metric (a :class:`MetricDeclaration`, or its ``suite.json`` dict: unit,
    direction, threshold, ...). ``machine`` holds the source's machine facts as
    :func:`harness.machine.machine_info` does (``fingerprint``, ``cpu``, ``gpu``, ``hostname``, ``versions``);
    ``extra_tags`` are the source's own parent tags. Names given here are external (a pytest test name, a
    group): the algorithm's name is the label up to its first ``[``.
    """
    from harness.paths import safe_name
    from harness.tracking.store import MlflowTracker

    # Readers make report and export file names of these: refuse a traversal before it reaches a shared store.
    safe_name(suite, "suite", f"{source}: --suite")
    safe_name(profile, "profile", f"{source}: --profile")
    declarations = {
        name: spec if isinstance(spec, MetricDeclaration) else MetricDeclaration.from_dict(name, spec)
        for name, spec in metrics.items()
    }
    tracker = MlflowTracker(client.tracking_uri)
    started = start_time if start_time is not None else time.time()
    results = []
    for index, item in enumerate(cells):
        cell = make_cell(
            suite=suite,
            profile=profile,
            algorithm=ComponentRef(item.algorithm.split("[")[0], "1", source, "0", dict(item.params)),
            environment=ComponentRef(item.environment.split("[")[0], "1", source, "0"),
            seed=item.seed,
            metrics=tuple(item.metrics),
            algorithm_label=item.algorithm,
            environment_label=item.environment,
        )
        where = f"cell {item.algorithm}/{item.environment}/seed={item.seed}"
        history = [
            (name, int(step), metric_number(name, value, f"{where}, step {step}"))
            for name, points in item.curves.items()
            for step, value in points
        ]
        results.append(
            CellResult(
                cell=cell, status=item.status, metrics={k: metric_number(k, v, where) for k, v in item.metrics.items()},  # type: ignore[arg-type]
                history=history, error=item.error or None, started_at=started + index / 1000,
                finished_at=started + index / 1000, worker=source, record_id=uuid.uuid4().hex,
            )
        )  # fmt: skip
    run = SuiteRunRecord(
        suite=suite,
        profile=profile,
        config_id=SuiteRunRecord.compute_config_id(suite, profile, [r.cell.key for r in results]),
        cell_keys=[r.cell.key for r in results],
        tracking_uri=client.tracking_uri,
        machine=dict(machine),
        git_commit=git_commit,
        git_dirty=git_dirty,
        suite_info={
            "suite": suite,
            "profile": profile,
            "metrics": {name: declaration.to_dict() for name, declaration in declarations.items()},
            "thresholds": dict(thresholds or {}),
            "plugins": dict(plugins or {}),
            "cells": len(cells),
        },
        started_at=started,
        source=source,
    )
    parent = tracker.start_parent(run, extra_tags=extra_tags)
    base_tags = layout.run_tags(run)
    for item, result in zip(cells, results, strict=True):
        tracker.log_cell(result, parent, {**base_tags, **dict(item.tags)}, unpaired_repeat=item.unpaired_repeat)
    tracker.finish_parent(parent, results)
    return parent


def log_calibration(client: Any, experiment_id: str, calibration: Any) -> str:
    """Record a :class:`harness.analysis.calibration.Calibration` as an MLflow run (``harness.kind=calibration``)
    next to the suite's runs."""
    import math

    from mlflow.entities import Metric, Param, RunTag

    run = client.create_run(
        experiment_id,
        run_name=f"calibration {calibration.suite}:{calibration.profile}",
        tags={
            layout.KIND: layout.KIND_CALIBRATION,
            layout.SUITE: calibration.suite,
            layout.PROFILE: calibration.profile,
            layout.FINGERPRINT: calibration.fingerprint,
        },
    )
    now = int(time.time() * 1000)
    metrics = []
    for name, entry in calibration.metrics.items():
        for field_name in ("cv", "threshold", "repeats_needed"):
            value = float(getattr(entry, field_name))
            if math.isfinite(value):
                metrics.append(Metric(f"{name}.{field_name}", value, now, 0))
    params = [Param("runs", str(len(calibration.runs))), Param("alpha", str(calibration.alpha))]
    client.log_batch(
        run.info.run_id,
        metrics=metrics[:900],
        params=params,
        tags=[RunTag("calibrated_runs", ",".join(calibration.runs)[:4000])],
    )
    client.log_text(run.info.run_id, json.dumps(calibration.to_dict(), indent=2), "calibration.json")
    client.set_terminated(run.info.run_id)
    return run.info.run_id
