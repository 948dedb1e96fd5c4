"""The record of a result: the data that flows from suite to worker to journal to MLflow to report.

* :class:`Cell`: one (algorithm, environment, seed, params) combination, with the code versions behind it;
* :class:`CellResult`: what one attempt of a cell produced (the *cell record*);
* :class:`SuiteRunRecord`: one invocation of a suite: its configuration, machine and code state.

Every record carries ``schema_version``. Records of older versions are migrated on reading
(:func:`migrate_cell_result`), newer ones are refused with what to do, so a result is never misread. Fields
are carried, never recovered from strings another module built: the algorithm and environment labels are
fields of the cell, not parts of ``label`` split on ``/``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

#: Version 2: cells carry their labels and code versions, results their inputs and suite-run configuration.
SCHEMA_VERSION = 2

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


#: Values of ``harness run --device``, kept on every :class:`Cell`.
DEVICES = ("auto", "cpu", "cuda")


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
    #: The run's ``--device`` (auto, cpu or cuda): where a cell whose specs can use a GPU runs. Not part of the
    #: key: the same configuration on another device is the same cell (the device is recorded per result).
    device: str = "auto"
    #: The run asked for fresh results (``--no-resume``, nightly and calibrate repeats): a checkpoint an earlier
    #: attempt left is discarded before the first attempt. Not part of the key.
    fresh_start: bool = False
    #: The run shows cells' output on the terminal (``--show-output``) instead of only in each cell's log.
    show_output: bool = False
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
        return [
            hashlib.sha256(f"{shared},\"seed\":{int(seed)}}}".encode()).hexdigest()[:20] for seed in seeds
        ]

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
        values = dict(data)
        values["algorithm"] = ComponentRef(**values["algorithm"])
        values["environment"] = ComponentRef(**values["environment"])
        values["metrics"] = tuple(values["metrics"])
        values["metric_code"] = dict(values.get("metric_code") or {})
        return cls(**values)


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


def metric_number(name: str, value: Any, where: str = "") -> float:
    """``value`` of metric ``name`` as a float; ``ValueError`` naming the metric (and ``where`` it came from)
    for a value that is no number, a boolean (Python's or numpy's) among them."""
    from harness.specs import is_bool

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
    schema_version: int = SCHEMA_VERSION

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
