"""Cells and their results: the data that flows from suite to worker to journal to MLflow.

Every record carries ``schema_version`` so that results written by an older harness are read correctly or
refused, never misread.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 1

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

    @staticmethod
    def compute_key(
        algorithm: ComponentRef,
        environment: ComponentRef,
        seed: int,
        metrics: tuple[str, ...],
        budget: Mapping[str, Any],
    ) -> str:
        """A stable hash of the resolved config, the seed and the plugins' names and versions."""
        payload = {
            "algorithm": asdict(algorithm),
            "environment": asdict(environment),
            "seed": seed,
            "metrics": sorted(metrics),
            "budget": dict(budget),
        }
        return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:20]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cell:
        values = dict(data)
        values["algorithm"] = ComponentRef(**values["algorithm"])
        values["environment"] = ComponentRef(**values["environment"])
        values["metrics"] = tuple(values["metrics"])
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
        version = data.get("schema_version", 0)
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"result record has schema_version {version}, this harness reads {SCHEMA_VERSION}; "
                "use the harness version that wrote it"
            )
        values = dict(data)
        values["cell"] = Cell.from_dict(values["cell"])
        values["history"] = [tuple(point) for point in values.get("history", [])]
        return cls(**values)


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
