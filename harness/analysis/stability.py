"""Stability warnings for repeated measurements, in the spirit of pyperf's ``check`` command.

:func:`stability_warnings` is a pure function over one case's repeated values; the run summary, the report and
``compare`` all call it, so a noisy measurement is flagged the same way everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from harness.record import SECONDS_PER_UNIT

#: Coefficient of variation at or above which a measurement is flagged as unstable.
MAX_STABLE_CV = 0.10
#: A timed value below this many seconds is dominated by timer resolution and overhead.
MIN_TIMED_SECONDS = 1e-3
#: Min or max farther than this fraction from the median is an outlier worth a look.
MAX_DISTANCE_FROM_MEDIAN = 0.5


def stability_warnings(values: Sequence[float], unit: str = "") -> list[str]:
    """Why these repeats of one measurement should not be trusted as they are ([] when nothing is wrong).

    Checks (each gives one message): coefficient of variation >= 10%; a timed value (unit ``s``, ``ms``,
    ``us``, ``ns``) whose median is under 1 ms; the minimum or maximum more than 50% away from the median.
    Fewer than two finite values cannot show a spread, so only the timing check applies.
    """
    array = np.asarray([float(v) for v in values], dtype=float)
    array = array[np.isfinite(array)]
    warnings: list[str] = []
    if not array.size:
        return warnings
    median = float(np.median(array))
    scale = SECONDS_PER_UNIT.get(unit.strip())
    if scale is not None and abs(median) * scale < MIN_TIMED_SECONDS:
        warnings.append(
            f"median {median * scale * 1e3:.3g} ms is under 1 ms: timer overhead dominates; time more iterations"
        )
    if array.size >= 2:
        mean = float(array.mean())
        if mean != 0:
            cv = float(array.std(ddof=1) / abs(mean))
            if cv >= MAX_STABLE_CV:
                warnings.append(f"coefficient of variation {cv:.0%} >= {MAX_STABLE_CV:.0%}: unstable measurement")
        if median != 0 and math.isfinite(median):
            low, high = float(array.min()), float(array.max())
            for name, extreme in (("min", low), ("max", high)):
                distance = abs(extreme - median) / abs(median)
                if distance > MAX_DISTANCE_FROM_MEDIAN:
                    warnings.append(f"{name} is {distance:.0%} away from the median: an outlier run?")
    return warnings
