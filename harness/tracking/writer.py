"""Write suite runs into MLflow in the harness layout, for results that did not come from ``harness run``.

This is public API (docs/reports.md, "Writing results from Python"): :func:`write_suite_run` takes
:class:`CellToWrite` rows and writes them as the same records ``harness run`` writes (encoded by
:mod:`harness.tracking.layout`, written by :class:`harness.tracking.store.MlflowTracker`), so they appear in
reports, comparisons and exports like any suite run. ``harness import results`` and ``harness import
pytest-benchmark`` both write through it.

Nothing is lost on the way: every cell keeps its algorithm, environment and budget parameters, its spec
names, code versions, datasets and its own machine facts (a table whose rows came from several machines keeps
them apart). Nothing is half-written either: when any cell fails to reach the store, the runs already
created for this suite run are deleted and the error is raised.
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

    ``params`` are the algorithm's parameters (logged as ``algorithm.<name>``), ``environment_params`` the
    environment's (``environment.<name>``) and ``budget`` the budget profile's values (``budget.<name>``);
    ``unpaired_repeat``: the seed numbers a repeat that is not a seed (never paired across runs); ``tags`` the
    source's own cell tags.
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
    #: The environment's parameters and the budget (both part of what makes results comparable).
    environment_params: Mapping[str, Any] = field(default_factory=dict)
    budget: Mapping[str, Any] = field(default_factory=dict)
    #: The specs' names behind the labels (default: the label up to its first ``[``).
    algorithm_name: str = ""
    environment_name: str = ""
    #: Component -> code version (``algorithm``, ``environment``, ``metric.<name>``), as exports list them.
    code_versions: Mapping[str, str] = field(default_factory=dict)
    #: This cell's machine (``fingerprint``, ``cpu``, ``gpu``) where it is not the suite run's.
    machine: Mapping[str, Any] | None = None
    #: Datasets the cell read: ``{"name", "origin", "sha256", ...}`` (reports check the sha256 agrees).
    inputs: Sequence[Mapping[str, Any]] = ()


def _cell_result(item: CellToWrite, suite: str, profile: str, source: str, started: float) -> CellResult:
    versions = dict(item.code_versions)
    plugin = source[:100] or "import"
    cell = make_cell(
        suite=suite,
        profile=profile,
        algorithm=ComponentRef(item.algorithm_name or item.algorithm.split("[")[0], "1", plugin, "0",
                               dict(item.params), versions.get("algorithm", "")),
        environment=ComponentRef(item.environment_name or item.environment.split("[")[0], "1", plugin, "0",
                                 dict(item.environment_params), versions.get("environment", "")),
        seed=item.seed,
        metrics=tuple(item.metrics),
        budget=dict(item.budget),
        algorithm_label=item.algorithm,
        environment_label=item.environment,
        metric_code={k.removeprefix("metric."): v for k, v in versions.items() if k.startswith("metric.")},
    )  # fmt: skip
    where = f"cell {item.algorithm}/{item.environment}/seed={item.seed}"
    history = [
        (name, int(step), metric_number(name, value, f"{where}, step {step}"))
        for name, points in item.curves.items()
        for step, value in points
    ]
    return CellResult(
        cell=cell, status=item.status, metrics={k: metric_number(k, v, where) for k, v in item.metrics.items()},  # type: ignore[arg-type]
        history=history, error=item.error or None, started_at=started, finished_at=started, worker=plugin,
        record_id=uuid.uuid4().hex, inputs=[dict(i) for i in item.inputs],
    )  # fmt: skip


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
    reported: bool = False,
) -> str:
    """Write one suite run from outside ``harness run`` as the same records, through the same store writer;
    return the parent's run id.

    ``client``: an :class:`mlflow.MlflowClient` (its ``tracking_uri`` is the store written to). ``metrics``
    declares each metric (a :class:`MetricDeclaration`, or its ``suite.json`` dict: unit, direction,
    threshold, comparable_across_tasks, ...). ``machine`` holds the run's machine facts as
    :func:`harness.machine.machine_info` does (``fingerprint``, ``cpu``, ``gpu``, ``hostname``, ``versions``);
    a cell's own ``machine`` overrides it for that cell. ``source`` says where the results came from (a tool,
    a citation, a URL); ``reported=True`` marks results measured elsewhere (a paper's table): they are never
    taken for runs of this machine nor used as a hardware baseline. ``extra_tags`` are the source's own parent
    tags. Cells are written in the order given, which reports keep as the suite's order of environments.

    All or nothing: if a cell cannot be written, the runs created so far are deleted and the error raised.
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
    results = [_cell_result(item, suite, profile, source, started + index / 1000) for index, item in enumerate(cells)]
    environments = list(dict.fromkeys(item.environment for item in cells))
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
            "environments": environments,
            "source": source,
        },
        started_at=started,
        source=source,
        reported=reported,
    )
    parent = tracker.start_parent(run, extra_tags=extra_tags)
    written = [parent]
    try:
        base_tags = layout.run_tags(run)
        for sequence, (item, result) in enumerate(zip(cells, results, strict=True)):
            tags = {**base_tags, **(layout.cell_machine_tags(item.machine) if item.machine else {}), **dict(item.tags)}
            written.append(
                tracker.log_cell(result, parent, tags, unpaired_repeat=item.unpaired_repeat, sequence=sequence)
            )
        tracker.finish_parent(parent, results)
    except BaseException:
        _delete_runs(client, written)
        raise
    return parent


def delete_suite_run(client: Any, parent_run_id: str) -> None:
    """Remove a suite run written by :func:`write_suite_run`: its cell runs, then the parent (the undo of an
    import that failed after this run was written; readers never see deleted runs)."""
    try:
        experiment_id = client.get_run(parent_run_id).info.experiment_id
        cells: list[str] = []
        token = None
        while True:
            page = client.search_runs(
                [experiment_id], f"tags.`{layout.MLFLOW_PARENT}` = '{parent_run_id}'", max_results=5000,
                page_token=token,
            )  # fmt: skip
            cells += [run.info.run_id for run in page]
            token = page.token
            if not token:
                break
    except Exception:  # a store that is gone keeps them; the original error is what the user must hear about
        cells = []
    _delete_runs(client, [parent_run_id, *cells])


def _delete_runs(client: Any, run_ids: Sequence[str]) -> None:
    """Remove a half-written suite run (readers never see deleted runs); a store that is gone keeps them, and
    the parent is still ``running``, which readers skip."""
    for run_id in reversed(run_ids):
        try:
            client.delete_run(run_id)
        except Exception:  # the original error is what the user must hear about
            pass


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
