"""The measurement protocol every softmax algorithm follows, on CPU and GPU alike.

1. Poison the output with a NaN bit pattern no arithmetic produces, run once, and require that no element
   still holds it (every element written) and that the max relative error against the float64 reference is
   within tolerance. A kernel that fails either check raises :class:`SoftmaxCorrectnessError`: the runner
   records the cell as failed and nothing is timed.
2. Time with warm-up and the median of ``repeats`` runs over rotated buffers, interleaving the algorithm with
   the ``torch.softmax`` baseline so both see the same machine state.
3. Measure the bandwidth ceiling (a large copy) on the same device in the same cell.

Throughput is reported twice: over the minimum traffic any softmax needs (read the input once, write the
output once), comparable across algorithms, and over the traffic of the algorithm's actual passes, which says
how close each pass runs to the ceiling.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from harness_softmax.workload import SoftmaxWorkload

# Max relative error allowed per dtype: two ulps of the storage type for the 16-bit types (rounding the output
# alone costs half an ulp; storing exp(x - max) before rescaling costs another), and for float32, where
# correct kernels measure about 3e-7 on rows up to 10^5 of uniform(-1000, 1000), a bound that a wrong range
# reduction or a sloppy sum (errors of 3e-5 and up) does not pass.
DEFAULT_TOLERANCE = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}
# A float32 sum of n terms accumulated in a few sequential lanes errs like sqrt(n) ulps: torch.softmax itself
# measures 1.0e-5 on a 10^7-element row. Past this many columns the float32 tolerance grows with sqrt(cols).
FLOAT32_TOLERANCE_COLUMNS = 10**6

# NaN bit patterns with payloads arithmetic never produces (hardware makes the canonical quiet NaN).
POISON_BITS = {"float32": 0x7FBADBAD, "float16": 0x7D5B, "bfloat16": 0x7FAB}

# Elements of the error computation done at once, so a 10^8-element check does not hold 5 float64 copies.
ERROR_CHUNK_ELEMENTS = 1 << 22


class SoftmaxCorrectnessError(AssertionError):
    """A kernel wrote a wrong or incomplete result: the cell fails and is never timed."""


def tolerance_for(dtype: str, override: float, cols: int = 1) -> float:
    """The tolerance for rows of ``cols`` elements of ``dtype``: ``override`` when positive, else the default.

    The default is :data:`DEFAULT_TOLERANCE`, and for float32 rows longer than
    :data:`FLOAT32_TOLERANCE_COLUMNS` it grows with the square root of the row length.
    """
    if override > 0:
        return override
    if dtype == "float32":
        return DEFAULT_TOLERANCE[dtype] * max(1.0, math.sqrt(cols / FLOAT32_TOLERANCE_COLUMNS))
    return DEFAULT_TOLERANCE[dtype]


def _bit_view(tensor: Any) -> Any:
    import torch

    return tensor.view(torch.int32 if tensor.element_size() == 4 else torch.int16)


def poison(output: Any, dtype: str) -> None:
    """Fill a host output tensor with the poison NaN of ``dtype``."""
    _bit_view(output).fill_(POISON_BITS[dtype])


def count_unwritten(output: Any, dtype: str) -> tuple[int, int | None]:
    """(elements still holding the poison, flat index of the first one or None)."""
    import torch

    still_poisoned = (_bit_view(output) == POISON_BITS[dtype]).reshape(-1)
    count = int(still_poisoned.sum())
    first = int(torch.argmax(still_poisoned.to(torch.uint8))) if count else None
    return count, first


def max_relative_error(output: Any, reference: Any, dtype: str) -> tuple[float, int]:
    """(max relative error, flat index where it occurs) of ``output`` against the float64 ``reference``.

    The denominator is floored at the dtype's smallest normal number: most softmax outputs of wide-range
    inputs underflow, and an output of 0 for a reference of 1e-300 is correct, not 100% wrong. For the same
    reason an output of exactly 0 where the reference is below the smallest normal counts as exact: CuPy
    compiles kernels with flush-to-zero (``-ftz=true``), which rounds every subnormal result to 0. A NaN or
    inf in the output counts as an infinite error.
    """
    import torch

    tiny = torch.finfo(getattr(torch, dtype)).tiny
    flat_out, flat_ref = output.reshape(-1), reference.reshape(-1)
    worst, worst_index = 0.0, 0
    for start in range(0, flat_out.numel(), ERROR_CHUNK_ELEMENTS):
        out = flat_out[start : start + ERROR_CHUNK_ELEMENTS].to(torch.float64)
        ref = flat_ref[start : start + ERROR_CHUNK_ELEMENTS]
        error = (out - ref).abs_().div_(ref.clamp(min=tiny))
        error.masked_fill_((out == 0) & (ref < tiny), 0.0)
        error = torch.where(torch.isfinite(out), error, torch.full_like(error, float("inf")))
        index = int(torch.argmax(error))
        if float(error[index]) > worst or start == 0:
            worst, worst_index = float(error[index]), start + index
    return worst, worst_index


def check_output(algorithm: str, workload: SoftmaxWorkload, output: Any, reference: Any, tolerance: float) -> float:
    """Raise :class:`SoftmaxCorrectnessError` unless every element was written and within tolerance.

    Returns the max relative error. ``output`` must be a host tensor that was poisoned before the run.
    """
    unwritten, first = count_unwritten(output, workload.dtype)
    if unwritten:
        row, col = divmod(first, workload.cols)
        raise SoftmaxCorrectnessError(
            f"{algorithm} left {unwritten} of {workload.elements} output elements unwritten on "
            f"{workload.describe()} (first at row {row}, column {col}); the cell is not timed"
        )
    error, index = max_relative_error(output, reference, workload.dtype)
    if not error <= tolerance:
        row, col = divmod(index, workload.cols)
        got = float(output.reshape(-1)[index])
        expected = float(reference.reshape(-1)[index])
        raise SoftmaxCorrectnessError(
            f"{algorithm} max relative error {error:.3g} exceeds the {workload.dtype} tolerance {tolerance:.3g} "
            f"on {workload.describe()} at row {row}, column {col} (got {got!r}, float64 reference "
            f"{expected!r}); the cell is not timed"
        )
    return error


def time_interleaved_cpu(
    kernels: Sequence[Callable[[Any, Any], Any]],
    pairs: Sequence[tuple[Any, Any]],
    warmup: int,
    repeats: int,
) -> list[list[float]]:
    """Wall-clock seconds of each kernel per repetition, kernels interleaved, buffers rotated.

    Repetition ``i`` runs every kernel once on buffer pair ``i mod len(pairs)``, so a drift of the machine
    (another process, frequency scaling) hits the algorithm and its baseline alike.
    """
    for i in range(warmup):
        for kernel in kernels:
            kernel(*pairs[i % len(pairs)])
    times: list[list[float]] = [[] for _ in kernels]
    for i in range(repeats):
        source, target = pairs[i % len(pairs)]
        for slot, kernel in enumerate(kernels):
            start = time.perf_counter()
            kernel(source, target)
            times[slot].append(time.perf_counter() - start)
    return times


def cpu_copy_bandwidth_gbps(size_bytes: int, repeats: int = 5) -> float:
    """The CPU memcpy ceiling: GB/s (read + write) of the median ``dst.copy_(src)`` of ``size_bytes``."""
    import torch

    count = max(1, size_bytes // 4)
    source = torch.ones(count, dtype=torch.float32)  # ones, not empty: the pages must exist before timing
    target = torch.zeros(count, dtype=torch.float32)
    target.copy_(source)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        target.copy_(source)
        times.append(time.perf_counter() - start)
    return 2 * count * 4 / statistics.median(times) / 1e9


def summarize(
    *,
    algorithm: str,
    device: str,
    device_name: str,
    workload: SoftmaxWorkload,
    passes: tuple[int, int] | None,
    times_s: Sequence[float],
    torch_times_s: Sequence[float] | None,
    bandwidth_ceiling_gbps: float,
    max_rel_error: float,
    tolerance: float,
    threads: int | None,
    buffers: int,
    warmup: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The outcome record of one softmax cell (JSON-serialisable; the softmax_* metrics read it)."""
    median = statistics.median(times_s)
    gbps = workload.min_traffic_bytes / median / 1e9
    actual = None
    if passes is not None:
        reads, writes = passes
        actual = (reads + writes) * workload.nbytes / median / 1e9
    torch_median = statistics.median(torch_times_s) if torch_times_s else None
    ordered = sorted(times_s)
    outcome: dict[str, Any] = {
        "algorithm": algorithm,
        "device": device,
        "device_name": device_name,
        "rows": workload.rows,
        "cols": workload.cols,
        "dtype": workload.dtype,
        "elements": workload.elements,
        "min_traffic_bytes": workload.min_traffic_bytes,
        "passes_read": passes[0] if passes else None,
        "passes_written": passes[1] if passes else None,
        "time_s": median,
        "time_s_min": ordered[0],
        "time_s_p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "repeats": len(times_s),
        "warmup": warmup,
        "buffers": buffers,
        "gbps_min_traffic": gbps,
        "gbps_actual_passes": actual,
        "bandwidth_ceiling_gbps": bandwidth_ceiling_gbps,
        "fraction_of_ceiling": gbps / bandwidth_ceiling_gbps,
        "torch_time_s": torch_median,
        "speedup_vs_torch": torch_median / median if torch_median else None,
        "max_rel_error": max_rel_error,
        "tolerance": tolerance,
        "threads": threads,
    }
    outcome.update(extra or {})
    return outcome
