"""Learned Step Size Quantization (LSQ).

Esser et al. 2020, "Learned Step Size Quantization", ICLR (arXiv:1902.08153). Each quantizer has a step size
``s`` trained with the network: ``x_hat = round(clip(x / s, -Qn, Qp)) * s`` with a straight-through rounding.
The step's gradient is scaled by ``g = 1 / sqrt(N * Qp)`` (N: number of values sharing the step) so that
step sizes and weights update at comparable relative rates (paper, Section 2.2). Steps start at
``2 * mean(|x|) / sqrt(Qp)`` (paper, Section 2.1).

Weights use signed grids (``Qn = 2^(b-1)``, ``Qp = 2^(b-1) - 1``) with one step per output channel by default;
activations use one step per layer and an unsigned grid (``0 .. 2^b - 1``) when the first batch that reaches
them is non-negative (after a ReLU), else a signed one. 1-bit signed grids are the binary ``{-s, +s}``
(the paper starts at 2 bits; a signed 1-bit integer grid would have no positive level).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness import CellContext
from harness_quant.grids import FULL_PRECISION_BITS, check_bits
from harness_quant.layers import QuantizedLayer, replace_layers
from harness_quant.qat import finetune
from harness_quant.workload import QuantWorkload, quantization_outcome


@dataclass
class LSQConfig:
    weight_bits: int = 4  # 1..8, or 32 for float32 weights
    act_bits: int = 4  # 1..8, or 32 for float32 activations
    per_channel: bool = True  # one weight step per output channel (True) or per layer (the paper's choice)
    lr: float = 5e-4  # AdamW learning rate for weights and steps (constant)
    steps: int = 200  # fine-tuning steps when the profile's budget sets no "gradient_steps"
    scale_bits: int = 16  # bits to store one step size (for effective bits)


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Forward: ``x``; backward: gradient times ``scale`` (the LSQ step-size gradient scaling)."""
    return (x - x * scale).detach() + x * scale


def round_pass(x: torch.Tensor) -> torch.Tensor:
    """Forward: round; backward: identity."""
    return (x.round() - x).detach() + x


def sign_pass(x: torch.Tensor) -> torch.Tensor:
    """Forward: sign with sign(0) = +1; backward: identity."""
    return (torch.where(x >= 0, 1.0, -1.0) - x).detach() + x


class LSQQuantizer(nn.Module):
    """A fake quantizer with learned step(s); initialised from the first tensor it sees."""

    def __init__(self, bits: int, rows: int | None = None, signed: bool | None = None) -> None:
        super().__init__()
        self.bits = bits
        self.signed = signed  # None: decided from the first batch (activations)
        self.step = nn.Parameter(torch.ones(rows if rows is not None else 1, 1))
        self.initialised = False

    def levels(self) -> tuple[int, int]:
        """(Qn, Qp): the grid is the integers ``-Qn .. Qp``."""
        if self.signed:
            return (1, 1) if self.bits == 1 else (2 ** (self.bits - 1), 2 ** (self.bits - 1) - 1)
        return 0, 2**self.bits - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.initialised:
            with torch.no_grad():
                if self.signed is None:
                    self.signed = bool(x.min() < 0)
                _, qp = self.levels()
                mean_abs = x.abs().mean(dim=1, keepdim=True) if self.step.shape[0] > 1 else x.abs().mean()
                self.step.copy_((2 * mean_abs / math.sqrt(qp)).clamp_min(1e-8).expand_as(self.step))
            self.initialised = True
        qn, qp = self.levels()
        values_per_step = x.numel() / self.step.shape[0]
        step = scale_gradient(self.step, 1.0 / math.sqrt(values_per_step * qp))
        if self.signed and self.bits == 1:
            return sign_pass(torch.clamp(x / step, -1, 1)) * step
        return round_pass(torch.clamp(x / step, -qn, qp)) * step


def quantize_model(model: nn.Module, names: list[str], config: LSQConfig) -> nn.Module:
    def build(name: str, layer: nn.Module) -> QuantizedLayer:
        rows, cols = layer.weight.shape[0], layer.weight[0].numel()
        if config.weight_bits == FULL_PRECISION_BITS:
            weight_quantizer, bits = None, float(FULL_PRECISION_BITS)
        else:
            step_rows = rows if config.per_channel else 1
            weight_quantizer = LSQQuantizer(config.weight_bits, rows=step_rows, signed=True)
            bits = config.weight_bits + step_rows * config.scale_bits / (rows * cols)
        act = None if config.act_bits == FULL_PRECISION_BITS else LSQQuantizer(config.act_bits)
        return QuantizedLayer(layer, weight_quantizer, act, bits_per_weight=bits)

    return replace_layers(model, names, build)


def initialise_steps(model: nn.Module, workload: QuantWorkload) -> None:
    """One calibration forward so that every activation step starts from real data (paper, Section 2.1)."""
    with torch.no_grad():
        workload.forward(model, workload.calibration_batches[0])


def run(environment: QuantWorkload, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    config = LSQConfig(**params)
    check_bits("weight_bits", config.weight_bits)
    check_bits("act_bits", config.act_bits)
    steps = int(context.budget_value("gradient_steps", config.steps))
    model = copy.deepcopy(environment.model)
    start = time.perf_counter()
    quantize_model(model, environment.quantizable, config)
    model.to(environment.device)  # the new step sizes are created on the CPU
    initialise_steps(model, environment)
    training = finetune(model, environment, steps, config.lr, context)
    return quantization_outcome(environment, model, quantize_time_s=time.perf_counter() - start, **training)
