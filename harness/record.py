"""The record of a result: the data that flows from suite to worker to journal to MLflow to report.

Written by the run, in this order:

* :class:`Cell`: one (algorithm, environment, seed, params) combination, with the code versions behind it
  (its identity: how a run executes it travels beside it, in :class:`WorkerOptions`);
* :class:`CellResult`: what one attempt of a cell produced (the *cell record*);
* :class:`SuiteRunRecord`: one invocation of a suite: its configuration, machine and code state;
* :class:`MetricDeclaration`: what a suite run declares about a metric (unit, direction, threshold, ...).

Read back (only ever built by the decoder, :mod:`harness.tracking.layout`):

* :class:`CellRun`: one cell of a stored suite run (the latest attempt of its key);
* :class:`SuiteRun`: one stored suite run, with its cells, metric declarations and machine facts.

A value the store does not hold stays unknown (``None``, :data:`UNKNOWN_STATUS`): it is never filled in with a
plausible default such as status "ok" or seed 0.

This module is the top of the core: the plugin API, tracking, analysis and report import it; it imports
none of them.

Every record carries ``schema_version``. Records of older versions are migrated on reading
(:func:`migrate_cell_result`), newer ones are refused with what to do, so a result is never misread. Fields
are carried, never recovered from strings another module built: the algorithm and environment labels are
fields of the cell, not parts of ``label`` split on ``/``.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, TypeVar

#: Version 2: cells carry their labels and code versions, results their inputs and suite-run configuration.
SCHEMA_VERSION = 2
#: :attr:`SuiteRunRecord.purpose` of the repeats ``harness calibrate`` runs.
PURPOSE_CALIBRATION = "calibration"
#: :attr:`SuiteRunRecord.purpose` of the runs ``harness bisect`` makes at older commits (never a night).
PURPOSE_BISECT = "bisect"

Status = Literal["ok", "failed", "skipped"]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class ComponentRef:
    """Which spec of which plugin a cell uses, with the versions that make results comparable."""

    name: str
    version: str
    plugin: str
    plugin_version: str
    params: Mapping[str, Any] = field(default_factory=dict)
    #: A hash of the source behind the spec's callable (:mod:`harness.run.code_version`); part of the key.
    code_version: str = ""

    def key_payload(self, with_code: bool = True) -> dict[str, Any]:
        """The fields as ``dataclasses.asdict`` gives them, built directly (expansion makes 10^5 of these)."""
        return {
            "name": self.name,
            "version": self.version,
            "plugin": self.plugin,
            "plugin_version": self.plugin_version,
            "params": dict(self.params),
            "code_version": self.code_version if with_code else "",
        }


# -- names a record can carry ------------------------------------------------------------------------------

#: MLflow's limit on metric, param and tag names (mlflow.utils.validation), where every record is stored.
MAX_NAME_LENGTH = 250
#: Room kept for the prefix the store puts before a curve's name (``curve/``).
NAME_PREFIX_RESERVE = 6
_VALID_NAME = re.compile(r"^[/\w.\- :]*$")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a metric or curve of a record (MLflow would refuse it); None when it can.

    The same rules as ``mlflow.utils.validation`` (checked against it in the tests), applied where names are
    made (``context.log``, metric specs, ``harness plugins check``) so an author hears of a bad name at once,
    not as a delivery failure after the run.
    """
    longest = MAX_NAME_LENGTH - NAME_PREFIX_RESERVE
    if not name:
        return "the name is empty"
    if len(name) > longest:
        return f"the name is {len(name)} characters long; MLflow takes at most {longest}"
    if not _VALID_NAME.match(name):
        bad = sorted({char for char in name if not _VALID_NAME.match(char)})
        return (
            f"it contains {' '.join(repr(c) for c in bad)}; MLflow names may only hold letters, digits, "
            "'_', '-', '.', ' ', ':' and '/'"
        )
    normalized = posixpath.normpath(name)
    if normalized != name or normalized == "." or normalized.startswith(("..", "/")):
        return f"MLflow treats names as paths and this one resolves to {normalized!r}"
    return None


#: Values of ``harness run --device``.
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class WorkerOptions:
    """How one run executes its cells: the same for every cell of the run, and not part of any cell's identity
    (the same configuration on another device or with output shown is the same cell)."""

    #: ``--device`` (auto, cpu or cuda): where a cell whose specs can use a GPU runs; the device a result
    #: actually ran on is recorded per result (:attr:`CellResult.device`).
    device: str = "auto"
    #: The run asked for fresh results (``--no-resume``, nightly and calibrate repeats): a checkpoint an earlier
    #: attempt left is discarded before the first attempt.
    fresh_start: bool = False
    #: Show cells' output on the terminal (``--show-output``) instead of only in each cell's log.
    show_output: bool = False


@dataclass(frozen=True)
class Cell:
    """One (algorithm, environment, seed, params) combination of a suite, ready to run."""

    suite: str
    profile: str
    algorithm: ComponentRef
    environment: ComponentRef
    seed: int
    metrics: tuple[str, ...]
    budget: Mapping[str, Any]
    timeout_s: float | None
    label: str
    key: str = ""
    task_kind: str = ""
    #: The suite's labels of the algorithm and environment entries (with the swept values), as fields.
    algorithm_label: str = ""
    environment_label: str = ""
    #: Metric name -> code version of its ``compute``; part of the key.
    metric_code: Mapping[str, str] = field(default_factory=dict)

    #: :meth:`compute_config_key` of this cell, filled in by suite expansion ("" where a record predates it).
    config_key: str = ""

    @staticmethod
    def compute_key(
        algorithm: ComponentRef,
        environment: ComponentRef,
        seed: int,
        metrics: tuple[str, ...],
        budget: Mapping[str, Any],
        metric_code: Mapping[str, str] | None = None,
    ) -> str:
        """A stable hash of the resolved config, the seed, the plugins' names and versions and the code."""
        return Cell.keys_for_seeds(algorithm, environment, [seed], metrics, budget, metric_code)[0]

    @staticmethod
    def keys_for_seeds(
        algorithm: ComponentRef,
        environment: ComponentRef,
        seeds: Sequence[int],
        metrics: tuple[str, ...],
        budget: Mapping[str, Any],
        metric_code: Mapping[str, str] | None = None,
        with_code: bool = True,
    ) -> list[str]:
        """:meth:`compute_key` for each seed, serializing the shared part once.

        The canonical JSON sorts keys and ``"seed"`` sorts last, so the document for a seed is the shared
        document with ``,"seed":N`` inserted before its closing brace (a test checks this equals serializing
        the whole payload).
        """
        payload: dict[str, Any] = {
            "algorithm": algorithm.key_payload(with_code),
            "environment": environment.key_payload(with_code),
            "metrics": sorted(metrics),
            "budget": dict(budget),
        }
        if metric_code and with_code:
            payload["metric_code"] = dict(sorted(metric_code.items()))
        shared = canonical_json(payload)[:-1]
        return [hashlib.sha256(f'{shared},"seed":{int(seed)}}}'.encode()).hexdigest()[:20] for seed in seeds]

    def compute_config_key(self) -> str:
        """The key this cell would have with no code versions: equal for the same configuration under old and
        new code, so ``--dry-run`` can say a cell reruns *because its code changed*."""
        if self.config_key:
            return self.config_key
        return Cell.keys_for_seeds(
            self.algorithm, self.environment, [self.seed], self.metrics, self.budget, with_code=False
        )[0]

    @property
    def code_versions(self) -> dict[str, str]:
        """Component -> code version (``algorithm``, ``environment``, ``metric.<name>``)."""
        versions = {"algorithm": self.algorithm.code_version, "environment": self.environment.code_version}
        versions.update({f"metric.{name}": version for name, version in self.metric_code.items()})
        return versions

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cell:
        # Records before the run options moved to WorkerOptions carried device, fresh_start and show_output.
        values = {k: v for k, v in data.items() if k not in _RUN_OPTION_FIELDS}
        values["algorithm"] = ComponentRef(**values["algorithm"])
        values["environment"] = ComponentRef(**values["environment"])
        values["metrics"] = tuple(values["metrics"])
        values["metric_code"] = dict(values.get("metric_code") or {})
        return cls(**values)


_RUN_OPTION_FIELDS = ("device", "fresh_start", "show_output")


def make_cell(
    *,
    suite: str,
    profile: str,
    algorithm: ComponentRef,
    environment: ComponentRef,
    seed: int,
    metrics: Sequence[str],
    budget: Mapping[str, Any] | None = None,
    timeout_s: float | None = None,
    task_kind: str = "",
    algorithm_label: str = "",
    environment_label: str = "",
    metric_code: Mapping[str, str] | None = None,
    key: str = "",
    config_key: str = "",
) -> Cell:
    """The one way to build a :class:`Cell`: labels default to the specs' names, the label is
    ``algorithm/environment/seed=N`` and the key is computed unless suite expansion already computed it (it
    computes a configuration's keys for all seeds at once). ``budget`` and ``metric_code`` are shared, not
    copied: expansion passes one mapping to all the cells of a configuration (a cell is frozen)."""
    budget = budget if budget is not None else {}
    metric_code = metric_code if metric_code is not None else {}
    names = tuple(metrics)
    algorithm_label = algorithm_label or algorithm.name
    environment_label = environment_label or environment.name
    return Cell(
        suite=suite,
        profile=profile,
        algorithm=algorithm,
        environment=environment,
        seed=int(seed),
        metrics=names,
        budget=budget,
        timeout_s=timeout_s,
        label=f"{algorithm_label}/{environment_label}/seed={seed}",
        key=key or Cell.compute_key(algorithm, environment, int(seed), names, budget, metric_code),
        task_kind=task_kind,
        algorithm_label=algorithm_label,
        environment_label=environment_label,
        metric_code=metric_code,
        config_key=config_key,
    )


@dataclass
class CellResult:
    """What one cell produced: status, metric values, curves, the raw outcome, timing and errors."""

    cell: Cell
    status: Status
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[tuple[str, int, float]] = field(default_factory=list)
    outcome: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    started_at: float = 0.0
    finished_at: float = 0.0
    worker: str = ""
    device: str = ""  # where it ran: "cpu" or "cuda" ("" when it never got that far)
    attempt: int = 1
    record_id: str = ""
    #: Datasets the cell read, as :meth:`harness.context.CellContext.log_input` recorded them (name, origin,
    #: path, sha256, details): D4RL's files, Minari's or generated ones, never confused.
    inputs: list[dict[str, Any]] = field(default_factory=list)
    #: The configuration of the suite run that produced it (:attr:`SuiteRunRecord.config_id`).
    config_id: str = ""
    #: Seconds of work done for later cells too (``context.shared_setup``: a generated dataset, a trained
    #: model), not charged to this cell's timings.
    shared_setup_s: float = 0.0
    #: The cell's captured stdout and stderr (on the worker's machine), and its end for a cell that failed.
    log_path: str = ""
    output_tail: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def duration_s(self) -> float:
        return max(0.0, self.finished_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["history"] = [list(point) for point in self.history]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellResult:
        values = migrate_cell_result(data)
        values["cell"] = Cell.from_dict(values["cell"])
        values["history"] = [tuple(point) for point in values.get("history", [])]
        return cls(**values)


def migrate_cell_result(data: Mapping[str, Any]) -> dict[str, Any]:
    """A cell record of any known schema version as a version-:data:`SCHEMA_VERSION` dict.

    Version 1 had no labels as fields (they are recovered from ``label`` here, once, the only place a label
    is ever split), no code versions (empty: such a result never matches a key of today's code, so it is
    rerun rather than trusted), no inputs and no configuration id.
    """
    version = data.get("schema_version", 0)
    if version > SCHEMA_VERSION or version < 1:
        raise ValueError(
            f"result record has schema_version {version}, this harness reads 1 to {SCHEMA_VERSION}; "
            "use the harness version that wrote it"
        )
    values = dict(data)
    if version == 1:
        cell = dict(values["cell"])
        parts = str(cell.get("label", "")).split("/")
        cell.setdefault("algorithm_label", parts[0] if parts else "")
        cell.setdefault("environment_label", parts[1] if len(parts) > 1 else "")
        values["cell"] = cell
        values["schema_version"] = SCHEMA_VERSION
    return values


def is_bool(value: Any) -> bool:
    """Whether ``value`` is a boolean, Python's or numpy's (``np.bool_`` is no subclass of ``bool`` but means the
    same; numpy is looked at only if something already imported it)."""
    if isinstance(value, bool):
        return True
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.bool_)


def metric_number(name: str, value: Any, where: str = "") -> float:
    """``value`` of metric ``name`` as a float; ``ValueError`` naming the metric (and ``where`` it came from)
    for a value that is no number, a boolean (Python's or numpy's) among them."""
    try:
        if is_bool(value):
            raise TypeError("a boolean is not a measurement")
        return float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        place = f" ({where})" if where else ""
        raise ValueError(
            f"metric {name!r}{place}: {str(value)[:80]!r} is not a number ({type(value).__name__}: {exc})"
        ) from None


def overflow_safe_mean(values: Sequence[float]) -> float:
    """The mean of finite values, itself finite: two values of 1.7e308 have the mean 1.7e308, where their sum
    overflows to inf. Values are scaled by a power of two only when the plain sum overflows (exact then, so
    every other mean is bit for bit ``sum / n``); NaN for no values."""
    if not values:
        return math.nan
    total = sum(values)
    if math.isfinite(total) or not all(math.isfinite(v) for v in values):
        return total / len(values)
    scale = math.ldexp(1.0, math.frexp(max(abs(v) for v in values))[1] - 1)  # 2**1024 itself overflows
    return sum(v / scale for v in values) / len(values) * scale


STATUSES: tuple[Status, ...] = ("ok", "failed", "skipped")
#: The status of a stored cell whose status tag is missing or not one of :data:`STATUSES`.
UNKNOWN_STATUS = "unknown"
#: The count :meth:`SuiteRun.status_counts` adds for cells of an incomplete run that have no result at all.
NEVER_RAN = "never ran"


def status_counts(statuses: Iterable[str]) -> dict[str, int]:
    """How many of each status: always ok, failed and skipped (0 when none), then any other status seen."""
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts


_Attempt = TypeVar("_Attempt")


def latest_attempts(
    attempts: Iterable[_Attempt], key: Callable[[_Attempt], Any], order: Callable[[_Attempt], Any] | None = None
) -> dict[Any, _Attempt]:
    """Cell -> its latest attempt: the last by ``order`` among the attempts with the same ``key`` (ties, or no
    ``order``: the later one in ``attempts``). One rule for the journal's results and the store's cell runs."""
    latest: dict[Any, _Attempt] = {}
    for attempt in attempts:
        found = key(attempt)
        if found not in latest or order is None or order(attempt) >= order(latest[found]):
            latest[found] = attempt
    return latest


def metric_values_by_case(results: Iterable[CellResult]) -> dict[tuple[str, str, str], list[float]]:
    """(algorithm label, environment label, metric) -> the finite values of the ok results, in order: the
    repeats (seeds) of each measurement, as the parent's aggregates, the run's pivot table and its stability
    warnings all group them."""
    grouped: dict[tuple[str, str, str], list[float]] = {}
    for result in results:
        if result.status != "ok":
            continue
        cell = result.cell
        case = (cell.algorithm_label or cell.algorithm.name, cell.environment_label or cell.environment.name)
        for name, value in result.metrics.items():
            if math.isfinite(value):
                grouped.setdefault((*case, name), []).append(value)
    return grouped


def overflow_safe_std(values: Sequence[float]) -> float:
    """The sample standard deviation (ddof 1) of finite values, itself finite (scaled like
    :func:`overflow_safe_mean`); 0 for a single value, NaN for none."""
    if not values:
        return math.nan
    if len(values) < 2:
        return 0.0
    scale = max(abs(v) for v in values) or 1.0
    if not math.isfinite(scale):
        return math.nan
    scaled = [v / scale for v in values]
    mean = sum(scaled) / len(scaled)
    return math.sqrt(sum((v - mean) ** 2 for v in scaled) / (len(scaled) - 1)) * scale


def aggregate_results(results: Iterable[CellResult]) -> list[dict[str, Any]]:
    """Mean, sample standard deviation and count of each metric per (algorithm label, environment label) over
    ok cells: the parent run's aggregates (what history pages draw without loading every cell)."""
    return [
        {
            "algorithm": a,
            "environment": e,
            "metric": m,
            "mean": overflow_safe_mean(v),
            "std": overflow_safe_std(v),
            "n": len(v),
        }
        for (a, e, m), v in sorted(metric_values_by_case(results).items())
    ]


@dataclass
class SuiteRunRecord:
    """One invocation of a suite: the configuration it ran, where, with which code, sent to which store.

    ``config_id`` identifies the configuration (suite, profile and the keys of its cells, so any ``--set``
    that changes a cell changes it): one configuration is one MLflow parent run per store.
    """

    suite: str
    profile: str
    config_id: str
    cell_keys: list[str]
    tracking_uri: str | None
    overrides: list[str] = field(default_factory=list)
    #: ``--only`` expressions that chose a subset of the profile's cells (empty: all of them).
    selection: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    git_commit: str = "none"
    git_dirty: bool = False
    suite_info: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    #: The committer date of ``git_commit`` (seconds since the epoch); None when unknown. Published histories
    #: draw nights in commit order by it.
    git_commit_time: float | None = None
    #: Where the results came from when not from ``harness run`` (``pytest-benchmark``); "" for own runs.
    source: str = ""
    #: Why the suite ran: "" for a run of its own, :data:`PURPOSE_CALIBRATION` for a ``harness calibrate`` repeat,
    #: :data:`PURPOSE_BISECT` for a ``harness bisect`` evaluation (both kept out of nightly history and trends:
    #: they are not nights).
    purpose: str = ""
    schema_version: int = SCHEMA_VERSION
    #: Results reported elsewhere (a paper's table, ``harness import results``): never taken for a run of this
    #: machine, never a hardware baseline; ``source`` says where they came from.
    reported: bool = False

    @staticmethod
    def compute_config_id(suite: str, profile: str, cell_keys: list[str]) -> str:
        payload = {"suite": suite, "profile": profile, "cells": sorted(cell_keys)}
        return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SuiteRunRecord:
        """Also reads version-1 ``run`` events (no configuration: ``config_id`` "v1", cells unknown)."""
        values = {k: v for k, v in data.items() if k != "type"}
        values.setdefault("config_id", "v1")
        values.setdefault("cell_keys", [])
        values["schema_version"] = SCHEMA_VERSION
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class RunInfo:
    """One invocation of a suite: what lifecycle hooks receive."""

    suite: str
    profile: str
    cells: list[Cell]
    tracking_uri: str | None
    parent_run_id: str | None = None
    journal_path: str | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    resumed_keys: set[str] = field(default_factory=set)


# -- metric declarations -----------------------------------------------------------------------------------

#: Seconds per time unit: a metric in one of these units is a timing.
SECONDS_PER_UNIT = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}
_MEMORY_UNITS = {"b", "bytes", "kb", "kib", "mb", "mib", "gb", "gib"}


def is_timing_unit(unit: str) -> bool:
    """Whether a metric's unit says it measures time or a rate (so its noise depends on the machine)."""
    unit = unit.strip()
    return unit in SECONDS_PER_UNIT or unit.endswith("/s")


def is_hardware_dependent_unit(unit: str) -> bool:
    """Whether a value in ``unit`` changes with the machine: timings, rates (throughput) and memory."""
    return is_timing_unit(unit) or unit.strip().lower() in _MEMORY_UNITS


@dataclass(frozen=True)
class MetricDeclaration:
    """What a suite run declares about one metric: made from the plugin's ``MetricSpec`` (with the suite's
    threshold) when a suite runs, stored in ``suite.json``, read back for reports and comparisons."""

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
        return is_hardware_dependent_unit(self.unit)

    def to_dict(self) -> dict[str, Any]:
        """The ``suite.json`` entry (without the name, which is its key)."""
        data = asdict(self)
        del data["name"]
        return data

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> MetricDeclaration:
        depends = data.get("depends_on_hardware")
        return cls(
            name=name,
            unit=str(data.get("unit", "")),
            direction=str(data.get("direction", "higher")),
            threshold=float(data.get("threshold", 0.05)),
            description=str(data.get("description", "")),
            comparable_across_tasks=bool(data.get("comparable_across_tasks", False)),
            depends_on_hardware=None if depends is None else bool(depends),
        )


# -- suite runs as the store holds them (built only by harness.tracking.layout's decoder) -----------------

#: The marker a cell's environment carries on screen when its dataset was generated (never D4RL's own).
GENERATED_DATA_MARKER = "[generated data]"
#: Machine facts that do not make two machines different for a comparison.
_IRRELEVANT_MACHINE_FACTS = ("hostname", "harness", "mlflow", "numpy")


@dataclass(frozen=True)
class MachineFacts:
    """The machine a result came from: what comparisons filter on (fingerprint, CPU, GPU) and, on a suite run,
    its hostname and package versions. Empty strings are facts the store does not hold."""

    fingerprint: str = ""
    cpu: str = ""
    gpu: str = ""
    hostname: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, str]:
        """The known facts by short name (``cpu``, ``gpu``, ``hostname``, ``torch``, ...), as reports list them."""
        facts = {"cpu": self.cpu, "gpu": self.gpu, "hostname": self.hostname, **dict(sorted(self.versions.items()))}
        return {k: v for k, v in facts.items() if v}

    def differences(self, other: MachineFacts) -> dict[str, tuple[str, str]]:
        """Hardware and version facts that differ between two machines (empty when the fingerprints agree)."""
        if self.fingerprint and self.fingerprint == other.fingerprint:
            return {}
        mine, theirs = self.as_dict(), other.as_dict()
        differences = {
            key: (mine.get(key, "none"), theirs.get(key, "none"))
            for key in sorted(set(mine) | set(theirs))
            if key not in _IRRELEVANT_MACHINE_FACTS and mine.get(key, "none") != theirs.get(key, "none")
        }
        if not differences and self.fingerprint != other.fingerprint:
            differences["fingerprint"] = (self.fingerprint or "none", other.fingerprint or "none")
        return differences


def describe_differences(differences: Mapping[str, tuple[str, str]]) -> str:
    """``key: 'old' -> 'new'; ...``: how every message names what differs between two machines."""
    return "; ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in differences.items())


@dataclass
class CellRun:
    """One cell of a stored suite run: the latest attempt of its cell key.

    ``algorithm`` and ``environment`` are the suite's labels exactly as recorded; :attr:`environment_display`
    adds the generated-data marker for screens and pages. ``status`` is :data:`UNKNOWN_STATUS` and ``seed``
    None when the store does not hold them. Curves are read from their metric histories on first use.
    """

    run_id: str
    status: str
    algorithm: str
    environment: str
    seed: int | None
    error: str = ""
    cell_key: str = ""
    record_id: str = ""
    algorithm_name: str = ""
    environment_name: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    #: Where each dataset came from (name, origin, path, sha256).
    inputs: list[dict[str, str]] = field(default_factory=list)
    code_versions: dict[str, str] = field(default_factory=dict)
    machine: MachineFacts = field(default_factory=MachineFacts)
    device: str = ""
    attempt: int | None = None
    superseded: bool = False
    #: The attempt's place in the order of delivery (later attempts of a cell come later); None before runs
    #: recorded one. "Latest" follows it, not the wall clock.
    sequence: int | None = None
    #: Its seed numbers a repeat that is not a seed (pytest-benchmark rounds): never paired across runs.
    unpaired_repeat: bool = False
    start_time_ms: int = 0
    #: Every tag as stored, for a user's own tags; the harness's own are decoded into the fields above.
    tags: dict[str, str] = field(default_factory=dict)
    _curves: dict[str, list[tuple[int, float]]] | None = field(default=None, repr=False)
    _curve_loader: Any = field(default=None, repr=False, compare=False)

    @property
    def curves(self) -> dict[str, list[tuple[int, float]]]:
        if self._curves is None:
            self._curves = self._curve_loader(self) if self._curve_loader is not None else {}
        return self._curves

    @property
    def case(self) -> tuple[str, str]:
        """(algorithm label, environment label): what repeats of the same measurement share."""
        return self.algorithm, self.environment

    @property
    def generated_data(self) -> bool:
        return any(item.get("origin") == "generated" for item in self.inputs)

    @property
    def environment_display(self) -> str:
        """The environment label for a screen or page: marked when the cell's dataset was generated."""
        if self.generated_data and "generated" not in self.environment:
            return f"{self.environment} {GENERATED_DATA_MARKER}"
        return self.environment

    @property
    def seed_text(self) -> str:
        return "unknown" if self.seed is None else str(self.seed)


@dataclass
class SuiteRun:
    """One stored suite invocation with its cells, metric declarations, machine and code."""

    run_id: str
    experiment_id: str
    suite: str
    profile: str
    status: str
    start_time_ms: int
    metric_info: dict[str, MetricDeclaration]
    thresholds: dict[str, float]
    cells: list[CellRun]
    machine_facts: MachineFacts = field(default_factory=MachineFacts)
    #: The commit of the code under test (None: not recorded) and whether its checkout had changes.
    git_commit: str | None = None
    git_dirty: bool = False
    #: The commit's committer date (seconds since the epoch); None when not recorded (older runs, no git).
    git_commit_time: float | None = None
    harness_version: str = ""
    plugins: dict[str, str] = field(default_factory=dict)
    is_baseline: bool = False
    #: Where the results came from when not from ``harness run`` (``pytest-benchmark``); "" for own runs.
    source: str = ""
    run_name: str = ""
    #: The suite's ``[report]`` declaration as suite.json holds it (e.g. ``{"pareto": [["x", "y"], ...]}``).
    report_options: dict[str, Any] = field(default_factory=dict)
    #: Where the run was read from: named when a name it carries is refused (docs/security.md).
    tracking_uri: str = ""
    #: The suite's declared label renames, ``{"algorithm": {old: new}, "environment": {...}}`` (suite.json).
    renames: dict[str, dict[str, str]] = field(default_factory=dict)
    #: How many cells the run's configuration has (suite.json); None when the store does not say.
    expected_cells: int | None = None
    #: :attr:`SuiteRunRecord.purpose` ("" for a run of its own, "calibration").
    purpose: str = ""
    #: Why it was made a baseline (``harness promote --reason``) and when (seconds since the epoch; None: never).
    baseline_reason: str = ""
    promoted_at: float | None = None
    #: Every tag as stored, for a user's own tags; the harness's own are decoded into the fields above.
    tags: dict[str, str] = field(default_factory=dict)
    #: Results reported elsewhere (``harness import results``): see :attr:`SuiteRunRecord.reported`.
    reported: bool = False

    @property
    def provenance(self) -> str:
        """Where these results come from, as every view names it: ``reported: <source>`` for imported results,
        else the run and its machine."""
        if self.reported:
            return f"reported: {self.source or 'unknown source'}"
        machine = self.machine_facts.cpu or "unknown machine"
        if self.machine_facts.gpu and self.machine_facts.gpu != "none":
            machine += f" + {self.machine_facts.gpu}"
        imported = f" (imported from {self.source})" if self.source else ""
        return f"run {self.run_id[:8]} on {machine}, commit {self.commit_text}{imported}"

    @property
    def cells_never_run(self) -> int:
        """Cells of the configuration with no result at all (a run killed before them and synced later)."""
        if self.expected_cells is None:
            return 0
        return max(0, self.expected_cells - len({cell.cell_key or cell.run_id for cell in self.cells}))

    @property
    def complete(self) -> bool:
        """Every cell of the configuration has a result (ok, failed or skipped)."""
        return self.cells_never_run == 0

    @property
    def is_imported(self) -> bool:
        """Results brought in from elsewhere (``harness import``): never this machine's runs."""
        return bool(self.source)

    @property
    def history_problem(self) -> str:
        """Why this run is not a night of the suite's history (trends, baselines), or "" when it is one."""
        if not self.complete:
            return f"incomplete: {self.cells_never_run} of {self.expected_cells} cell(s) never ran"
        if self.status == "incomplete":  # read without its cells: the status its closing recorded
            return "incomplete: some cells never ran"
        if self.purpose == PURPOSE_CALIBRATION:
            return "a calibration repeat"
        if self.purpose == PURPOSE_BISECT:
            return "a bisect evaluation"
        if self.is_imported:
            return f"imported from {self.source}"
        return ""

    @property
    def night(self) -> str:
        """The run's start date (UTC), as history captions name a night."""
        import datetime

        moment = datetime.datetime.fromtimestamp(self.start_time_ms / 1000, tz=datetime.UTC)
        return moment.strftime("%Y-%m-%d %H:%M")

    def relabelled(self, renames: Mapping[str, Mapping[str, str]]) -> SuiteRun:
        """This run with cells recorded under an old label shown under the new one (``renames`` as in
        :attr:`renames`): a baseline recorded before a rename lines up with a candidate recorded after it."""
        if not any(renames.values()):
            return self
        algorithms, environments = renames.get("algorithm", {}), renames.get("environment", {})
        cells = [
            replace(
                cell,
                algorithm=algorithms.get(cell.algorithm, cell.algorithm),
                environment=environments.get(cell.environment, cell.environment),
            )
            for cell in self.cells
        ]
        return replace(self, cells=cells)

    @property
    def name_origin(self) -> str:
        """Where this run's suite and profile names came from, for an error that refuses one of them."""
        store = self.tracking_uri or "(unknown)"
        return f"tracking store {store}, run {self.run_id} (its suite and profile tags)"

    @property
    def fingerprint(self) -> str:
        return self.machine_facts.fingerprint

    @property
    def machine(self) -> dict[str, str]:
        """Hardware and versions, by short name (``cpu``, ``gpu``, ``torch``, ...)."""
        return self.machine_facts.as_dict()

    @property
    def commit_text(self) -> str:
        """The commit for a caption: its first 12 characters, ``(dirty)`` when the checkout had changes."""
        if not self.git_commit:
            return "unknown"
        return self.git_commit[:12] + (" (dirty)" if self.git_dirty else "")

    def cell_machine(self, cell: CellRun) -> MachineFacts:
        """The machine a cell ran on: its own facts, the run's where the cell does not record them."""
        own = cell.machine
        return MachineFacts(
            fingerprint=own.fingerprint or self.machine_facts.fingerprint,
            cpu=own.cpu or self.machine_facts.cpu,
            gpu=own.gpu or self.machine_facts.gpu,
        )

    def machine_differences(self, other: SuiteRun) -> dict[str, tuple[str, str]]:
        """What differs between the two runs' machines; reported results (:attr:`reported`) always differ from
        any run: their machine was not measured here, so they are never a hardware baseline."""
        differences = self.machine_facts.differences(other.machine_facts)
        if self.reported or other.reported:
            origin = lambda run: run.provenance if run.reported else "measured by the harness"  # noqa: E731
            differences = {**differences, "results": (origin(self), origin(other))}
        return differences

    @property
    def metric_names(self) -> list[str]:
        names = {name for cell in self.cells for name in cell.metrics}
        return [n for n in self.metric_info if n in names] + sorted(names - set(self.metric_info))

    def info(self, metric: str) -> MetricDeclaration:
        """The metric's declaration, with the suite's threshold override applied."""
        base = self.metric_info.get(metric, MetricDeclaration(metric))
        if metric in self.thresholds:
            return replace(base, threshold=self.thresholds[metric])
        return base

    @property
    def ok_cells(self) -> list[CellRun]:
        return [cell for cell in self.cells if cell.status == "ok"]

    def status_counts(self) -> dict[str, int]:
        """ok, failed, skipped (and any other status seen), plus ``never ran`` when the run is incomplete."""
        counts = status_counts(cell.status for cell in self.cells)
        if self.cells_never_run:
            counts[NEVER_RAN] = self.cells_never_run
        return counts

    @property
    def label(self) -> str:
        return f"{self.suite}:{self.profile} {self.run_id[:8]}"

    # -- grouping: the layouts the statistics take ------------------------------------------------------
    def values_by_case(self, metric: str) -> dict[tuple[str, str], list[float]]:
        """Metric values of the ok cells, grouped by (algorithm, environment): the repeats of each case."""
        grouped: dict[tuple[str, str], list[float]] = {}
        for cell in self.ok_cells:
            if metric in cell.metrics:
                grouped.setdefault(cell.case, []).append(cell.metrics[metric])
        return grouped

    def values_by_case_and_seed(self, metric: str) -> dict[tuple[str, str], dict[int, float]]:
        """Metric values of the ok cells by (algorithm, environment), then by seed (for paired tests); cells
        whose seed is unknown cannot be paired and are left out."""
        grouped: dict[tuple[str, str], dict[int, float]] = {}
        for cell in self.ok_cells:
            if metric in cell.metrics and cell.seed is not None:
                grouped.setdefault(cell.case, {})[cell.seed] = cell.metrics[metric]
        return grouped

    def scores_by_algorithm(self, metric: str) -> dict[str, dict[str, list[float]]]:
        """algorithm -> environment -> run values: the (runs x tasks) layout the statistics expect."""
        table: dict[str, dict[str, list[float]]] = {}
        for (algorithm, environment), values in self.values_by_case(metric).items():
            table.setdefault(algorithm, {})[environment] = values
        return table

    def unpaired_cases(self, metric: str) -> set[tuple[str, str]]:
        """Cases whose repeats of ``metric`` cannot be paired across runs: repeats that are not seeds, or
        cells whose seed is unknown."""
        return {
            cell.case
            for cell in self.ok_cells
            if metric in cell.metrics and (cell.unpaired_repeat or cell.seed is None)
        }


#: An alert's states: open until the level returns (``fixed``) or a run with it is promoted (``accepted``).
ALERT_STATES = ("open", "fixed", "accepted")


@dataclass
class Alert:
    """A regression a nightly comparison found, followed until it is fixed or accepted.

    One alert per (suite, profile, machine, metric, case) is open at a time: later nights that still show the
    regression report it as open, not as new. ``relative_change`` and its interval ``[low, high]`` are the
    change the opening night measured against ``baseline_run_id``.
    """

    suite: str
    profile: str
    fingerprint: str
    metric: str
    algorithm: str
    environment: str
    relative_change: float
    low: float
    high: float
    opened_run_id: str
    opened_commit: str | None
    opened_at_ms: int
    baseline_run_id: str
    baseline_commit: str | None = None
    #: The commit of the last night before the one that opened it (on this machine): the narrowest known
    #: good end of the range to bisect (None when that night is unknown; the baseline's commit is the fallback).
    previous_commit: str | None = None
    unit: str = ""
    state: str = "open"
    closed_run_id: str = ""
    closed_commit: str | None = None
    closed_at_ms: int | None = None
    reason: str = ""
    #: The MLflow run that holds the alert ("" until it is stored).
    alert_id: str = ""

    @property
    def case(self) -> tuple[str, str]:
        return self.algorithm, self.environment

    @property
    def identity(self) -> tuple[str, str, str, str, str, str]:
        """What makes two nights' regressions the same alert."""
        return self.suite, self.profile, self.fingerprint, self.metric, self.algorithm, self.environment

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    @property
    def size_text(self) -> str:
        """``+20.1% [+18.0%, +22.3%]``: the change with its interval."""
        if math.isnan(self.relative_change):
            return "size unknown"
        interval = "" if math.isnan(self.low) else f" [{self.low:+.1%}, {self.high:+.1%}]"
        return f"{self.relative_change:+.1%}{interval}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("relative_change", "low", "high"):
            if isinstance(data[key], float) and math.isnan(data[key]):
                data[key] = None
        return data


def metric_union(runs: Iterable[SuiteRun]) -> list[str]:
    """The metric names of several runs, in the order they first appear."""
    seen: dict[str, None] = {}
    for run in runs:
        for name in run.metric_names:
            seen.setdefault(name, None)
    return list(seen)


def with_display_labels(run: SuiteRun) -> SuiteRun:
    """A copy of ``run`` whose cells carry :attr:`CellRun.environment_display` as their environment: what a
    page or screen shows (a generated dataset is never taken for the original). Exports keep the labels."""
    return replace(run, cells=[replace(cell, environment=cell.environment_display) for cell in run.cells])
