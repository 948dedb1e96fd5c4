"""Metrics every suite can use: wall time, CPU time and peak memory of a cell.

They are measured by a ``harness_execute_cell`` wrapper around the whole cell (making the environment and
running the algorithm) in the worker process, so they include data loading and model building, but not work
a cell does for every later cell too (``context.shared_setup``: generating a dataset into the shared cache,
training the full-precision model every quantizer reuses): that is ``shared_setup_s``, recorded apart, so the
first cell of a suite is not charged for it.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness import CellContext, MetricSpec, hookimpl

HARNESS_API_VERSION = "1.0"
VERSION = "0.1.0"

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter: workers are reused, so without it the peak spans earlier cells."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@hookimpl(wrapper=True)
def harness_execute_cell(cell: Any, context: CellContext) -> Any:
    exact_peak = _reset_peak_rss()
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    outcome = yield
    shared = float(context.measurements.get("shared_setup_s", 0.0))
    context.measurements["wall_time_s"] = max(0.0, time.perf_counter() - wall_start - shared)
    context.measurements["cpu_time_s"] = time.process_time() - cpu_start
    context.measurements["peak_memory_mb"] = _peak_rss_mb()
    context.measurements["peak_memory_exact"] = exact_peak
    return outcome


def _measured(name: str) -> Any:
    def compute(*, outcome: Mapping[str, Any], environment: Any = None, context: CellContext) -> float | None:
        value = context.measurements.get(name)
        return None if value is None else float(value)

    compute.__name__ = f"measured_{name}"
    return compute


wall_time_s = _measured("wall_time_s")
cpu_time_s = _measured("cpu_time_s")
peak_memory_mb = _measured("peak_memory_mb")


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            name="wall_time_s",
            version=VERSION,
            description="Wall-clock time of the cell's own work (environment setup and algorithm, not shared "
            "cache building such as dataset generation), in the worker.",
            unit="s",
            direction="lower",
            compute="harness_core_metrics.plugin:wall_time_s",
            threshold=0.10,
            depends_on_hardware=True,
        ),
        MetricSpec(
            name="cpu_time_s",
            version=VERSION,
            description="CPU time of the worker process during the cell (all threads).",
            unit="s",
            direction="lower",
            compute="harness_core_metrics.plugin:cpu_time_s",
            threshold=0.10,
            depends_on_hardware=True,
        ),
        MetricSpec(
            name="peak_memory_mb",
            version=VERSION,
            description="Peak resident memory of the worker process during the cell (VmHWM, reset per cell).",
            unit="MiB",
            direction="lower",
            compute="harness_core_metrics.plugin:peak_memory_mb",
            threshold=0.10,
            depends_on_hardware=True,
        ),
    ]
