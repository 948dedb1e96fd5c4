"""Fixture plugin that keeps the whole contract: a seeded random walk, its environment and a metric."""

from __future__ import annotations

from typing import Any

from harness import AlgorithmSpec, EnvironmentSpec, MetricSpec, Param, hookimpl

HARNESS_API_VERSION = "1.0"


def make_line(*, params: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"length": params["length"]}


def walk(*, environment: dict[str, Any], params: dict[str, Any], context: Any) -> dict[str, Any]:
    if params["step"] <= 0:
        raise ValueError(f"authoring-walk step must be positive, got step={params['step']}")
    rng = context.numpy_rng()
    steps = int(context.budget_value("steps", 20))
    position = float(rng.normal(0.0, params["step"], size=steps).sum())
    return {"position": position, "steps": steps, "length": environment["length"]}


def distance(*, outcome: dict[str, Any], environment: Any = None, context: Any = None) -> float | None:
    return abs(outcome["position"]) if "position" in outcome else None


@hookimpl
def harness_environments() -> list[EnvironmentSpec]:
    return [
        EnvironmentSpec(
            name="authoring-line",
            version="1",
            description="A line to walk on",
            task_kind="authoring-walk",
            make="authoring_good:make_line",
            params=(Param("length", 10, "length of the line"),),
        )
    ]


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    return [
        AlgorithmSpec(
            name="authoring-walk",
            version="1",
            description="A seeded random walk",
            task_kinds=("authoring-walk",),
            run="authoring_good:walk",
            params=(
                Param("step", 1.0, "standard deviation of one step"),
                Param("mode", "gauss", "step distribution", choices=("gauss",)),
            ),
        )
    ]


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            name="authoring_distance",
            version="1",
            description="Distance from the start",
            unit="1",
            direction="lower",
            compute="authoring_good:distance",
        )
    ]
