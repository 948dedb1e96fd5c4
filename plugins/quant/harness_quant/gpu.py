"""GPU path: CuPy wrappers around the CUDA kernels in ``kernels/`` (fake quantization and block FWHT).

Import cost is nil until a function is called; CuPy is imported then. The functions take and return CuPy
float32 arrays and mirror the CPU references: :func:`rtn_fake_quant_rows` is
``grids.quantize_dequantize(x, bits, symmetric, "channel")``, :func:`quest_fake_quant_rows` is
``QuESTQuantizer`` (values and trust mask) and :func:`fwht_blocks` is ``hadamard.block_hadamard`` on a last
dimension that is a multiple of the block. ``benchmarks/quant/gpu_kernels.py`` checks them against those
references on irregular shapes and reports GB/s next to the device's measured copy bandwidth.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

KERNEL_FILES = ("fake_quant.cu", "fwht.cu")
THREADS_PER_ROW = 256


def kernel_source(name: str) -> str:
    """The text of a kernel file shipped as package data."""
    return resources.files("harness_quant").joinpath("kernels", name).read_text()


def unavailable_reason() -> str | None:
    """None when CuPy sees a CUDA device, else what is missing."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed: pip install 'harness-quant[gpu]'"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device is visible"
    except Exception as exc:  # the driver is absent
        return f"no usable CUDA device ({type(exc).__name__}: {exc})"
    return None


@functools.cache
def _module(name: str) -> Any:
    import cupy

    return cupy.RawModule(code=kernel_source(name), options=("-std=c++17",))


def rtn_fake_quant_rows(x: Any, bits: int, symmetric: bool = True) -> Any:
    """Per-row RTN quantize-dequantize of a C-contiguous float32 (rows, cols) CuPy array."""
    import cupy

    x = cupy.ascontiguousarray(x, dtype=cupy.float32)
    y = cupy.empty_like(x)
    rows, cols = x.shape
    kernel = _module("fake_quant.cu").get_function("rtn_fake_quant_rows")
    kernel((rows,), (THREADS_PER_ROW,), (x, y, cupy.int32(cols), cupy.int32(bits), cupy.int32(int(symmetric))))
    return y


def quest_fake_quant_rows(x: Any, bits: int, alpha_scale: float, trust: float = 1.0) -> tuple[Any, Any]:
    """QuEST's per-row Gaussian-fitted quantization; returns (values, trust mask as uint8)."""
    import cupy

    x = cupy.ascontiguousarray(x, dtype=cupy.float32)
    y = cupy.empty_like(x)
    trusted = cupy.empty(x.shape, dtype=cupy.uint8)
    rows, cols = x.shape
    kernel = _module("fake_quant.cu").get_function("quest_fake_quant_rows")
    kernel(
        (rows,),
        (THREADS_PER_ROW,),
        (x, y, trusted, cupy.int32(cols), cupy.int32(bits), cupy.float32(alpha_scale), cupy.float32(trust)),
    )
    return y, trusted


def fwht_blocks(x: Any, block: int = 128) -> Any:
    """Normalised Walsh-Hadamard transform of every block of ``block`` consecutive floats of the last axis."""
    import cupy

    if block & (block - 1) or not 2 <= block <= 2048:
        raise ValueError(f"block must be a power of two in 2..2048, got {block}")
    x = cupy.ascontiguousarray(x, dtype=cupy.float32)
    if x.shape[-1] % block:
        raise ValueError(f"last dimension {x.shape[-1]} is not a multiple of the block {block}; pad it first")
    y = cupy.empty_like(x)
    kernel = _module("fwht.cu").get_function("fwht_blocks")
    kernel((x.size // block,), (block // 2,), (x, y, cupy.int32(block)), shared_mem=block * 4)
    return y
