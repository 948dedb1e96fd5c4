"""Suite runs read back from MLflow: the one place that knows the tracking layout reports depend on.

The layout is written by :mod:`harness.tracking.store` (and by ``harness import pytest-benchmark``): one experiment
per suite, one parent run per suite invocation (``harness.kind=suite-run``) carrying ``suite.json``, and one
nested run per cell (``harness.kind=cell``) carrying ``cell.json``. Everything here works against any
tracking URI through :class:`mlflow.MlflowClient`.

Selectors (``harness report`` / ``compare`` arguments) name a suite run:

* a run id (a cell's run id selects its parent);
* ``latest`` (newest finished suite run), ``latest~N`` (the N-th before it);
* ``baseline`` (newest run tagged ``baseline=true``);
* ``KEY=VALUE`` (newest run with that tag, for example ``harness.git_commit=abc123``);
* a suite name (newest run of that suite's experiment).

All but run ids and suite names need a suite to look in: given with ``--suite``, or taken from the other
side of a comparison.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BadInput
from harness.tracking import layout
from harness.tracking.store import sqlite_path

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_LATEST = re.compile(r"^latest(?:~(\d+))?$")
VERSION_TAG_PREFIX = "harness.versions."
#: Tags that decide whether two runs' timings can be compared (the fingerprint hashes the same facts).
FINGERPRINT_FIELDS = ("harness.machine.cpu", "harness.machine.gpu")

#: A cell tag saying its seed numbers repeats that are not seeds (pytest-benchmark rounds): never paired.
UNPAIRED_REPEAT_TAG = "harness.repeat.unpaired"

_TIME_UNITS = {"s", "ms", "us", "µs", "ns", "min", "h"}
_MEMORY_UNITS = {"b", "bytes", "kb", "kib", "mb", "mib", "gb", "gib"}


def is_timing_unit(unit: str) -> bool:
    """Whether a metric's unit says it measures time or a rate (so its noise depends on the machine)."""
    unit = unit.strip()
    return unit in _TIME_UNITS or unit.endswith("/s")


@dataclass(frozen=True)
class MetricInfo:
    """What a suite run declares about one metric (from ``suite.json``)."""

    name: str
    unit: str = ""
    direction: str = "higher"
    threshold: float = 0.05
    description: str = ""
    comparable_across_tasks: bool = False
    depends_on_hardware: bool | None = None  # None: decided from the unit (see is_hardware_dependent)

    @property
    def higher_is_better(self) -> bool:
        return self.direction != "lower"

    @property
    def is_timing(self) -> bool:
        return is_timing_unit(self.unit)

    @property
    def is_hardware_dependent(self) -> bool:
        """Whether the metric's value changes with the machine (timings, throughput, memory)."""
        if self.depends_on_hardware is not None:
            return self.depends_on_hardware
        return is_timing_unit(self.unit) or self.unit.strip().lower() in _MEMORY_UNITS


@dataclass
class CellRun:
    """One cell of a suite run as MLflow holds it: the latest attempt of its cell key.

    ``algorithm`` and ``environment`` are the suite's labels, read from their own tags (never split out of a
    run name); ``environment`` carries ``[generated data]`` when the cell's dataset was generated and its
    label does not say so already. Curves are read from their metric histories on first use.
    """

    run_id: str
    status: str
    algorithm: str
    environment: str
    seed: int
    error: str = ""
    cell_key: str = ""
    algorithm_name: str = ""
    environment_name: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    inputs: list[dict[str, str]] = field(default_factory=list)
    start_time_ms: int = 0
    _curves: dict[str, list[tuple[int, float]]] | None = field(default=None, repr=False)
    _curve_loader: Any = field(default=None, repr=False, compare=False)

    @property
    def curves(self) -> dict[str, list[tuple[int, float]]]:
        if self._curves is None:
            self._curves = self._curve_loader(self) if self._curve_loader is not None else {}
        return self._curves

    @property
    def code_versions(self) -> dict[str, str]:
        return {k.removeprefix(layout.CODE_PREFIX): v for k, v in self.tags.items() if k.startswith(layout.CODE_PREFIX)}

    @property
    def case(self) -> tuple[str, str]:
        """(algorithm label, environment label): what repeats of the same measurement share."""
        return self.algorithm, self.environment


@dataclass
class SuiteRun:
    """One suite invocation with its cells, metric declarations and machine facts."""

    run_id: str
    experiment_id: str
    suite: str
    profile: str
    status: str
    start_time_ms: int
    tags: dict[str, str]
    metric_info: dict[str, MetricInfo]
    thresholds: dict[str, float]
    cells: list[CellRun]
    run_name: str = ""
    #: The suite's ``[report]`` declaration as suite.json holds it (e.g. ``{"pareto": [["x", "y"], ...]}``).
    report_options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_baseline(self) -> bool:
        return self.tags.get("baseline") == "true"

    @property
    def fingerprint(self) -> str:
        return self.tags.get("harness.fingerprint", "")

    @property
    def machine(self) -> dict[str, str]:
        """Hardware and versions, by short name (``cpu``, ``gpu``, ``torch``, ...)."""
        facts = {
            "cpu": self.tags.get("harness.machine.cpu", ""),
            "gpu": self.tags.get("harness.machine.gpu", ""),
            "hostname": self.tags.get("harness.machine.hostname", ""),
        }
        for key, value in sorted(self.tags.items()):
            if key.startswith(VERSION_TAG_PREFIX):
                facts[key.removeprefix(VERSION_TAG_PREFIX)] = value
        return {k: v for k, v in facts.items() if v}

    @property
    def plugins(self) -> dict[str, str]:
        try:
            value = json.loads(self.tags.get("harness.plugins", "{}"))
        except json.JSONDecodeError:
            return {}
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}

    @property
    def metric_names(self) -> list[str]:
        names = {name for cell in self.cells for name in cell.metrics}
        return [n for n in self.metric_info if n in names] + sorted(names - set(self.metric_info))

    def info(self, metric: str) -> MetricInfo:
        """The metric's declaration, with the suite's threshold override applied."""
        base = self.metric_info.get(metric, MetricInfo(metric))
        if metric in self.thresholds:
            return dataclasses.replace(base, threshold=self.thresholds[metric])
        return base

    @property
    def ok_cells(self) -> list[CellRun]:
        return [cell for cell in self.cells if cell.status == "ok"]

    @property
    def label(self) -> str:
        return f"{self.suite}:{self.profile} {self.run_id[:8]}"


class RunStore:
    """Reads suite runs from one tracking URI."""

    def __init__(self, tracking_uri: str) -> None:
        path = sqlite_path(tracking_uri)
        if path is not None and not path.exists():
            raise BadInput(f"no MLflow store at {path}: run a suite first (harness run SUITE) or pass --tracking-uri")
        # Artifact downloads would otherwise draw a progress bar per cell on stderr.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)

    # -- finding runs ---------------------------------------------------------------------------------
    def experiment_id(self, suite: str) -> str:
        experiment = self.client.get_experiment_by_name(suite)
        if experiment is None:
            known = sorted(e.name for e in self.client.search_experiments() if e.name != "Default")
            raise BadInput(
                f"no suite named {suite!r} in {self.tracking_uri} (suites there: {', '.join(known) or 'none'})"
            )
        return experiment.experiment_id

    def suite_runs(
        self, suite: str, profile: str | None = None, extra_filter: str = "", finished_only: bool = True
    ) -> list[Any]:
        """MLflow parent runs of ``suite``, newest first."""
        clauses = ["tags.`harness.kind` = 'suite-run'"]
        if profile:
            clauses.append(f"tags.`harness.profile` = '{_quote(profile)}'")
        if extra_filter:
            clauses.append(extra_filter)
        runs = self._search([self.experiment_id(suite)], " and ".join(clauses))
        if finished_only:
            runs = [run for run in runs if run.data.tags.get("harness.status", "") != "running"]
        return sorted(runs, key=lambda run: (_sequence(run.data.tags), run.info.start_time or 0), reverse=True)

    def _search(self, experiment_ids: list[str], filter_string: str) -> list[Any]:
        found: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                experiment_ids, filter_string=filter_string, max_results=5000, page_token=token
            )
            found.extend(page)
            token = page.token
            if not token:
                return found

    def resolve(self, selector: str, suite: str | None = None, profile: str | None = None) -> str:
        """The run id of the suite run ``selector`` names (see the module docstring)."""
        selector = selector.strip()
        if _RUN_ID.match(selector):
            try:
                run = self.client.get_run(selector)
            except Exception as exc:
                raise BadInput(f"no run {selector} in {self.tracking_uri}: {exc}") from None
            if run.data.tags.get("harness.kind") == "cell":
                return run.data.tags["mlflow.parentRunId"]
            if run.data.tags.get("harness.kind") != "suite-run":
                raise BadInput(f"run {selector} is not a harness suite run (no tag harness.kind=suite-run)")
            return selector
        latest = _LATEST.match(selector)
        if latest or selector == "baseline" or "=" in selector:
            if not suite:
                raise BadInput(
                    f"{selector!r} needs a suite to look in: pass --suite NAME (or give a run id on the other side)"
                )
            if latest:
                runs = self.suite_runs(suite, profile)
                index = int(latest.group(1) or 0)
                if index >= len(runs):
                    raise BadInput(f"{selector}: suite {suite!r} has only {len(runs)} finished run(s)")
                return runs[index].info.run_id
            key, value = ("baseline", "true") if selector == "baseline" else selector.split("=", 1)
            runs = self.suite_runs(suite, profile, f"tags.`{_quote(key.strip())}` = '{_quote(value.strip())}'")
            if not runs:
                where = f"suite {suite!r}" + (f" profile {profile!r}" if profile else "")
                hint = " (promote one with: harness nightly SUITE --promote)" if selector == "baseline" else ""
                raise BadInput(f"no run tagged {key.strip()}={value.strip()} in {where}{hint}")
            return runs[0].info.run_id
        runs = self.suite_runs(selector, profile)
        if not runs:
            raise BadInput(f"suite {selector!r} has no finished runs in {self.tracking_uri}")
        return runs[0].info.run_id

    # -- loading --------------------------------------------------------------------------------------
    def load(self, run_id: str) -> SuiteRun:
        """The suite run with all its cells, metric values and curves."""
        parent = self.client.get_run(run_id)
        tags = dict(parent.data.tags)
        suite_info = self._artifact_json(run_id, "suite.json") or {}
        metric_info = {
            name: MetricInfo(
                name=name,
                unit=str(spec.get("unit", "")),
                direction=str(spec.get("direction", "higher")),
                threshold=float(spec.get("threshold", 0.05)),
                description=str(spec.get("description", "")),
                comparable_across_tasks=bool(spec.get("comparable_across_tasks", False)),
                depends_on_hardware=_optional_bool(spec.get("depends_on_hardware")),
            )
            for name, spec in (suite_info.get("metrics") or {}).items()
        }
        thresholds = {str(k): float(v) for k, v in (suite_info.get("thresholds") or {}).items()}
        children = self._search(
            [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}' and tags.`harness.kind` = 'cell'"
        )
        cells = latest_attempts([self._cell(child) for child in children])
        cells.sort(key=lambda c: (c.algorithm, c.environment, c.seed))
        return SuiteRun(
            run_id=run_id,
            experiment_id=parent.info.experiment_id,
            suite=tags.get("harness.suite", suite_info.get("suite", "")),
            profile=tags.get("harness.profile", suite_info.get("profile", "")),
            status=tags.get("harness.status", ""),
            start_time_ms=int(parent.info.start_time or 0),
            tags=tags,
            metric_info=metric_info,
            thresholds=thresholds,
            cells=cells,
            run_name=parent.info.run_name or "",
            report_options=dict(suite_info.get("report") or {}) if isinstance(suite_info.get("report"), dict) else {},
        )

    def _cell(self, run: Any) -> CellRun:
        tags = dict(run.data.tags)
        raw = {k: float(v) for k, v in run.data.metrics.items()}
        metrics = {k: v for k, v in raw.items() if not k.startswith(layout.CURVE_PREFIX) and _finite(v)}
        curve_names = sorted(k for k in raw if k.startswith(layout.CURVE_PREFIX))
        loader = self._curves_from_history(curve_names)
        if layout.SCHEMA_VERSION not in tags:
            # Written before records carried a schema tag: final values and curves shared metric keys, so
            # the values come from the record artifact (the one per-cell download, for old runs only).
            record = self._artifact_json(run.info.run_id, layout.CELL_JSON)
            if record:
                metrics = {k: float(v) for k, v in (record.get("metrics") or {}).items() if _finite(v)}
                curves: dict[str, list[tuple[int, float]]] = {}
                for name, step, value in record.get("history") or []:
                    curves.setdefault(str(name), []).append((int(step), float(value)))
                loader = lambda _cell, found=curves: {k: sorted(v) for k, v in found.items()}  # noqa: E731
        environment = tags.get(layout.ENVIRONMENT, run.data.params.get("environment", "?"))
        origins = tags.get(layout.INPUT_ORIGINS, "")
        if "generated" in origins.split(",") and "generated" not in environment:
            environment = f"{environment} [generated data]"
        inputs = _inputs_from_tags(tags)
        return CellRun(
            run_id=run.info.run_id,
            status=tags.get(layout.STATUS, "ok"),
            algorithm=tags.get(layout.ALGORITHM, run.data.params.get("algorithm", "?")),
            environment=environment,
            seed=_seed(tags.get(layout.SEED, run.data.params.get("seed", "0"))),
            error=tags.get(layout.ERROR, ""),
            cell_key=tags.get(layout.CELL_KEY, ""),
            algorithm_name=tags.get(layout.ALGORITHM_NAME, ""),
            environment_name=tags.get(layout.ENVIRONMENT_NAME, ""),
            metrics=metrics,
            params=dict(run.data.params),
            tags=tags,
            inputs=inputs,
            start_time_ms=int(run.info.start_time or 0),
            _curve_loader=loader,
        )

    def _curves_from_history(self, keys: list[str]) -> Any:
        if not keys:
            return None

        def load(cell: CellRun) -> dict[str, list[tuple[int, float]]]:
            return {
                key.removeprefix(layout.CURVE_PREFIX): sorted(
                    (int(m.step), float(m.value)) for m in self.client.get_metric_history(cell.run_id, key)
                )
                for key in keys
            }

        return load

    def _artifact_json(self, run_id: str, path: str) -> dict[str, Any] | None:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                local = self.client.download_artifacts(run_id, path, tmp)
                return json.loads(Path(local).read_text())
        except Exception:  # absent artifact: the caller falls back to tags and metrics
            return None

    def history(self, suite: str, profile: str | None, limit: int = 60) -> list[SuiteRun]:
        """The newest ``limit`` finished runs of a suite and profile, oldest first (for trend plots)."""
        runs = self.suite_runs(suite, profile)[:limit]
        return [self.load(run.info.run_id) for run in reversed(runs)]

    def attach_report(self, run_id: str, paths: Iterable[Path]) -> None:
        """Keep a written report with its suite run (artifacts under ``report/``); a store that refuses
        artifacts (read-only, no artifact root) loses nothing: the files are on disk."""
        for path in paths:
            try:
                self.client.log_artifact(run_id, str(path), layout.REPORT_DIR)
            except Exception as exc:
                logging.getLogger("harness").warning("report not attached to run %s: %s", run_id, exc)

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.client.set_tag(run_id, key, value)

    def ui_command(self) -> str:
        return f"mlflow ui --backend-store-uri {self.tracking_uri}"


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def _optional_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _seed(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def _inputs_from_tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for key, value in tags.items():
        if key.startswith(layout.INPUT_PREFIX):
            name, _, field_name = key.removeprefix(layout.INPUT_PREFIX).rpartition(".")
            found.setdefault(name, {"name": name})[field_name] = value
    return [found[name] for name in sorted(found)]


def _sequence(tags: Mapping[str, str]) -> int:
    """A run's :data:`layout.SEQUENCE` (-1 for runs written before it: older than any that has one)."""
    text = tags.get(layout.SEQUENCE, "")
    return int(text) if text.isdigit() else -1


def _order(cell: CellRun) -> tuple[int, int]:
    return _sequence(cell.tags), cell.start_time_ms


def latest_attempts(cells: Iterable[CellRun]) -> list[CellRun]:
    """The latest attempt of each cell key; attempts tagged superseded never count (report, compare, nightly)."""
    latest: dict[str, CellRun] = {}
    for cell in cells:
        if cell.tags.get(layout.SUPERSEDED) == "true":
            continue
        key = cell.cell_key or cell.run_id
        if key not in latest or _order(cell) >= _order(latest[key]):
            latest[key] = cell
    return list(latest.values())


def values_by_case(run: SuiteRun, metric: str) -> dict[tuple[str, str], list[float]]:
    """Metric values of the run's ok cells, grouped by (algorithm, environment): the repeats of each case."""
    grouped: dict[tuple[str, str], list[float]] = {}
    for cell in run.ok_cells:
        if metric in cell.metrics:
            grouped.setdefault(cell.case, []).append(cell.metrics[metric])
    return grouped


def scores_by_algorithm(run: SuiteRun, metric: str) -> dict[str, dict[str, list[float]]]:
    """algorithm -> environment -> run values: the (runs x tasks) layout the statistics expect."""
    table: dict[str, dict[str, list[float]]] = {}
    for (algorithm, environment), values in values_by_case(run, metric).items():
        table.setdefault(algorithm, {})[environment] = values
    return table


def machine_differences(first: SuiteRun, second: SuiteRun) -> dict[str, tuple[str, str]]:
    """Hardware and version facts that differ between two runs (empty when the fingerprints agree)."""
    if first.fingerprint and first.fingerprint == second.fingerprint:
        return {}
    keys: Iterable[str] = sorted(set(first.machine) | set(second.machine))
    differences = {
        key: (first.machine.get(key, "none"), second.machine.get(key, "none"))
        for key in keys
        if key not in ("hostname", "harness", "mlflow", "numpy")
        and first.machine.get(key, "none") != second.machine.get(key, "none")
    }
    if not differences and first.fingerprint != second.fingerprint:
        differences["fingerprint"] = (first.fingerprint or "none", second.fingerprint or "none")
    return differences


def metric_union(runs: Iterable[SuiteRun]) -> list[str]:
    seen: dict[str, None] = {}
    for run in runs:
        for name in run.metric_names:
            seen.setdefault(name, None)
    return list(seen)


def describe_metric(info: MetricInfo) -> Mapping[str, Any]:
    return {"unit": info.unit, "direction": info.direction, "threshold": info.threshold}


def values_by_case_and_seed(run: SuiteRun, metric: str) -> dict[tuple[str, str], dict[int, float]]:
    """Metric values of the run's ok cells by (algorithm, environment), then by seed (for paired tests)."""
    grouped: dict[tuple[str, str], dict[int, float]] = {}
    for cell in run.ok_cells:
        if metric in cell.metrics:
            grouped.setdefault(cell.case, {})[cell.seed] = cell.metrics[metric]
    return grouped


def unpaired_cases(run: SuiteRun, metric: str) -> set[tuple[str, str]]:
    """Cases whose repeats of ``metric`` are not seeds (tagged :data:`UNPAIRED_REPEAT_TAG`): never paired."""
    return {
        cell.case for cell in run.ok_cells if metric in cell.metrics and cell.tags.get(UNPAIRED_REPEAT_TAG) == "true"
    }
