"""Softmax on the CPU, one function per algorithm, written in torch ops with each algorithm's pass structure.

Every kernel has the signature ``kernel(x, out, block_elements)``: ``x`` and ``out`` are rows x cols host
tensors of one dtype (float32, float16 or bfloat16); softmax is taken along each row and written into ``out``.
Arithmetic is float32 whatever the storage dtype.

Why blocks: torch runs one op at a time, and each op over a whole tensor is a full trip to memory. A pass here
is a loop over blocks of ``block_elements`` (a few rows, or a slice of one long row) small enough that the
handful of temporaries torch makes for one block stay in the L2 cache, so the trips to memory are exactly the
algorithm's: per element, with N = rows x cols and b the storage bytes per element,

=========================  =====  ======  =====================  ==========================================
algorithm                  reads  writes  min traffic moved      passes
=========================  =====  ======  =====================  ==========================================
three-pass, recompute      3      1       4 N b                  max | sum exp(x - max) | exp(x - max) / sum
three-pass, reload         3      2       5 N b                  max | y = exp(x - max), sum | y *= 1 / sum
two-pass (Dukhan 2020)     2      1       3 N b                  sum as (mantissa, exponent) | output
online (Milakov 2018)      2      1       3 N b                  running max, rescaled sum | output
fused rows                 1      1       2 N b                  per block of rows: max, sum, output
=========================  =====  ======  =====================  ==========================================

References: M. Dukhan and A. Ablavatski, "Two-Pass Softmax Algorithm", 2020 (arXiv:2001.04438; XNNPACK's
``bench/f32-softmax.cc``); M. Milakov and N. Gimelshein, "Online normalizer calculation for softmax", 2018
(arXiv:1805.02867).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

# Cody and Waite's range reduction x = n ln2 + r, |r| <= ln2 / 2, as in XNNPACK, with ln 2 split in a high
# part of 12 significant bits and the rest. Without a max subtraction |n| reaches 1443 for |x| <= 1000, and
# n * LN2_HI must be exact (11 + 12 bits fit float32's 24); XNNPACK's 17-bit high part, written for the
# |n| < 2^8 of an exp after max subtraction, costs 3e-5 relative error here.
LOG2E = 1.4426950408889634
LN2_HI = 0.693115234375  # 2839 / 4096
LN2_LO = 3.194618494528623e-05  # ln 2 - LN2_HI

DEFAULT_BLOCK_ELEMENTS = 1 << 16  # 256 KiB of float32: a block and its temporaries fit a 1 MiB L2

Kernel = Callable[[Any, Any, int], None]


def row_blocks(rows: int, cols: int, block_elements: int) -> Iterator[tuple[slice, slice]]:
    """(row slice, column slice) blocks of about ``block_elements``, in row-major order.

    Short rows are grouped (several whole rows per block); long rows are cut into column slices.
    """
    if cols >= block_elements:
        for row in range(rows):
            for start in range(0, cols, block_elements):
                yield slice(row, row + 1), slice(start, min(cols, start + block_elements))
    else:
        group = max(1, block_elements // cols)
        for start in range(0, rows, group):
            yield slice(start, min(rows, start + group)), slice(0, cols)


def _row_max(x: Any, block_elements: int) -> Any:
    """Pass: the float32 max of each row, shape (rows, 1)."""
    import torch

    row_max = torch.full((x.shape[0], 1), -math.inf, dtype=torch.float32)
    for rs, cs in row_blocks(*x.shape, block_elements):
        block_max = x[rs, cs].amax(dim=-1, keepdim=True).float()
        row_max[rs] = torch.maximum(row_max[rs], block_max)
    return row_max


def three_pass_recompute(x: Any, out: Any, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> None:
    """Safe softmax, 3 reads + 1 write: max, then sum of exp(x - max), then exp recomputed for the output."""
    import torch

    row_max = _row_max(x, block_elements)
    row_sum = torch.zeros_like(row_max)
    for rs, cs in row_blocks(*x.shape, block_elements):
        row_sum[rs] += _exp(x[rs, cs].float() - row_max[rs]).sum(dim=-1, keepdim=True)
    inverse = row_sum.reciprocal_()
    for rs, cs in row_blocks(*x.shape, block_elements):
        out[rs, cs] = _exp(x[rs, cs].float() - row_max[rs]).mul_(inverse[rs])


def three_pass_reload(x: Any, out: Any, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> None:
    """Safe softmax, 3 reads + 2 writes: max, then y = exp(x - max) stored and summed, then y rescaled."""
    import torch

    row_max = _row_max(x, block_elements)
    row_sum = torch.zeros_like(row_max)
    for rs, cs in row_blocks(*x.shape, block_elements):
        exponentials = _exp(x[rs, cs].float() - row_max[rs])
        out[rs, cs] = exponentials
        row_sum[rs] += exponentials.sum(dim=-1, keepdim=True)
    inverse = row_sum.reciprocal_()
    for rs, cs in row_blocks(*x.shape, block_elements):
        out[rs, cs] = out[rs, cs].float().mul_(inverse[rs])


def _mantissa_exponent(block: Any) -> tuple[Any, Any]:
    """exp(x) as m * 2^n with n = round(x log2 e) and m = exp(x - n ln 2) in [0.70, 1.42] (float32).

    Neither part overflows or underflows for any float32 x, which is why the two-pass algorithm needs no max.
    """
    import torch

    n = torch.mul(block, LOG2E).round_()
    reduced = torch.add(block, n, alpha=-LN2_HI).add_(n, alpha=-LN2_LO)  # n * LN2_HI is exact, the sum too
    return reduced.exp_(), n


def _scale_by_power_of_two(mantissa: Any, exponent: Any) -> Any:
    """mantissa * 2^exponent for integer-valued float exponents, in place.

    torch.ldexp computes pow(2, exponent), which falls off its vectorised path for large negative exponents
    (about 40x slower); exp2 is exact on integers and stays fast, so use it per element.
    """
    import torch

    return mantissa.mul_(torch.exp2(exponent))


def _exp(block: Any) -> Any:
    """exp(block) in float32, computed as m * 2^n.

    Why not torch.exp: softmax of wide-range inputs sends most arguments below -87, where torch.exp's result
    is subnormal or zero and it leaves its vectorised path (measured 40-60x slower on this project's AVX2
    CPU). The reduced argument stays in [-0.35, 0.35], where torch.exp is fast and accurate.
    """
    mantissa, exponent = _mantissa_exponent(block)
    return mantissa.mul_(exponent.exp2_())


def two_pass(x: Any, out: Any, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> None:
    """Dukhan and Ablavatski's two-pass softmax, 2 reads + 1 write.

    Pass 1 accumulates sum(exp(x)) as a (mantissa, exponent) pair: each block's terms are scaled to the
    block's largest exponent and summed, and the block sum is added to the running pair after aligning the
    exponents; frexp renormalises the running mantissa to [0.5, 1) so it never overflows however long the
    row. Pass 2 writes exp(x) / sum = (m / M) * 2^(n - E), scaling by an exact power of two. No max pass
    is needed.
    """
    import torch

    rows = x.shape[0]
    sum_mantissa = torch.zeros((rows, 1), dtype=torch.float32)
    sum_exponent = torch.full((rows, 1), -math.inf, dtype=torch.float32)
    for rs, cs in row_blocks(*x.shape, block_elements):
        mantissa, exponent = _mantissa_exponent(x[rs, cs].float())
        block_exponent = exponent.amax(dim=-1, keepdim=True)
        block_mantissa = _scale_by_power_of_two(mantissa, exponent - block_exponent).sum(dim=-1, keepdim=True)
        new_exponent = torch.maximum(sum_exponent[rs], block_exponent)
        aligned = torch.ldexp(sum_mantissa[rs], sum_exponent[rs] - new_exponent)
        aligned += torch.ldexp(block_mantissa, block_exponent - new_exponent)
        normalised, shift = torch.frexp(aligned)
        sum_mantissa[rs] = normalised
        sum_exponent[rs] = new_exponent + shift
    inverse_mantissa = sum_mantissa.reciprocal_()
    for rs, cs in row_blocks(*x.shape, block_elements):
        mantissa, exponent = _mantissa_exponent(x[rs, cs].float())
        out[rs, cs] = _scale_by_power_of_two(mantissa.mul_(inverse_mantissa[rs]), exponent - sum_exponent[rs])


def online(x: Any, out: Any, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> None:
    """Milakov and Gimelshein's online softmax, 2 reads + 1 write.

    Pass 1 keeps a running max m and a sum d of exp(x - m); when a block raises the max, d is rescaled by
    exp(m_old - m_new) (the paper's per-element update, applied per block so torch can vectorise it). Pass 2
    writes exp(x - m) / d.
    """
    import torch

    rows = x.shape[0]
    running_max = torch.full((rows, 1), -math.inf, dtype=torch.float32)
    running_sum = torch.zeros((rows, 1), dtype=torch.float32)
    for rs, cs in row_blocks(*x.shape, block_elements):
        block = x[rs, cs].float()
        block_max = block.amax(dim=-1, keepdim=True)
        block_sum = _exp(block - block_max).sum(dim=-1, keepdim=True)
        new_max = torch.maximum(running_max[rs], block_max)
        running_sum[rs] = running_sum[rs] * torch.exp(running_max[rs] - new_max) + block_sum * torch.exp(
            block_max - new_max
        )
        running_max[rs] = new_max
    inverse = running_sum.reciprocal_()
    for rs, cs in row_blocks(*x.shape, block_elements):
        out[rs, cs] = _exp(x[rs, cs].float() - running_max[rs]).mul_(inverse[rs])


def fused_rows(x: Any, out: Any, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> None:
    """One read + one write: each block of whole rows is loaded once and max, sum and output are computed
    while it sits in cache. Only for rows that fit a block (the CPU analogue of the GPU's fused row kernel).
    """

    rows, cols = x.shape
    if cols > block_elements:
        raise ValueError(
            f"softmax-fused-cpu keeps whole rows in cache: rows of {cols} elements exceed block_elements="
            f"{block_elements}; raise the algorithm's block_elements or use softmax-online-cpu for long rows"
        )
    for rs, cs in row_blocks(rows, cols, block_elements):
        block = x[rs, cs].float()
        exponentials = _exp(block - block.amax(dim=-1, keepdim=True))
        out[rs, cs] = exponentials.div_(exponentials.sum(dim=-1, keepdim=True))


def torch_softmax(x: Any, out: Any, block_elements: int = 0) -> None:
    """The baseline: the library's ``torch.softmax`` writing into ``out``."""
    import torch

    torch.softmax(x, dim=-1, out=out)


def scipy_softmax(x: Any, out: Any, block_elements: int = 0) -> None:
    """The baseline ``scipy.special.softmax`` (numpy; it allocates its result, which is copied into ``out``)."""
    import torch
    from scipy.special import softmax

    if x.dtype == torch.bfloat16:
        raise TypeError("scipy.special.softmax works on numpy arrays and numpy has no bfloat16")
    out.copy_(torch.from_numpy(softmax(x.numpy(), axis=-1)))


KERNELS: dict[str, tuple[Kernel, tuple[int, int] | None]] = {
    "three-pass-recompute": (three_pass_recompute, (3, 1)),
    "three-pass-reload": (three_pass_reload, (3, 2)),
    "two-pass": (two_pass, (2, 1)),
    "online": (online, (2, 1)),
    "fused": (fused_rows, (1, 1)),
    # Baselines: the library's own pass structure is not ours to count.
    "torch": (torch_softmax, None),
    "scipy": (scipy_softmax, None),
}
