"""Quantization-aware training with the straight-through estimator (STE).

Bengio, Léonard & Courville 2013, "Estimating or propagating gradients through stochastic neurons"
(arXiv:1308.3432); used for QAT by Jacob et al. 2018 (arXiv:1712.05877). The forward pass rounds weights
(per output channel, absmax scale) and activations (per token, absmax scale) onto their grids; the backward
pass treats rounding as the identity. Starting from the full-precision model, it fine-tunes for
``budget["gradient_steps"]`` steps with the loop in :mod:`harness_quant.qat`, the same loop QuEST and LSQ use.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch

from harness import CellContext
from harness_quant.grids import check_bits, effective_bits
from harness_quant.layers import GridQuantizer, QuantizedLayer, input_quantizer_for, replace_layers
from harness_quant.qat import finetune
from harness_quant.workload import QuantWorkload, quantization_outcome


@dataclass
class STEConfig:
    weight_bits: int = 4  # 1..8, or 32 for float32 weights
    act_bits: int = 4  # 1..8, or 32 for float32 activations
    symmetric: bool = True  # weight grid: symmetric (absmax) or asymmetric (min/max)
    granularity: str = "channel"  # weight scales: "tensor", "channel" or "group"
    group_size: int = 128  # input features per weight scale when granularity == "group"
    lr: float = 5e-4  # AdamW learning rate of the fine-tuning (constant)
    steps: int = 200  # fine-tuning steps when the profile's budget sets no "gradient_steps"


def quantize_model(model: torch.nn.Module, names: list[str], config: STEConfig) -> torch.nn.Module:
    def build(name: str, layer: torch.nn.Module) -> QuantizedLayer:
        rows, cols = layer.weight.shape[0], layer.weight[0].numel()
        grid = {"symmetric": config.symmetric, "granularity": config.granularity, "group_size": config.group_size}
        weight_quantizer = (
            GridQuantizer(config.weight_bits, straight_through=True, **grid)  # type: ignore[arg-type]
            if config.weight_bits != 32
            else None
        )
        act = input_quantizer_for(config.act_bits, symmetric=True, straight_through=True)
        bits = effective_bits(config.weight_bits, rows, cols, **grid)  # type: ignore[arg-type]
        return QuantizedLayer(layer, weight_quantizer, act, bits_per_weight=bits)

    return replace_layers(model, names, build)


def run(environment: QuantWorkload, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    config = STEConfig(**params)
    check_bits("weight_bits", config.weight_bits)
    check_bits("act_bits", config.act_bits)
    steps = int(context.budget_value("gradient_steps", config.steps))
    model = copy.deepcopy(environment.model)
    start = time.perf_counter()
    quantize_model(model, environment.quantizable, config)
    training = finetune(model, environment, steps, config.lr, context)
    return quantization_outcome(environment, model, quantize_time_s=time.perf_counter() - start, **training)
