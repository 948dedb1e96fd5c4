"""A plugin whose algorithm returns a NaN score (``harness plugins check`` must say so)."""

from __future__ import annotations

from typing import Any

from harness import AlgorithmSpec, CellContext, EnvironmentSpec, MetricSpec, hookimpl, outcome_value

HARNESS_API_VERSION = "1.0"


def make(*, params: dict[str, Any], context: CellContext) -> float:
    return 1.0


def run(*, environment: float, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    return {"score": float("nan")}


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    return [AlgorithmSpec(name="nan-score", version="1", description="returns a NaN score",
                          task_kinds=("nanny",), run="nan_metric_plugin:run")]  # fmt: skip


@hookimpl
def harness_environments() -> list[EnvironmentSpec]:
    return [EnvironmentSpec(name="nan-env", version="1", description="one number", task_kind="nanny",
                            make="nan_metric_plugin:make")]  # fmt: skip


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    return [MetricSpec(name="nan-metric", version="1", description="the score", unit="1", direction="higher",
                       compute=outcome_value("score"))]  # fmt: skip
