"""Where fake quantization and the Hadamard transform run: the CuPy kernels for CUDA tensors, torch elsewhere.

The quantizers call the three functions here instead of the torch code of :mod:`harness_quant.grids`,
:mod:`harness_quant.quantizers.quest` and :mod:`harness_quant.hadamard` directly. A float32 matrix on a CUDA
device goes to the kernels of ``kernels/*.cu`` (through :mod:`harness_quant.gpu`, sharing memory with torch
by DLPack, on torch's current stream); anything else, and every case the kernels do not cover (grids per
tensor or per group, a dimension that is not a multiple of the Hadamard block), runs the torch code, which
stays the reference the kernels are tested and benchmarked against.

``HARNESS_QUANT_KERNELS=torch`` keeps CUDA tensors on torch's CUDA ops (to measure or compare the reference);
the default, ``auto``, uses the kernels wherever CuPy sees the device.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Protocol

import torch

from harness_quant.grids import quantize_dequantize
from harness_quant.hadamard import block_hadamard, block_size_for

KERNELS_VARIABLE = "HARNESS_QUANT_KERNELS"
KERNEL_CHOICES = ("auto", "torch")


class Kernels(Protocol):
    """The device kernels on torch tensors: what :func:`kernels_for` returns."""

    def rtn_rows(self, x: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor: ...
    def quest_rows(
        self, x: torch.Tensor, bits: int, alpha_scale: float, trust: float
    ) -> tuple[torch.Tensor, torch.Tensor]: ...
    def fwht(self, x: torch.Tensor, block: int) -> torch.Tensor: ...


class CupyKernels:
    """:mod:`harness_quant.gpu` on CUDA torch tensors (zero-copy through DLPack, on torch's current stream)."""

    def _run(self, function: Any, x: torch.Tensor, *args: Any) -> Any:
        import cupy

        from harness_quant import gpu

        stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(x.device).cuda_stream)
        with cupy.cuda.Device(x.device.index or 0), stream:
            return getattr(gpu, function)(cupy.from_dlpack(x.detach().contiguous()), *args)

    def rtn_rows(self, x: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
        return torch.from_dlpack(self._run("rtn_fake_quant_rows", x, bits, symmetric))

    def quest_rows(
        self, x: torch.Tensor, bits: int, alpha_scale: float, trust: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        values, trusted = self._run("quest_fake_quant_rows", x, bits, alpha_scale, trust)
        return torch.from_dlpack(values), torch.from_dlpack(trusted).bool()

    def fwht(self, x: torch.Tensor, block: int) -> torch.Tensor:
        return torch.from_dlpack(self._run("fwht_blocks", x, block))


@functools.cache
def _cupy_sees_a_device() -> bool:
    from harness_quant import gpu

    return gpu.unavailable_reason() is None


def kernel_choice() -> str:
    choice = os.environ.get(KERNELS_VARIABLE, "auto")
    if choice not in KERNEL_CHOICES:
        raise ValueError(f"{KERNELS_VARIABLE}={choice!r}: use one of {', '.join(KERNEL_CHOICES)}")
    return choice


def kernels_for(x: torch.Tensor) -> Kernels | None:
    """The CuPy kernels when ``x`` is a float32 matrix on a CUDA device they can run on, else None (torch)."""
    if not x.is_cuda or x.dtype != torch.float32 or x.dim() != 2 or kernel_choice() == "torch":
        return None
    return CupyKernels() if _cupy_sees_a_device() else None


def rtn_rows(x: torch.Tensor, bits: int, symmetric: bool = True) -> torch.Tensor:
    """Per-row round-to-nearest fake quantization (no gradient rule): ``quantize_dequantize(..., "channel")``."""
    kernels = kernels_for(x)
    if kernels is None:
        return quantize_dequantize(x, bits, symmetric=symmetric, granularity="channel")
    return kernels.rtn_rows(x, bits, symmetric)


def quest_rows(
    x: torch.Tensor, bits: int, alpha_scale: float, trust: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """QuEST's (values, trust mask) from the kernel, or None where the torch code is to run."""
    kernels = kernels_for(x)
    return None if kernels is None else kernels.quest_rows(x, bits, alpha_scale, trust)


class _KernelHadamard(torch.autograd.Function):
    """y = x H per block with the FWHT kernel; H is symmetric and orthogonal, so the gradient is grad H too."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, block: int, kernels: Kernels) -> torch.Tensor:
        ctx.block, ctx.kernels = block, kernels
        return kernels.fwht(x, block)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ctx.kernels.fwht(grad.contiguous(), ctx.block), None, None


def hadamard(x: torch.Tensor, block: int = 128) -> torch.Tensor:
    """:func:`harness_quant.hadamard.block_hadamard` of a matrix, on the FWHT kernel where it applies."""
    kernels = kernels_for(x)
    size = block_size_for(x.shape[-1], block)
    if kernels is None or x.shape[-1] % size or size < 2:
        return block_hadamard(x, block)
    return _KernelHadamard.apply(x, size, kernels)
