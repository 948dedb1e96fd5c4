"""A plugin whose algorithm logs a curve under a name MLflow refuses (``harness plugins check`` must say so)."""

from __future__ import annotations

from typing import Any

from harness import AlgorithmSpec, CellContext, EnvironmentSpec, MetricSpec, hookimpl, outcome_value

HARNESS_API_VERSION = "1.0"


def make(*, params: dict[str, Any], context: CellContext) -> float:
    return 1.0


def run(*, environment: float, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    context.log("return (eval)", environment, 0)
    return {"score": environment}


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    return [AlgorithmSpec(name="paren-curve", version="1", description="logs a refused curve name",
                          task_kinds=("paren",), run="refused_name_plugin:run")]  # fmt: skip


@hookimpl
def harness_environments() -> list[EnvironmentSpec]:
    return [EnvironmentSpec(name="paren-env", version="1", description="one number", task_kind="paren",
                            make="refused_name_plugin:make")]  # fmt: skip


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    return [MetricSpec(name="paren-score", version="1", description="the score", unit="1", direction="higher",
                       compute=outcome_value("score"))]  # fmt: skip
