"""Softmax workloads (task kind ``softmax-workload``): the data every softmax algorithm consumes.

A :class:`SoftmaxWorkload` is a batch of ``rows`` independent rows of ``cols`` elements each (a single long
vector is one row); softmax is taken along each row. It describes data, not a device: inputs live on the host
as torch tensors, and GPU algorithms upload their own copies (cached in :attr:`SoftmaxWorkload.device_cache`).

Inputs are drawn from ``uniform(low, high)`` with a generator seeded from the cell's seed and the buffer's
index, so every buffer is fresh, reproducible data (never zeros: a kernel that forgets the max subtraction
overflows on inputs near 1000). Timed runs rotate over several input/output buffer pairs so that a buffer
small enough to fit in the last-level cache is not timed hot from the previous repetition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import CellContext

DTYPES = ("float32", "float16", "bfloat16")
ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}
# Rotation never holds more than this many bytes of inputs and outputs together.
ROTATION_MEMORY_CAP_BYTES = 2 * 1024**3
MAX_BUFFERS = 16


@dataclass
class SoftmaxWorkload:
    """``rows`` x ``cols`` inputs of ``dtype`` from ``uniform(low, high)``; softmax along each row.

    ``buffers`` is the number of input/output pairs timed runs rotate over; 0 lets each algorithm pick enough
    pairs to exceed twice the cache of the device it runs on (:meth:`rotation_count`).
    """

    rows: int
    cols: int
    dtype: str
    low: float
    high: float
    seed: int
    buffers: int = 0
    _inputs: list[Any] = field(default_factory=list, repr=False)
    _outputs: list[Any] = field(default_factory=list, repr=False)
    _references: dict[int, Any] = field(default_factory=dict, repr=False)
    # GPU algorithms keep their uploaded buffers here, keyed by their own names; dropped by close().
    device_cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"softmax workload needs rows >= 1 and cols >= 1, got {self.rows} x {self.cols}")
        if self.dtype not in DTYPES:
            raise ValueError(f"softmax workload dtype {self.dtype!r} is not one of {list(DTYPES)}")
        if not self.low < self.high:
            raise ValueError(f"softmax workload needs low < high, got low={self.low} high={self.high}")
        if self.buffers < 0:
            raise ValueError(f"softmax workload buffers must be >= 0 (0: automatic), got {self.buffers}")

    @property
    def elements(self) -> int:
        return self.rows * self.cols

    @property
    def itemsize(self) -> int:
        return ITEMSIZE[self.dtype]

    @property
    def nbytes(self) -> int:
        """Bytes of one input (and of one output) buffer."""
        return self.elements * self.itemsize

    @property
    def min_traffic_bytes(self) -> int:
        """The least any softmax must move: read the input once, write the output once."""
        return 2 * self.nbytes

    def describe(self) -> str:
        return f"{self.rows}x{self.cols} {self.dtype} uniform({self.low:g}, {self.high:g})"

    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)

    def rotation_count(self, cache_bytes: int) -> int:
        """How many buffer pairs to rotate over: ``buffers`` if set, else enough to exceed 2x ``cache_bytes``."""
        if self.buffers:
            return self.buffers
        pair_bytes = 2 * self.nbytes
        wanted = math.ceil(2 * cache_bytes / pair_bytes)
        affordable = max(1, ROTATION_MEMORY_CAP_BYTES // pair_bytes)
        return max(1, min(wanted, affordable, MAX_BUFFERS))

    def input(self, index: int) -> Any:
        """Input buffer ``index`` (host torch tensor, rows x cols), generated on first use."""
        while len(self._inputs) <= index:
            self._inputs.append(self._generate(len(self._inputs)))
        return self._inputs[index]

    def output(self, index: int) -> Any:
        """Output buffer ``index`` (host torch tensor, uninitialised: algorithms poison it before checking)."""
        import torch

        while len(self._outputs) <= index:
            self._outputs.append(torch.empty((self.rows, self.cols), dtype=self.torch_dtype()))
        return self._outputs[index]

    def pairs(self, count: int) -> list[tuple[Any, Any]]:
        """The first ``count`` (input, output) host buffer pairs."""
        return [(self.input(i), self.output(i)) for i in range(count)]

    def reference(self, index: int = 0) -> Any:
        """float64 softmax of input ``index`` (computed on first use, then kept)."""
        import torch

        if index not in self._references:
            self._references[index] = torch.softmax(self.input(index).to(torch.float64), dim=-1)
        return self._references[index]

    def _generate(self, index: int) -> Any:
        import numpy as np
        import torch

        # Stream 0 of the cell's seed is left to the harness; buffer i draws from stream i + 1.
        rng = np.random.default_rng([self.seed, index + 1])
        values = np.empty((self.rows, self.cols), dtype=np.float32)
        rng.random(out=values, dtype=np.float32)
        values *= np.float32(self.high - self.low)
        values += np.float32(self.low)
        tensor = torch.from_numpy(values)
        return tensor if self.dtype == "float32" else tensor.to(self.torch_dtype())

    def close(self) -> None:
        """Drop every buffer (host and device) so the next cell starts with its memory back."""
        self._inputs.clear()
        self._outputs.clear()
        self._references.clear()
        self.device_cache.clear()


def _params_of(params: dict[str, Any], *names: str) -> list[Any]:
    return [params[name] for name in names]


def make_rows(*, params: dict[str, Any], context: CellContext) -> SoftmaxWorkload:
    """Environment ``softmax-rows``: a batch of rows (4096 x 1024 ... 256 x 262144, irregular 1823 x 781)."""
    rows, cols, dtype, low, high, buffers = _params_of(params, "rows", "cols", "dtype", "low", "high", "buffers")
    return SoftmaxWorkload(rows, cols, dtype, low, high, seed=context.seed, buffers=buffers)


def make_vector(*, params: dict[str, Any], context: CellContext) -> SoftmaxWorkload:
    """Environment ``softmax-vector``: one long vector of ``n`` elements (10^4 in cache ... 10^8 far out)."""
    n, dtype, low, high, buffers = _params_of(params, "n", "dtype", "low", "high", "buffers")
    return SoftmaxWorkload(1, n, dtype, low, high, seed=context.seed, buffers=buffers)


def last_level_cache_bytes() -> int:
    """The CPU's largest cache (Linux sysfs), or 32 MiB where it cannot be read."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip().upper()
        multiplier = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * multiplier)
    return max(sizes, default=32 * 1024**2)
