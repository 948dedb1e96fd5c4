"""``run`` entry points of the GPU softmax algorithms: CuPy kernels from ``kernels/*.cu`` under the protocol.

Each algorithm is a short sequence of kernel launches (see the comment at the top of its ``.cu`` file for the
passes and the bytes they move). 16-bit inputs live in CuPy as ``uint16`` arrays of raw bits (CuPy has no
bfloat16 dtype); the kernels convert to float32, accumulate in float32 and round once on store.

Timing uses CUDA events around each launch sequence, on rotated buffers; the ceiling is a large device-to-device
copy timed the same way in the same cell; ``torch.softmax`` on the same buffers (shared through DLPack) is the
baseline where torch has CUDA.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import CellContext
from harness_softmax import protocol
from harness_softmax.workload import SoftmaxWorkload

KERNEL_DIR = Path(__file__).parent / "kernels"
COMMON_HEADER = "softmax_common.cuh"
SUFFIX = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
THREADS = 256
BLOCKS_PER_SM = 8  # multi-pass kernels aim for this many blocks per SM in flight
MIN_ITEMS_PER_THREAD = 8  # a chunk gives every thread at least this many elements
FUSED_ITEMS = (4, 8, 16, 32)  # the instantiations in kernels/fused.cu
FUSED_THREADS_TARGET = 512
FUSED_MAX_COLS = 1024 * FUSED_ITEMS[-1]
SPLIT_ITEMS = 32  # elements per thread of kernels/fused_split.cu
SPLIT_CLUSTERS = (2, 4, 8)  # its instantiations: blocks per row, one thread-block cluster (8: portable maximum)
SPLIT_MAX_COLS = SPLIT_CLUSTERS[-1] * 1024 * SPLIT_ITEMS
VECTOR_BYTES = 16  # one 128-bit load or store
DEFAULT_WARMUP = 5
DEFAULT_REPEATS = 50
DEFAULT_COPY_MB = 1024


# The kernels of each file in launch order; the entry points are these names with a dtype suffix (and, for
# the fused kernel, the items per thread): recompute_max_f32, fused_bf16_8, ...
KERNEL_FUNCTIONS = {
    "three_pass_recompute.cu": ("recompute_max", "recompute_sum", "recompute_out"),
    "three_pass_reload.cu": ("reload_max", "reload_exp", "reload_scale"),
    "two_pass.cu": ("two_pass_sum", "two_pass_out"),
    "online.cu": ("online_stats", "online_out"),
    "fused.cu": ("fused",),
    "fused_split.cu": ("fused_split",),
}


def entry_points(filename: str) -> set[str]:
    """Every kernel name the launchers may ask ``filename`` for (the compile test checks the PTX has them)."""
    names = {f"{base}_{sfx}" for base in KERNEL_FUNCTIONS[filename] for sfx in SUFFIX.values()}
    if filename == "fused.cu":
        return {f"{name}_{items}" for name in names for items in FUSED_ITEMS}
    if filename == "fused_split.cu":
        return {f"{name}_c{cluster}{tag}" for name in names for cluster in SPLIT_CLUSTERS for tag in ("", "_v")}
    return names


def _kernels(filename: str, dtype: str) -> list[Any]:
    return [kernel(filename, f"{base}_{SUFFIX[dtype]}") for base in KERNEL_FUNCTIONS[filename]]


def kernel_sources() -> list[Path]:
    """Every ``.cu`` file the GPU algorithms compile (the compile test goes through this list)."""
    return sorted(KERNEL_DIR.glob("*.cu"))


def inline_common_header(source: str) -> str:
    """The source with ``#include "softmax_common.cuh"`` replaced by the header's text.

    CuPy keys its kernel cache on the source text; inlining keeps a header change from reusing a stale binary.
    """
    header = (KERNEL_DIR / COMMON_HEADER).read_text().replace("#pragma once\n", "")  # meaningless inlined
    return source.replace(f'#include "{COMMON_HEADER}"', header)


@functools.cache
def load_module(filename: str) -> Any:
    import cupy

    # CuPy adds -arch for the device and -ftz=true (subnormal results flush to 0; the error check allows it).
    source = inline_common_header((KERNEL_DIR / filename).read_text())
    return cupy.RawModule(code=source)


def kernel(filename: str, name: str) -> Any:
    return load_module(filename).get_function(name)


@dataclass(frozen=True)
class ChunkPlan:
    """How a (rows, cols) problem is cut for the multi-pass kernels: grid (rows, chunks), chunk_cols each."""

    rows: int
    cols: int
    chunks: int
    chunk_cols: int

    @property
    def grid(self) -> tuple[int, int]:
        return (self.rows, self.chunks)


def plan_chunks(rows: int, cols: int, multiprocessors: int) -> ChunkPlan:
    """Enough blocks to fill the GPU (BLOCKS_PER_SM per SM) without chunks too small to amortise a block.

    Many short rows get one block per row; a single long vector is cut into up to a few thousand chunks whose
    partial statistics the next kernel combines (each block reads its row's partials: chunks floats, tiny next
    to the row).
    """
    wanted = max(1, math.ceil(multiprocessors * BLOCKS_PER_SM / rows))
    useful = max(1, math.ceil(cols / (THREADS * MIN_ITEMS_PER_THREAD)))
    chunk_cols = math.ceil(cols / min(wanted, useful))
    return ChunkPlan(rows, cols, math.ceil(cols / chunk_cols), chunk_cols)


def fused_launch(cols: int) -> tuple[int, int]:
    """(items per thread, threads per block) of the fused kernel for rows of ``cols`` elements.

    The fewest items (of FUSED_ITEMS) that keep a block within FUSED_THREADS_TARGET threads, so short rows
    waste no exps on padding and long rows keep enough loads in flight per thread; up to 1024 threads for the
    longest rows. Threads are a multiple of 32 (the block reductions need whole warps).
    """
    if cols > FUSED_MAX_COLS:
        raise ValueError(
            f"the one-block fused kernel holds a row in registers: rows of {cols} elements exceed "
            f"{FUSED_MAX_COLS} (1024 threads x 32 elements); split_launch() plans rows up to {SPLIT_MAX_COLS}, "
            "softmax-online-gpu or softmax-two-pass-gpu take any length"
        )
    items = next((n for n in FUSED_ITEMS if math.ceil(cols / n) <= FUSED_THREADS_TARGET), FUSED_ITEMS[-1])
    threads = min(1024, max(32, 32 * math.ceil(math.ceil(cols / items) / 32)))
    return items, threads


@dataclass(frozen=True)
class SplitLaunch:
    """How kernels/fused_split.cu covers rows of ``cols``: ``cluster`` blocks of ``threads`` per row."""

    cluster: int
    threads: int
    vector: bool  # 128-bit loads and stores (the row length is a multiple of 16 bytes)

    @property
    def chunk_cols(self) -> int:
        return self.threads * SPLIT_ITEMS


def split_launch(cols: int, itemsize: int) -> SplitLaunch:
    """The smallest cluster whose blocks hold a row of ``cols`` in registers, threads a multiple of 32.

    Rows of more than :data:`FUSED_MAX_COLS` (one block's registers) up to :data:`SPLIT_MAX_COLS`; longer rows
    raise (the online and two-pass algorithms take any length).
    """
    if cols > SPLIT_MAX_COLS:
        raise ValueError(
            f"softmax-fused-gpu holds a row in the registers of one thread-block cluster: rows of {cols} elements "
            f"exceed {SPLIT_MAX_COLS} ({SPLIT_CLUSTERS[-1]} blocks x 1024 threads x {SPLIT_ITEMS}); use "
            "softmax-online-gpu or softmax-two-pass-gpu for longer rows"
        )
    cluster = next(c for c in SPLIT_CLUSTERS if c * 1024 * SPLIT_ITEMS >= cols)
    threads = 32 * math.ceil(math.ceil(cols / cluster) / (32 * SPLIT_ITEMS))
    return SplitLaunch(cluster, threads, vector=cols % (VECTOR_BYTES // itemsize) == 0)


# --- the algorithms: each returns launch(x, y) for one workload shape and dtype ----------------------------


def _i64(value: int) -> Any:
    import numpy as np

    return np.int64(value)


def _partials(plan: ChunkPlan, count: int) -> list[Any]:
    import cupy

    return [cupy.empty(plan.rows * plan.chunks, dtype=cupy.float32) for _ in range(count)]


def build_three_pass_recompute(workload: SoftmaxWorkload, plan: ChunkPlan) -> Callable[[Any, Any], None]:
    k_max, k_sum, k_out = _kernels("three_pass_recompute.cu", workload.dtype)
    partial_max, partial_sum = _partials(plan, 2)
    shape = (_i64(plan.cols), _i64(plan.chunk_cols), _i64(plan.chunks))

    def launch(x: Any, y: Any) -> None:
        k_max(plan.grid, (THREADS,), (x, *shape, partial_max))
        k_sum(plan.grid, (THREADS,), (x, *shape, partial_max, partial_sum))
        k_out(plan.grid, (THREADS,), (x, y, *shape, partial_max, partial_sum))

    return launch


def build_three_pass_reload(workload: SoftmaxWorkload, plan: ChunkPlan) -> Callable[[Any, Any], None]:
    k_max, k_exp, k_scale = _kernels("three_pass_reload.cu", workload.dtype)
    partial_max, partial_sum = _partials(plan, 2)
    shape = (_i64(plan.cols), _i64(plan.chunk_cols), _i64(plan.chunks))

    def launch(x: Any, y: Any) -> None:
        k_max(plan.grid, (THREADS,), (x, *shape, partial_max))
        k_exp(plan.grid, (THREADS,), (x, y, *shape, partial_max, partial_sum))
        k_scale(plan.grid, (THREADS,), (y, *shape, partial_sum))

    return launch


def build_two_pass(workload: SoftmaxWorkload, plan: ChunkPlan) -> Callable[[Any, Any], None]:
    k_sum, k_out = _kernels("two_pass.cu", workload.dtype)
    partial_mantissa, partial_exponent = _partials(plan, 2)
    shape = (_i64(plan.cols), _i64(plan.chunk_cols), _i64(plan.chunks))

    def launch(x: Any, y: Any) -> None:
        k_sum(plan.grid, (THREADS,), (x, *shape, partial_mantissa, partial_exponent))
        k_out(plan.grid, (THREADS,), (x, y, *shape, partial_mantissa, partial_exponent))

    return launch


def build_online(workload: SoftmaxWorkload, plan: ChunkPlan) -> Callable[[Any, Any], None]:
    k_stats, k_out = _kernels("online.cu", workload.dtype)
    partial_max, partial_sum = _partials(plan, 2)
    shape = (_i64(plan.cols), _i64(plan.chunk_cols), _i64(plan.chunks))

    def launch(x: Any, y: Any) -> None:
        k_stats(plan.grid, (THREADS,), (x, *shape, partial_max, partial_sum))
        k_out(plan.grid, (THREADS,), (x, y, *shape, partial_max, partial_sum))

    return launch


def build_fused(workload: SoftmaxWorkload, plan: ChunkPlan) -> Callable[[Any, Any], None]:
    """One block per row up to FUSED_MAX_COLS; longer rows split over a thread-block cluster (fused_split.cu)."""
    cols = _i64(workload.cols)
    if workload.cols <= FUSED_MAX_COLS:
        items, threads = fused_launch(workload.cols)
        k_fused = kernel("fused.cu", f"fused_{SUFFIX[workload.dtype]}_{items}")
        grid = (workload.rows,)
    else:
        split = split_launch(workload.cols, workload.itemsize)
        tag = "_v" if split.vector else ""
        k_fused = kernel("fused_split.cu", f"fused_split_{SUFFIX[workload.dtype]}_c{split.cluster}{tag}")
        grid, threads = (split.cluster * workload.rows,), split.threads

    def launch(x: Any, y: Any) -> None:
        k_fused(grid, (threads,), (x, y, cols))

    return launch


def fused_path(cols: int, itemsize: int) -> str:
    """Which fused kernel rows of ``cols`` take, for the outcome record."""
    if cols <= FUSED_MAX_COLS:
        items, threads = fused_launch(cols)
        return f"one block per row ({threads} threads x {items})"
    split = split_launch(cols, itemsize)
    vector = ", 128-bit loads" if split.vector else ""
    return f"cluster of {split.cluster} blocks per row ({split.threads} threads x {SPLIT_ITEMS}{vector})"


# --- moving buffers and timing -----------------------------------------------------------------------------


def host_bits(tensor: Any) -> Any:
    """A host torch tensor as the numpy array the kernels see (16-bit types as uint16 raw bits)."""
    import torch

    if tensor.dtype == torch.float32:
        return tensor.numpy()
    return tensor.view(torch.int16).numpy().view("uint16")


def to_device(tensor: Any) -> Any:
    """A host torch tensor as a CuPy array (16-bit types as uint16 raw bits)."""
    import cupy

    return cupy.asarray(host_bits(tensor))


def to_host(array: Any, dtype: str) -> Any:
    """A CuPy array as a host torch tensor of ``dtype``."""
    import torch

    host = array.get()
    if dtype == "float32":
        return torch.from_numpy(host)
    return torch.from_numpy(host.view("int16")).view(getattr(torch, dtype))


def device_pairs(workload: SoftmaxWorkload, count: int) -> list[tuple[Any, Any]]:
    """``count`` (input, output) device buffer pairs, uploaded once per workload and kept in its cache."""
    import cupy

    pairs = workload.device_cache.setdefault("cupy_pairs", [])
    while len(pairs) < count:
        source = to_device(workload.input(len(pairs)))
        pairs.append((source, cupy.empty_like(source)))
    return pairs[:count]


def time_interleaved_gpu(
    launches: Sequence[Callable[[Any, Any], Any]], pairs: Sequence[tuple[Any, Any]], warmup: int, repeats: int
) -> list[list[float]]:
    """Seconds per launch sequence from CUDA events, launches interleaved, buffers rotated."""
    import cupy

    for i in range(warmup):
        for launch in launches:
            launch(*pairs[i % len(pairs)])
    events = [[(cupy.cuda.Event(), cupy.cuda.Event()) for _ in range(repeats)] for _ in launches]
    for i in range(repeats):
        for slot, launch in enumerate(launches):
            start, end = events[slot][i]
            start.record()
            launch(*pairs[i % len(pairs)])
            end.record()
    cupy.cuda.Device().synchronize()
    return [[cupy.cuda.get_elapsed_time(start, end) / 1e3 for start, end in slot] for slot in events]


def gpu_copy_bandwidth_gbps(size_bytes: int, repeats: int = 20) -> float:
    """The device-to-device copy ceiling: GB/s (read + write) of the median copy of ``size_bytes``."""
    import cupy

    source = cupy.ones(size_bytes // 4, dtype=cupy.float32)
    target = cupy.empty_like(source)

    def copy(_: Any, __: Any) -> None:
        target.data.copy_from_device_async(source.data, source.nbytes)

    (times,) = time_interleaved_gpu([copy], [(None, None)], warmup=3, repeats=repeats)
    return 2 * source.nbytes / statistics.median(times) / 1e9


def gpu_name() -> str:
    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def torch_cuda_softmax(dtype: str) -> Callable[[Any, Any], None] | None:
    """launch(x, y) running torch.softmax on CuPy buffers shared through DLPack, or None without torch CUDA."""
    import torch

    if torch.version.cuda is None or not torch.cuda.is_available():
        return None
    torch_dtype = getattr(torch, dtype)
    views: dict[int, Any] = {}

    def as_tensor(array: Any) -> Any:
        if array.data.ptr not in views:
            views[array.data.ptr] = torch.from_dlpack(array).view(torch_dtype)  # uint16 bits -> 16-bit floats
        return views[array.data.ptr]

    def launch(x: Any, y: Any) -> None:
        torch.softmax(as_tensor(x), dim=-1, out=as_tensor(y))

    return launch


# --- the run entry points ----------------------------------------------------------------------------------


def run_gpu(
    algorithm: str,
    build: Callable[[SoftmaxWorkload, ChunkPlan], Callable[[Any, Any], None]] | None,
    passes: tuple[int, int] | None,
    environment: SoftmaxWorkload,
    params: dict[str, Any],
    context: CellContext,
) -> dict[str, Any]:
    """The protocol of :mod:`harness_softmax.protocol` for one GPU algorithm (``build`` None: torch.softmax)."""
    import cupy

    if not isinstance(environment, SoftmaxWorkload):
        raise TypeError(f"{algorithm} runs on softmax-workload environments, got {type(environment).__name__}")
    device = cupy.cuda.Device()
    multiprocessors = device.attributes["MultiProcessorCount"]
    plan = plan_chunks(environment.rows, environment.cols, multiprocessors)
    baseline = torch_cuda_softmax(environment.dtype)
    if build is None:
        if baseline is None:
            raise RuntimeError("softmax-torch-cuda needs a CUDA build of torch; this torch has no CUDA")
        launch = baseline
    else:
        launch = build(environment, plan)

    tolerance = protocol.tolerance_for(environment.dtype, params.get("tolerance", 0.0), environment.cols)
    l2_bytes = device.attributes["L2CacheSize"]
    pairs = device_pairs(environment, environment.rotation_count(l2_bytes))
    source, target = pairs[0]
    poisoned = environment.output(0)
    protocol.poison(poisoned, environment.dtype)
    target.set(host_bits(poisoned))
    launch(source, target)
    device.synchronize()
    output = to_host(target, environment.dtype)
    error = protocol.check_output(algorithm, environment, output, environment.reference(0), tolerance)

    warmup = int(context.budget_value("warmup", DEFAULT_WARMUP))
    repeats = int(context.budget_value("repeats", DEFAULT_REPEATS))
    launches = [launch] if baseline is None else [launch, baseline]
    timings = time_interleaved_gpu(launches, pairs, warmup, repeats)
    copy_bytes = int(context.budget_value("copy_mb", DEFAULT_COPY_MB)) * 1024**2
    ceiling = gpu_copy_bandwidth_gbps(copy_bytes)
    return protocol.summarize(
        algorithm=algorithm,
        device="cuda",
        device_name=gpu_name(),
        workload=environment,
        passes=passes,
        times_s=timings[0],
        torch_times_s=timings[1] if baseline is not None else None,
        bandwidth_ceiling_gbps=ceiling,
        max_rel_error=error,
        tolerance=tolerance,
        threads=None,
        buffers=len(pairs),
        warmup=warmup,
        extra={
            "copy_bytes": copy_bytes,
            "chunks": plan.chunks,
            "multiprocessors": multiprocessors,
            "torch_baseline": "torch.softmax (CUDA)" if baseline is not None else "unavailable: torch has no CUDA",
            **({"fused_path": fused_path(environment.cols, environment.itemsize)} if build is build_fused else {}),
        },
    )


def _runner(algorithm: str, build: Any, passes: tuple[int, int] | None) -> Any:
    def run(*, environment: SoftmaxWorkload, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
        return run_gpu(algorithm, build, passes, environment, params, context)

    run.__doc__ = f"Run {algorithm} under the softmax protocol."
    return run


run_three_pass_recompute = _runner("softmax-three-pass-recompute-gpu", build_three_pass_recompute, (3, 1))
run_three_pass_reload = _runner("softmax-three-pass-reload-gpu", build_three_pass_reload, (3, 2))
run_two_pass = _runner("softmax-two-pass-gpu", build_two_pass, (2, 1))
run_online = _runner("softmax-online-gpu", build_online, (2, 1))
run_fused = _runner("softmax-fused-gpu", build_fused, (1, 1))
run_torch_cuda = _runner("softmax-torch-cuda", None, None)
