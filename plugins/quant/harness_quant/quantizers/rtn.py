"""Round-to-nearest (RTN) post-training quantization: the baseline every other quantizer is measured against.

Weights are rounded once onto a uniform grid, symmetric or asymmetric, with one scale per tensor, per output
channel or per group of ``group_size`` input features (see :mod:`harness_quant.grids`). Activations, if
``act_bits`` < 32, are quantized dynamically per token (per row) at every forward. Nothing is learned or
calibrated, which is why RTN is cheap and why it collapses at 2-3 bits on most models (GPTQ, Frantar et al.
2022, Table 3).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch

from harness import CellContext
from harness_quant.grids import check_bits, effective_bits, quantize_dequantize
from harness_quant.layers import QuantizedLayer, input_quantizer_for, replace_layers
from harness_quant.workload import QuantWorkload, quantization_outcome


@dataclass
class RTNConfig:
    weight_bits: int = 4  # 1..8, or 32 to leave weights in float32 (activation-only quantization)
    act_bits: int = 32  # 1..8, or 32 (default) to leave activations in float32 (weight-only, as in GPTQ)
    symmetric: bool = True  # symmetric grid (scale only) or asymmetric (scale and zero point)
    granularity: str = "channel"  # "tensor", "channel" (per output channel) or "group"
    group_size: int = 128  # input features per scale when granularity == "group"
    act_symmetric: bool = True  # grid of the per-token activation quantizer


def quantize_model(model: torch.nn.Module, names: list[str], config: RTNConfig) -> torch.nn.Module:
    """Round each named layer's weight to its grid (in place) and attach the activation quantizer."""

    def build(name: str, layer: torch.nn.Module) -> QuantizedLayer:
        matrix = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        grid = {"symmetric": config.symmetric, "granularity": config.granularity, "group_size": config.group_size}
        with torch.no_grad():
            layer.weight.copy_(quantize_dequantize(matrix, config.weight_bits, **grid).reshape(layer.weight.shape))
        bits = effective_bits(config.weight_bits, *matrix.shape, **grid)
        act = input_quantizer_for(config.act_bits, config.act_symmetric, straight_through=False)
        return QuantizedLayer(layer, weight_quantizer=None, input_quantizer=act, bits_per_weight=bits)

    return replace_layers(model, names, build)


def run(environment: QuantWorkload, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    config = RTNConfig(**params)
    check_bits("weight_bits", config.weight_bits)
    check_bits("act_bits", config.act_bits)
    model = copy.deepcopy(environment.model)
    start = time.perf_counter()
    quantize_model(model, environment.quantizable, config)
    return quantization_outcome(environment, model, quantize_time_s=time.perf_counter() - start)
