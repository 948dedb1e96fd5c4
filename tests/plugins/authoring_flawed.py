"""Fixture plugin whose specs load but break the contract, one flaw per spec (no HARNESS_API_VERSION)."""

from __future__ import annotations

import os
from typing import Any

from harness import AlgorithmSpec, EnvironmentSpec, MetricSpec, Param, hookimpl


def make_box(*, params: dict[str, Any], context: Any) -> dict[str, Any]:
    return {}


def unseeded(*, environment: Any, params: dict[str, Any], context: Any) -> dict[str, Any]:
    # Randomness that ignores the cell's seed: two runs with seed 0 differ.
    return {"draw": int.from_bytes(os.urandom(8), "little")}


def positional_only(environment, cfg):  # not callable as run(environment=..., params=..., context=...)
    return {}


def constant(*, environment: Any, params: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"value": 1.0}


def text_metric(*, outcome: Any, environment: Any = None, context: Any = None) -> Any:
    return "one"  # wrong type: metrics return a float or None


@hookimpl
def harness_environments() -> list[EnvironmentSpec]:
    return [
        EnvironmentSpec(
            name="authoring-box",
            version="1",
            description="An empty box",
            task_kind="authoring-box",
            make="authoring_flawed:make_box",
            params=(Param("anything", None),),  # untyped and undocumented
        )
    ]


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    return [
        AlgorithmSpec(
            name="authoring-unseeded",
            version="1",
            description="Ignores the seed",
            task_kinds=("authoring-box",),
            run="authoring_flawed:unseeded",
        ),
        AlgorithmSpec(
            name="authoring-bad-signature",
            version="1",
            description="Takes positional arguments",
            task_kinds=("authoring-box",),
            run="authoring_flawed:positional_only",
        ),
        AlgorithmSpec(
            name="authoring-missing-module",
            version="1",
            description="Names a module that does not exist",
            task_kinds=("authoring-box",),
            run="authoring_no_such_module:run",
        ),
        AlgorithmSpec(
            name="authoring-bad-choice",
            version="1",
            description="Its default is not one of its choices",
            task_kinds=("authoring-box",),
            run="authoring_flawed:constant",
            params=(Param("mode", "fast", "speed", choices=("slow", "medium")),),
        ),
        AlgorithmSpec(
            name="authoring-no-environment",
            version="1",
            description="Fits a task kind nobody provides",
            task_kinds=("authoring-nowhere",),
            run="authoring_flawed:constant",
        ),
    ]


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            name="authoring_text",
            version="1",
            description="Returns text",
            unit="1",
            direction="higher",
            compute="authoring_flawed:text_metric",
            task_kinds=("authoring-text",),
        )
    ]
