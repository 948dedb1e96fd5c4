"""Fixture plugin: a metric that returns text instead of a number, on an otherwise fine cell."""

from __future__ import annotations

from typing import Any

from harness import AlgorithmSpec, EnvironmentSpec, MetricSpec, hookimpl

HARNESS_API_VERSION = "1.0"


def make(*, params: Any, context: Any) -> dict[str, Any]:
    return {}


def run(*, environment: Any, params: Any, context: Any) -> dict[str, Any]:
    return {"value": 1.0}


def text(*, outcome: Any, environment: Any = None, context: Any = None) -> Any:
    return "one"


@hookimpl
def harness_environments() -> list[EnvironmentSpec]:
    return [EnvironmentSpec("authoring-text-env", "1", "An environment", task_kind="authoring-text", make=make)]


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    return [AlgorithmSpec("authoring-text-algo", "1", "An algorithm", task_kinds=("authoring-text",), run=run)]


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    return [MetricSpec("authoring_text_value", "1", "Text, wrongly", unit="1", direction="higher", compute=text)]
