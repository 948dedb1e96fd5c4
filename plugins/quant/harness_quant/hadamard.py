"""Block Walsh-Hadamard transform along the last dimension (CPU path in torch; the GPU kernel is kernels/fwht.cu).

``H`` is the Sylvester Hadamard matrix scaled by ``1/sqrt(n)``: symmetric and orthogonal, so it is its own
inverse and ``x @ W.T == (x H) @ (W H).T``. A dimension is cut into blocks of ``block`` (a power of two; 128 as
in QuEST) after zero-padding it to a multiple of the block; a dimension smaller than the block uses the next
power of two. Padding both operands with zeros keeps their product unchanged.
"""

from __future__ import annotations

import functools
import math

import torch


def block_size_for(dim: int, block: int = 128) -> int:
    """The block actually used for a dimension of size ``dim``: ``block``, or the next power of two below it."""
    if block <= 0 or block & (block - 1):
        raise ValueError(f"Hadamard block size must be a power of two, got {block}")
    return min(block, 1 << max(0, math.ceil(math.log2(max(dim, 1)))))


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Normalised fast Walsh-Hadamard transform of the last dimension (a power of two), differentiable."""
    n = x.shape[-1]
    if n & (n - 1):
        raise ValueError(f"fwht needs a power-of-two last dimension, got {n}")
    lead = x.shape[:-1]
    y = x
    half = 1
    while half < n:
        # Butterfly on pairs (i, i + half) inside blocks of 2*half: view as (..., blocks, 2, half).
        y = y.reshape(*lead, n // (2 * half), 2, half)
        y = torch.stack((y[..., 0, :] + y[..., 1, :], y[..., 0, :] - y[..., 1, :]), dim=-2)
        half *= 2
    return y.reshape(*lead, n) / math.sqrt(n)


@functools.cache
def hadamard_matrix(size: int) -> torch.Tensor:
    """The normalised ``size x size`` Sylvester Hadamard matrix (symmetric, orthogonal), float32."""
    return fwht(torch.eye(size, dtype=torch.float64)).to(torch.float32)


def block_hadamard(x: torch.Tensor, block: int = 128) -> torch.Tensor:
    """Rotate the last dimension of ``x`` block by block; the result is zero-padded to a multiple of the block.

    On the CPU a dense product with the cached ``block x block`` matrix is faster than :func:`fwht`'s
    log2(block) passes over memory (one BLAS call against seven temporary tensors); the results agree to
    float rounding, which the tests check. The GPU kernel (kernels/fwht.cu) does the butterflies instead.
    """
    dim = x.shape[-1]
    size = block_size_for(dim, block)
    padded = math.ceil(dim / size) * size
    if padded != dim:
        x = torch.nn.functional.pad(x, (0, padded - dim))
    lead = x.shape[:-1]
    matrix = hadamard_matrix(size).to(dtype=x.dtype, device=x.device)
    return (x.reshape(*lead, padded // size, size) @ matrix).reshape(*lead, padded)


def inverse_block_hadamard(y: torch.Tensor, dim: int, block: int = 128) -> torch.Tensor:
    """Undo :func:`block_hadamard` (the transform is its own inverse) and drop the padding back to ``dim``."""
    size = block_size_for(dim, block)
    lead = y.shape[:-1]
    padded = y.shape[-1]
    matrix = hadamard_matrix(size).to(dtype=y.dtype, device=y.device)
    return (y.reshape(*lead, padded // size, size) @ matrix).reshape(*lead, padded)[..., :dim]
