"""Fixture plugin b: registers the algorithm name authoring-dup-algo, as the other dup fixture does."""

from __future__ import annotations

from typing import Any

from harness import AlgorithmSpec, hookimpl

HARNESS_API_VERSION = "1.0"


def run(*, environment: Any, params: Any, context: Any) -> dict[str, Any]:
    return {"plugin": "b"}


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    return [
        AlgorithmSpec("authoring-dup-algo", "1", "Claimed twice", task_kinds=("authoring-walk",), run=run),
        AlgorithmSpec("authoring-only-b", "1", "Claimed once", task_kinds=("authoring-walk",), run=run),
    ]
