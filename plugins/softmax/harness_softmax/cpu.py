"""Softmax on the CPU: compiled SIMD kernels (``harness_softmax/csrc``), chosen by the CPU's flags, over threads.

The kernels are C, built by the plugin's ``setup.py`` at install time once per instruction set (AVX-512,
AVX2 + FMA, portable C) and written as XNNPACK writes its softmax microkernels (``src/f32-raddstoreexpminusmax``,
``f32-raddextexp``, ``f32-vscaleextexp``): Cody-Waite range reduction, a degree-5 polynomial for e^t, several
vector accumulators per reduction, non-temporal stores for outputs that do not fit in cache. Softmax is taken
along each row of a contiguous rows x cols tensor; storage is float32, bfloat16 or float16, arithmetic float32.

Traffic per element (N = rows x cols, b bytes per stored element; min traffic of any softmax is 2 N b):

=========================  =====  ======  ===========  ==========================================================
algorithm                  reads  writes  traffic      passes (each over the whole batch, except fused)
=========================  =====  ======  ===========  ==========================================================
three-pass, recompute      3      1       4 N b        max | sum exp(x - max) | y = exp(x - max) / sum
three-pass, reload         3      2       5 N b        max | y = exp(x - max), sum | y *= 1 / sum
two-pass (Dukhan 2020)     2      1       3 N b        sum exp(x) as mantissa * 2^exponent | y = exp(x) / sum
online (Milakov 2018)      2      1       3 N b        running max and rescaled sum | y = exp(x - max) / sum
fused rows                 1      1       2 N b        per row, in L1/L2: max, exp into a scratch row, scale
=========================  =====  ======  ===========  ==========================================================

On memory-bound (out-of-cache) inputs the time is traffic over bandwidth, which is the Two-Pass paper's claim:
two-pass moves 3/5 of three-pass-reload's bytes, so it can be up to 1.67x faster, and the paper measures 1.18x
(AVX2) to 1.28x (AVX-512) on Skylake-X.

Domain: the max-based algorithms accept any float input (-inf included; a row of only -inf is NaN, as in
``torch.softmax``). Two-pass subtracts no max, so it clamps inputs to +-2^21 (``SM_X_LIMIT`` in simd.h): rows
whose values exceed 2^21 in magnitude are outside its domain (-inf is fine: it becomes a term 2^-3e6 smaller).

Threads: ``threads > 1`` splits a batch into contiguous groups of rows, one per thread, or, for fewer rows
than threads (a single vector), splits each row into chunks: every pass runs on all chunks in parallel and the
partial results (max, sum, mantissa and exponent) are combined here between passes. The C functions release
the GIL, so Python threads run them in parallel.

References: M. Dukhan and A. Ablavatski, "Two-Pass Softmax Algorithm", 2020 (arXiv:2001.04438); M. Milakov and
N. Gimelshein, "Online normalizer calculation for softmax", 2018 (arXiv:1805.02867).
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

# Algorithm name -> (reads, writes) of the vector per element: the bytes each must move. The codes softmax_rows
# takes are declared once, in softmax_cpu.c, and read from the module (ALGORITHM_CODES, DTYPE_CODES).
ALGORITHMS: dict[str, tuple[int, int]] = {
    "three-pass-recompute": (3, 1),
    "three-pass-reload": (3, 2),
    "two-pass": (2, 1),
    "online": (2, 1),
    "fused": (1, 1),
}
DTYPES = ("float32", "bfloat16", "float16")
# Instruction sets, fastest first, with the CPU flags each needs (as GCC's __builtin_cpu_supports names them).
ISAS: dict[str, tuple[str, ...]] = {
    "avx512": ("avx512f", "avx512bw", "avx2", "fma", "f16c"),
    "avx2": ("avx2", "fma", "f16c"),
    "portable": (),
}
ISA_CHOICES = ("auto", *ISAS)
NONTEMPORAL_CHOICES = ("auto", "on", "off")
# Chunks of a vector split over threads start on multiples of this many elements (a cache line of float32).
CHUNK_ALIGN_ELEMENTS = 64


class CompiledKernelsUnavailable(RuntimeError):
    """The compiled kernels for the requested instruction set cannot run here (not built, or CPU lacks it)."""


@cache
def _import_isa(isa: str) -> ModuleType | str:
    """The extension module for ``isa``, or a sentence saying why it cannot be imported."""
    try:
        return importlib.import_module(f"harness_softmax._cpu_{isa}")
    except ImportError as exc:
        return (
            f"the compiled {isa} softmax kernels were not built ({exc}); reinstall the plugin on a machine with "
            "a C compiler (gcc, clang or MSVC): pip install --force-reinstall --no-deps -e plugins/softmax"
        )


@cache
def cpu_features() -> dict[str, bool]:
    """CPU flags the kernels care about (from the portable extension's __builtin_cpu_supports; empty if unknown)."""
    portable = _import_isa("portable")
    return {} if isinstance(portable, str) else dict(portable.cpu_features())


def isa_unavailable_reason(isa: str) -> str | None:
    """Why the kernels for ``isa`` cannot run here, or None."""
    if isa not in ISAS:
        return f"unknown instruction set {isa!r}; choose one of {list(ISA_CHOICES)}"
    module = _import_isa(isa)
    if isinstance(module, str):
        return module
    missing = [flag for flag in ISAS[isa] if not cpu_features().get(flag, False)]
    if missing:
        return f"this CPU lacks {', '.join(missing)}, which the {isa} kernels need"
    return None


def select_isa(requested: str = "auto") -> str:
    """The instruction set to run: ``requested`` if it can run here, else (for "auto") the fastest that can."""
    if requested != "auto":
        reason = isa_unavailable_reason(requested)
        if reason:
            raise CompiledKernelsUnavailable(reason)
        return requested
    for isa in ISAS:
        if isa_unavailable_reason(isa) is None:
            return isa
    raise CompiledKernelsUnavailable(compiled_unavailable_reason() or "no compiled softmax kernels")


def compiled_unavailable_reason() -> str | None:
    """The ``requires`` probe of the compiled algorithms: None if any instruction set's kernels run here."""
    reasons = {isa: isa_unavailable_reason(isa) for isa in ISAS}
    if any(reason is None for reason in reasons.values()):
        return None
    return f"no compiled CPU softmax kernels can run here: {reasons['portable']}"


def kernel_module(isa: str = "auto") -> ModuleType:
    """The extension module of ``isa`` (``"auto"``: chosen from the CPU's flags)."""
    module = _import_isa(select_isa(isa))
    assert not isinstance(module, str)
    return module


def cache_bytes(level: int) -> int:
    """Size of the CPU's level-``level`` data/unified cache (Linux sysfs), or 0 where it cannot be read."""
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            if int((index / "level").read_text()) != level or (index / "type").read_text().strip() == "Instruction":
                continue
            text = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        multiplier = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            return int(digits) * multiplier
    return 0


def use_nontemporal(setting: str, output_bytes: int, threads: int) -> bool:
    """Whether to stream the output past the caches: "on", "off", or "auto": when the output (per thread)
    is larger than the L2 cache, so writing it through the cache would first read every line from memory."""
    if setting not in NONTEMPORAL_CHOICES:
        raise ValueError(f"nontemporal must be one of {list(NONTEMPORAL_CHOICES)}, got {setting!r}")
    if setting != "auto":
        return setting == "on"
    return output_bytes / max(1, threads) > (cache_bytes(2) or 1 << 20)


@cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="softmax-cpu")


def default_threads() -> int:
    """All the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _check_tensors(x: Any, out: Any) -> tuple[str, int, int]:
    """(dtype name, rows, cols) of a 2-D contiguous input/output pair; raises with the reason otherwise."""
    dtype = str(x.dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        raise TypeError(f"compiled CPU softmax takes float32, bfloat16 or float16, got {x.dtype}")
    if x.dim() != 2 or out.shape != x.shape or out.dtype != x.dtype:
        raise ValueError(
            f"input and output must be 2-D of one shape and dtype, got {tuple(x.shape)} {x.dtype} and "
            f"{tuple(out.shape)} {out.dtype}"
        )
    if not (x.is_contiguous() and out.is_contiguous()) or x.device.type != "cpu" or out.device.type != "cpu":
        raise ValueError("compiled CPU softmax needs contiguous host tensors")
    return dtype, x.shape[0], x.shape[1]


def softmax(
    algorithm: str,
    x: Any,
    out: Any,
    *,
    isa: str = "auto",
    threads: int = 1,
    nontemporal: str = "auto",
) -> None:
    """Softmax of each row of ``x`` (rows x cols, contiguous, host) into ``out`` with a compiled kernel."""
    dtype, rows, cols = _check_tensors(x, out)
    module = kernel_module(isa)
    code = module.ALGORITHM_CODES[algorithm]
    itemsize = x.element_size()
    threads = max(1, threads)
    nt = use_nontemporal(nontemporal, out.numel() * itemsize, threads)
    d = module.DTYPE_CODES[dtype]
    x_ptr, y_ptr = x.data_ptr(), out.data_ptr()
    if threads == 1 or rows * cols < 2 * CHUNK_ALIGN_ELEMENTS * threads:
        module.softmax_rows(code, d, x_ptr, y_ptr, rows, cols, nt)
    elif rows >= threads or algorithm == "fused":
        groups = _split(rows, min(threads, rows), 1)
        stride = cols * itemsize
        list(
            _pool(len(groups)).map(
                lambda g: module.softmax_rows(code, d, x_ptr + g[0] * stride, y_ptr + g[0] * stride, g[1], cols, nt),
                groups,
            )
        )
    else:
        for row in range(rows):
            offset = row * cols * itemsize
            _row_over_threads(module, algorithm, d, x_ptr + offset, y_ptr + offset, cols, itemsize, threads, nt)


def _split(count: int, parts: int, align: int) -> list[tuple[int, int]]:
    """``parts`` contiguous (start, length) pieces of ``count`` items, starts on multiples of ``align``."""
    step = math.ceil(count / parts / align) * align
    return [(start, min(step, count - start)) for start in range(0, count, step)]


def _row_over_threads(
    module: ModuleType, algorithm: str, d: int, x_ptr: int, y_ptr: int, n: int, itemsize: int, threads: int, nt: bool
) -> None:
    """One row split into chunks over threads: each pass in parallel, partial results combined between passes."""
    chunks = _split(n, threads, CHUNK_ALIGN_ELEMENTS)
    pool = _pool(threads)

    def each(function: Callable[[int, int, int], Any]) -> list[Any]:
        return list(pool.map(lambda c: function(x_ptr + c[0] * itemsize, y_ptr + c[0] * itemsize, c[1]), chunks))

    if algorithm in ("three-pass-recompute", "three-pass-reload"):
        row_max = max(each(lambda x, y, k: module.reduce_max(d, x, k)))
        if algorithm == "three-pass-recompute":
            total = sum(each(lambda x, y, k: module.reduce_sum_exp(d, x, k, row_max)))
            each(lambda x, y, k: module.store_exp_scaled(d, x, y, k, row_max, 1.0 / total, nt))
        else:
            total = sum(each(lambda x, y, k: module.store_exp_sum(d, x, y, k, row_max, nt)))
            each(lambda x, y, k: module.scale_inplace(d, y, k, 1.0 / total, nt))
    elif algorithm == "two-pass":
        mantissa, exponent = combine_mantissa_exponent(each(lambda x, y, k: module.reduce_ext_exp(d, x, k)))
        each(lambda x, y, k: module.store_ext_exp_scaled(d, x, y, k, 1.0 / mantissa, exponent, nt))
    elif algorithm == "online":
        row_max, total = combine_max_sum(each(lambda x, y, k: module.reduce_online(d, x, k)))
        each(lambda x, y, k: module.store_exp_scaled(d, x, y, k, row_max, 1.0 / total, nt))
    else:
        raise ValueError(f"{algorithm} cannot split one row over threads")


def combine_mantissa_exponent(parts: list[tuple[float, float]]) -> tuple[float, float]:
    """sum of m_i 2^e_i as (mantissa in [0.5, 1), exponent): the two-pass partial sums of several chunks."""
    top = max(exponent for mantissa, exponent in parts if mantissa > 0)
    total = sum(math.ldexp(mantissa, int(max(exponent - top, -1100))) for mantissa, exponent in parts)
    mantissa, shift = math.frexp(total)
    return mantissa, top + shift


def combine_max_sum(parts: list[tuple[float, float]]) -> tuple[float, float]:
    """(max, sum of exp(x - max)) of several chunks' (max, sum): the online partial results."""
    top = max(row_max for row_max, _ in parts)
    return top, sum(total * math.exp(row_max - top) for row_max, total in parts if row_max != -math.inf)


def torch_softmax(x: Any, out: Any) -> None:
    """The baseline: the library's ``torch.softmax`` writing into ``out``."""
    import torch

    torch.softmax(x, dim=-1, out=out)


def scipy_softmax(x: Any, out: Any) -> None:
    """The baseline ``scipy.special.softmax`` (numpy; it allocates its result, which is copied into ``out``)."""
    import torch
    from scipy.special import softmax as scipy_special_softmax

    if x.dtype == torch.bfloat16:
        raise TypeError("scipy.special.softmax works on numpy arrays and numpy has no bfloat16")
    out.copy_(torch.from_numpy(scipy_special_softmax(x.numpy(), axis=-1)))


def copy_pair(x: Any, out: Any, threads: int = 1) -> None:
    """``out[:] = x`` by C ``memcpy`` split over ``threads`` (torch's copy where the kernels are not built).

    Timed interleaved with the kernels on the same rotated buffers, this is the memcpy ceiling of a cell: it
    moves exactly the minimum traffic of a softmax (read the input once, write the output once)."""
    try:
        module = kernel_module("auto")
    except CompiledKernelsUnavailable:
        out.copy_(x)
        return
    nbytes = x.numel() * x.element_size()
    src, dst = x.data_ptr(), out.data_ptr()
    if threads <= 1 or nbytes < 1 << 16:
        module.memcpy(dst, src, nbytes)
        return
    chunks = _split(nbytes, threads, 64)
    list(_pool(len(chunks)).map(lambda c: module.memcpy(dst + c[0], src + c[0], c[1]), chunks))


def memcpy_bandwidth_gbps(size_bytes: int, threads: int = 1, repeats: int = 5) -> float | None:
    """GB/s (read + write) of the median C ``memcpy`` of ``size_bytes`` split over ``threads``, or None without
    the compiled kernels. This is the ceiling the compiled kernels are measured against (glibc streams large
    copies past the cache, as the kernels' non-temporal stores do)."""
    import statistics
    import time

    import torch

    try:
        module = kernel_module("auto")
    except CompiledKernelsUnavailable:
        return None
    count = max(CHUNK_ALIGN_ELEMENTS, size_bytes // 4)
    source = torch.ones(count, dtype=torch.float32)  # ones, not empty: the pages must exist before timing
    target = torch.zeros(count, dtype=torch.float32)
    chunks = _split(count, max(1, threads), CHUNK_ALIGN_ELEMENTS)
    pool = _pool(len(chunks))
    src, dst = source.data_ptr(), target.data_ptr()

    def copy() -> None:
        list(pool.map(lambda c: module.memcpy(dst + 4 * c[0], src + 4 * c[0], 4 * c[1]), chunks))

    copy()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        copy()
        times.append(time.perf_counter() - start)
    return 2 * count * 4 / statistics.median(times) / 1e9
