"""Uniform integer grids shared by the RTN-family quantizers (RTN, STE, GPTQ): scales, rounding, bit accounting.

Every function works on a 2-D tensor ``(rows, cols)``: for a weight, rows are output channels and cols the
input features; for activations, rows are tokens (or image patches) and cols the features. The unit that shares
one scale is the whole tensor (``"tensor"``), one row (``"channel"``, per output channel or per token) or
``group_size`` consecutive columns of one row (``"group"``).

Grids (``b`` bits, scale ``s``, zero point ``z``):

* symmetric, b >= 2: integers ``-2^(b-1) .. 2^(b-1)-1`` times ``s = absmax / (2^(b-1)-1)``;
* symmetric, b == 1: ``sign(x) * mean|x|`` (BinaryConnect/XNOR-Net binarisation; the integer grid above would
  have no positive level);
* asymmetric: ``(q - z) * s`` with ``q`` in ``0 .. 2^b-1``, ``s = (max - min) / (2^b-1)`` and the range
  widened to include 0 so that zero is exactly representable (padding, ReLU outputs).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

Granularity = Literal["tensor", "channel", "group"]
GRANULARITIES: tuple[str, ...] = ("tensor", "channel", "group")

#: ``bits`` value meaning "leave in float32" (for activations, or weights in an activation-only run).
FULL_PRECISION_BITS = 32


def check_bits(name: str, bits: int) -> None:
    """Refuse a bit width outside 1..8 (or 32, meaning not quantized) with a message that says what is allowed."""
    if not (1 <= bits <= 8 or bits == FULL_PRECISION_BITS):
        raise ValueError(f"{name}={bits}: use 1..8 bits, or {FULL_PRECISION_BITS} to leave it in float32")


def _grouped(x: torch.Tensor, granularity: str, group_size: int) -> tuple[torch.Tensor, int]:
    """View ``x`` as ``(units, elements)``: one row per scaling unit; returns it and the padded column count.

    A ragged last group is padded by repeating the row's last value, which changes neither its min, max nor
    absmax, so the padding never widens a grid.
    """
    rows, cols = x.shape
    if granularity == "tensor":
        return x.reshape(1, -1), cols
    if granularity == "channel":
        return x, cols
    if granularity != "group":
        raise ValueError(f"granularity {granularity!r} is not one of {list(GRANULARITIES)}")
    group = min(group_size, cols)
    padded = math.ceil(cols / group) * group
    if padded != cols:
        x = torch.cat([x, x[:, -1:].expand(rows, padded - cols)], dim=1)
    return x.reshape(rows * (padded // group), group), padded


def quantize_dequantize(
    x: torch.Tensor,
    bits: int,
    symmetric: bool = True,
    granularity: str = "channel",
    group_size: int = 128,
) -> torch.Tensor:
    """Round ``x`` (2-D) to its ``bits``-bit grid and map back to floats (fake quantization, no gradient rule).

    Values already on the grid come back unchanged (up to float rounding of the scale), which the tests check.
    """
    if bits == FULL_PRECISION_BITS:
        return x
    rows, cols = x.shape
    units, padded = _grouped(x, granularity, group_size)
    scale, zero = grid_parameters(units, bits, symmetric)
    deq = apply_grid(units, scale, zero, bits, symmetric)
    if granularity == "tensor":
        return deq.reshape(rows, cols)
    return deq.reshape(rows, padded)[:, :cols]


def grid_parameters(units: torch.Tensor, bits: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point of each row of ``units`` (zero is 0 for symmetric grids), shapes ``(rows, 1)``."""
    if symmetric and bits == 1:
        return units.abs().mean(dim=1, keepdim=True), torch.zeros(
            units.shape[0], 1, dtype=units.dtype, device=units.device
        )
    if symmetric:
        scale = units.abs().amax(dim=1, keepdim=True) / (2 ** (bits - 1) - 1)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return scale, torch.zeros_like(scale)
    low = torch.clamp(units.amin(dim=1, keepdim=True), max=0.0)
    high = torch.clamp(units.amax(dim=1, keepdim=True), min=0.0)
    scale = (high - low) / (2**bits - 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return scale, torch.round(-low / scale)


def apply_grid(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    """Round ``x`` to the grid given by ``scale`` and ``zero`` (broadcast against ``x``) and dequantize."""
    if symmetric and bits == 1:
        return torch.where(x >= 0, scale, -scale)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        return torch.clamp(torch.round(x / scale), -qmax - 1, qmax) * scale
    qmax = 2**bits - 1
    return (torch.clamp(torch.round(x / scale) + zero, 0, qmax) - zero) * scale


def fake_quantize_ste(x: torch.Tensor, bits: int, **grid: object) -> torch.Tensor:
    """Quantize-dequantize in the forward pass, identity in the backward pass (straight-through estimator)."""
    if bits == FULL_PRECISION_BITS:
        return x
    return x + (quantize_dequantize(x.detach(), bits, **grid) - x).detach()  # type: ignore[arg-type]


def scales_per_row(cols: int, granularity: str, group_size: int) -> float:
    """How many scales one row of ``cols`` columns stores (per-tensor: a share of one)."""
    if granularity == "group":
        return math.ceil(cols / min(group_size, cols))
    return 1.0


def effective_bits(
    bits: int,
    rows: int,
    cols: int,
    symmetric: bool,
    granularity: str,
    group_size: int = 128,
    scale_bits: int = 16,
    zero_point_bits: int = 16,
) -> float:
    """Bits stored per weight, counting scales and zero points.

    4-bit asymmetric groups of 128 with a 16-bit scale and a 16-bit zero point: ``4 + 32/128 = 4.25``.
    """
    if bits == FULL_PRECISION_BITS:
        return float(FULL_PRECISION_BITS)
    if granularity == "tensor":
        units = 1.0
    else:
        units = rows * scales_per_row(cols, granularity, group_size)
    per_unit = scale_bits + (0 if symmetric else zero_point_bits)
    return bits + units * per_unit / (rows * cols)
