"""A test plugin with small deterministic, failing, slow and crashing algorithms (loaded with -p)."""

from __future__ import annotations

import os
import random
import time
from typing import Any

from harness import AlgorithmSpec, CellContext, EnvironmentSpec, MetricSpec, Param, Resources, hookimpl, outcome_value

HARNESS_API_VERSION = "1.0"


class Constant:
    def __init__(self, value: float) -> None:
        self.value = value


def make_constant(*, params: dict[str, Any], context: CellContext) -> Constant:
    return Constant(params["value"])


def run_noop(*, environment: Constant, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    return {"score": environment.value}


def run_random(*, environment: Constant, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    import numpy as np

    draws = [random.random() for _ in range(3)] + list(np.random.random(3))
    steps = int(context.budget_value("steps", 5))
    for step in range(steps):
        context.log("curve", environment.value * step + draws[0], step)
    return {"score": environment.value * params["scale"] + sum(draws), "draws": draws, "steps": steps}


def run_raise(*, environment: Constant, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    raise ValueError("this algorithm always fails")


def run_sleep(*, environment: Constant, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    time.sleep(params["seconds"])
    return {"score": 1.0}


def run_crash(*, environment: Constant, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    if params["how"] == "segfault":
        import ctypes

        ctypes.string_at(0)
    os._exit(3)


def run_marker(*, environment: Constant, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """Append to a file so tests can count how many times each cell really ran."""
    with open(params["path"], "a") as handle:
        handle.write(f"{context.cell['key']}\n")
    time.sleep(params["seconds"])
    return {"score": float(context.seed)}


def run_announce(*, environment: Constant, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """Write this worker's pid to a file, then sleep: lets a test find and watch the worker process."""
    with open(params["path"], "a") as handle:
        handle.write(f"{os.getpid()}\n")
    time.sleep(params["seconds"])
    return {"score": 0.0}


def run_device_probe(*, environment: Constant, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """Score 1 on the GPU, 0 on the CPU: which device the runner gave a cell that can use either."""
    return {"score": 1.0 if context.device == "cuda" else 0.0}


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    def spec(
        name: str, run: str, *params: Param, kinds: tuple[str, ...] = ("toy",), resources: Resources | None = None
    ) -> AlgorithmSpec:
        return AlgorithmSpec(
            name=name,
            version="1",
            description=f"fixture {name}",
            task_kinds=kinds,
            run=run,
            params=params,
            resources=resources or Resources(),
        )

    return [
        spec("noop", "fixture_plugin:run_noop"),
        spec("random", "fixture_plugin:run_random", Param("scale", 1.0, "multiplier")),
        spec("raise", "fixture_plugin:run_raise"),
        spec("sleep", "fixture_plugin:run_sleep", Param("seconds", 0.0)),
        spec("crash", "fixture_plugin:run_crash", Param("how", "exit", choices=("exit", "segfault"))),
        spec("marker", "fixture_plugin:run_marker", Param("path", ""), Param("seconds", 0.0)),
        spec("other-kind", "fixture_plugin:run_noop", kinds=("something-else",)),
        spec("announce", "fixture_plugin:run_announce", Param("path", ""), Param("seconds", 0.0)),
        spec("device-probe", "fixture_plugin:run_device_probe", resources=Resources(uses_gpu=True)),
    ]


@hookimpl
def harness_environments() -> list[EnvironmentSpec]:
    return [
        EnvironmentSpec(
            name="constant",
            version="1",
            description="fixture environment holding one number",
            task_kind="toy",
            make="fixture_plugin:make_constant",
            params=(Param("value", 1.0),),
        )
    ]


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            name="score",
            version="1",
            description="the outcome's score",
            unit="1",
            direction="higher",
            compute=outcome_value("score"),
        )
    ]
