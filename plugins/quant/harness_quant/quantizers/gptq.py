"""GPTQ: post-training weight quantization with second-order error compensation.

Frantar, Ashkboos, Hoefler & Alistarh 2023, "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers", ICLR (arXiv:2210.17323), Algorithm 1. For each layer, with ``X`` its calibration
inputs, the Hessian of the layer-wise squared error is ``H = 2 X^T X / n`` (dampened by ``damp`` times its mean
diagonal). Columns are quantized left to right; the error of each column, divided by the diagonal of the
upper Cholesky factor of ``H^-1``, is spread over the columns not yet quantized (the optimal brain surgeon
update), in lazy blocks of ``block_size`` columns. Layers are processed in order, each calibrated on the
outputs of the already quantized layers before it, as in the reference code (``llama.py`` sequential mode).
Grids are those of RTN (:mod:`harness_quant.grids`); with ``granularity = "group"`` a group's scale is set
when the sweep reaches its first column, from the already-updated weights.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness import CellContext
from harness_quant.grids import FULL_PRECISION_BITS, apply_grid, check_bits, effective_bits, grid_parameters
from harness_quant.layers import QuantizedLayer, input_quantizer_for, layer_input_rows
from harness_quant.workload import QuantWorkload, quantization_outcome


@dataclass
class GPTQConfig:
    weight_bits: int = 4  # 1..8
    act_bits: int = 32  # per-token RTN activations at evaluation; 32 leaves them in float32 (as in the paper)
    symmetric: bool = False  # the reference code's default grid is asymmetric (min/max)
    granularity: str = "channel"  # "tensor", "channel" or "group"
    group_size: int = 128  # columns per scale when granularity == "group"
    damp: float = 0.01  # dampening, fraction of the mean Hessian diagonal (paper: 1 %)
    block_size: int = 128  # lazy-batch block of columns (paper: 128)


def gptq_quantize_matrix(weight: torch.Tensor, hessian: torch.Tensor, config: GPTQConfig) -> torch.Tensor:
    """Quantize a ``(rows, cols)`` weight given the ``(cols, cols)`` Hessian of its inputs; returns dequantized."""
    weight = weight.clone().double()
    hessian = hessian.clone().double()
    cols = weight.shape[1]
    dead = torch.diag(hessian) == 0  # inputs that are always zero: their weights do not matter
    hessian[dead, dead] = 1.0
    weight[:, dead] = 0.0
    hessian += (
        config.damp * torch.mean(torch.diag(hessian)) * torch.eye(cols, dtype=hessian.dtype, device=hessian.device)
    )
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(hessian))
    inverse_upper = torch.linalg.cholesky(inverse, upper=True)

    bits, symmetric = config.weight_bits, config.symmetric
    if config.granularity == "tensor":
        scale, zero = grid_parameters(weight.reshape(1, -1), bits, symmetric)
    else:
        scale, zero = grid_parameters(weight, bits, symmetric)
    quantized = torch.zeros_like(weight)
    for block_start in range(0, cols, config.block_size):
        block_end = min(block_start + config.block_size, cols)
        block = weight[:, block_start:block_end].clone()
        errors = torch.zeros_like(block)
        block_inverse = inverse_upper[block_start:block_end, block_start:block_end]
        for i in range(block_end - block_start):
            column = block_start + i
            if config.granularity == "group" and column % config.group_size == 0:
                upcoming = torch.cat([block[:, i:], weight[:, block_end:]], dim=1)[:, : config.group_size]
                scale, zero = grid_parameters(upcoming, bits, symmetric)
            q = apply_grid(block[:, i : i + 1], scale, zero, bits, symmetric)[:, 0]
            quantized[:, column] = q
            error = (block[:, i] - q) / block_inverse[i, i]
            block[:, i:] -= error.unsqueeze(1) @ block_inverse[i, i:].unsqueeze(0)
            errors[:, i] = error
        weight[:, block_end:] -= errors @ inverse_upper[block_start:block_end, block_end:]
    return quantized.to(torch.float32)


def layer_hessian(model: nn.Module, name: str, workload: QuantWorkload) -> torch.Tensor:
    """``2 X^T X / n`` of the named layer's inputs over the calibration batches, through the current model."""
    layer = model.get_submodule(name)
    cols = layer.weight[0].numel()
    hessian = torch.zeros(cols, cols, dtype=torch.float64, device=layer.weight.device)
    count = 0

    def capture(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        nonlocal hessian, count
        rows = layer_input_rows(module, inputs[0].detach()).double()
        hessian = hessian * (count / (count + rows.shape[0])) + 2.0 / (count + rows.shape[0]) * (rows.T @ rows)
        count += rows.shape[0]

    handle = layer.register_forward_pre_hook(capture)
    try:
        with torch.no_grad():
            for batch in workload.calibration_batches:
                workload.forward(model, batch)
    finally:
        handle.remove()
    return hessian


def run(environment: QuantWorkload, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    config = GPTQConfig(**params)
    check_bits("weight_bits", config.weight_bits)
    check_bits("act_bits", config.act_bits)
    if config.weight_bits == FULL_PRECISION_BITS:
        raise ValueError("gptq quantizes weights: weight_bits must be 1..8 (use rtn for activation-only runs)")
    model = copy.deepcopy(environment.model)
    model.eval()
    start = time.perf_counter()
    progress = getattr(context, "progress", None)
    for index, name in enumerate(environment.quantizable):
        if progress is not None:
            progress(index, len(environment.quantizable), f"GPTQ calibration: layer {name}")
        hessian = layer_hessian(model, name, environment)
        layer = model.get_submodule(name)
        matrix = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        with torch.no_grad():
            layer.weight.copy_(gptq_quantize_matrix(matrix, hessian, config).reshape(layer.weight.shape))
        grid = {"symmetric": config.symmetric, "granularity": config.granularity, "group_size": config.group_size}
        wrapped = QuantizedLayer(
            layer,
            weight_quantizer=None,
            input_quantizer=input_quantizer_for(config.act_bits, symmetric=True, straight_through=False),
            bits_per_weight=effective_bits(config.weight_bits, *matrix.shape, **grid),  # type: ignore[arg-type]
        )
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, wrapped)
    return quantization_outcome(environment, model, quantize_time_s=time.perf_counter() - start)
