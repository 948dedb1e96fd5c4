"""Fixture plugin whose registration hooks return the wrong types."""

from __future__ import annotations

from harness import EnvironmentSpec, MetricSpec, hookimpl

HARNESS_API_VERSION = "1.0"


@hookimpl
def harness_algorithms() -> dict[str, str]:
    return {"name": "authoring-dict"}  # a dict, not a list of AlgorithmSpec


@hookimpl
def harness_environments() -> list[object]:
    return ["authoring-env-as-text"]  # a string, not an EnvironmentSpec


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    # An EnvironmentSpec where a MetricSpec belongs.
    return [EnvironmentSpec("authoring-misplaced", "1", "Misplaced", task_kind="k", make="m:f")]  # type: ignore[list-item]
