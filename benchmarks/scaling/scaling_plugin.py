"""CPU-bound cells for benchmarks/scaling/ray_speedup.py (loaded with -p; not a shipped plugin).

``spin`` and ``spin-whole-node`` do the same pure-Python work; they differ only in the CPUs they declare, so on
a 2-CPU Ray instance ``spin`` cells run two at a time and ``spin-whole-node`` cells one at a time.
"""

from __future__ import annotations

import time
from typing import Any

from harness import (
    AlgorithmSpec,
    CellContext,
    EnvironmentSpec,
    MetricSpec,
    Param,
    Resources,
    hookimpl,
    outcome_value,
)

HARNESS_API_VERSION = "1.0"


def make_workload(*, params: dict[str, Any], context: CellContext) -> int:
    return int(context.budget_value("iterations", params["iterations"]))


def run_spin(*, environment: int, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    # A linear congruential walk: pure Python, one core, no memory traffic, a result that depends on the seed.
    cpu_started = time.process_time()
    state = context.seed + 1
    for _ in range(environment):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
    # CPU seconds this cell got: on a machine shared with other work, wall time alone cannot tell a cell that
    # waited for a core from one that ran.
    return {"scaling_checksum": float(state), "cpu_s": time.process_time() - cpu_started}


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    def spin(name: str, cpus: float) -> AlgorithmSpec:
        return AlgorithmSpec(
            name=name,
            version="1",
            description=f"CPU-bound loop declaring {cpus:g} CPU(s)",
            task_kinds=("scaling",),
            run="scaling_plugin:run_spin",
            resources=Resources(cpus=cpus),
        )

    return [spin("spin", 1.0), spin("spin-whole-node", 2.0)]


@hookimpl
def harness_environments() -> list[EnvironmentSpec]:
    return [
        EnvironmentSpec(
            name="spin-workload",
            version="1",
            description="how many loop iterations a spin cell does",
            task_kind="scaling",
            make="scaling_plugin:make_workload",
            params=(Param("iterations", 1_000_000, "loop iterations (budget key 'iterations' overrides)"),),
            resources=Resources(cpus=1.0),
        )
    ]


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            name="scaling_checksum",
            version="1",
            description="final state of the spin loop (equal across executors and worker counts)",
            unit="1",
            direction="higher",
            compute=outcome_value("scaling_checksum"),
        )
    ]
