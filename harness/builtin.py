"""The harness's own hook implementations, registered before any plugin as ``harness.builtin``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.context import CellContext
from harness.hookspecs import hookimpl
from harness.record import Cell


@hookimpl(trylast=True)
def harness_execute_cell(cell: Cell, context: CellContext) -> Mapping[str, Any]:
    """Make the environment, run the algorithm on it, close the environment; return the raw outcome."""
    make, run = context.components["make"], context.components["run"]
    environment = make(params=dict(cell.environment.params), context=context)
    context.components["environment"] = environment
    outcome = run(environment=environment, params=dict(cell.algorithm.params), context=context)
    if outcome is None:
        outcome = {}
    if not isinstance(outcome, Mapping):
        raise TypeError(
            f"algorithm {cell.algorithm.name!r} returned {type(outcome).__name__}; run() must return a mapping"
        )
    return dict(outcome)
