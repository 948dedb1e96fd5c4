"""QuEST: quantization-aware training with Hadamard-rotated, Gaussian-fitted grids and a trust gradient mask.

Panferov, Chen, Ashkboos, Alistarh et al. 2025, "QuEST: Stable Training of LLMs with 1-Bit Weights and
Activations" (arXiv:2502.05003). The official code needs a GPU to import, so this is the project's own
implementation of the paper's equations:

1. Rotate: weights and inputs of every quantized layer are multiplied by the same block Hadamard matrix
   (128 x 128 blocks, :mod:`harness_quant.hadamard`), which leaves ``x @ W.T`` unchanged and makes the
   rotated values close to Gaussian.
2. Fit: each row (an output channel of W, a token of x) is clipped at ``alpha_b * RMS(row)``, where
   ``alpha_b`` minimises the mean squared error of a ``b``-bit uniform quantizer for a standard Gaussian
   (:func:`gaussian_mse_clip_scale`; 1: 0.798, 2: 1.494, 3: 2.051, 4: 2.514, 8: 3.885).
3. Round to the centred grid ``{-alpha, -alpha + step, ..., alpha}``, ``step = 2 alpha / (2^b - 1)``
   (no level at zero; for 1 bit this is ``sign(x) * alpha``).
4. Trust the gradient only where the rounding error is at most half a step (``|q(x) - x| <= step / 2``,
   i.e. the value was not clipped): there the backward pass is the identity, elsewhere zero. Outliers,
   whose gradients STE passes unchecked, stop pulling the weights around, which is what keeps 1-bit
   training stable (paper, Section 3).

Starting from the full-precision model, it fine-tunes for ``budget["gradient_steps"]`` steps with the same
loop as STE and LSQ (:mod:`harness_quant.qat`); the paper trains from scratch.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness import CellContext
from harness_quant import dispatch
from harness_quant.grids import FULL_PRECISION_BITS, check_bits
from harness_quant.hadamard import block_size_for
from harness_quant.layers import QuantizedLayer, replace_layers
from harness_quant.qat import finetune
from harness_quant.workload import QuantWorkload, quantization_outcome

#: Clip scales for a standard Gaussian as published with QuEST. The exact optimisation below reproduces 1-4
#: bits to three decimals; for 8 bits it finds 3.922 (MSE 0.15 % lower than at 3.885: the curve is flat there
#: and the published figure is a slightly inaccurate numerical optimum). The published values are used where
#: they exist, the computed ones elsewhere (5, 6, 7 bits); the tests pin both facts.
PUBLISHED_CLIP_SCALES = {1: 0.798, 2: 1.494, 3: 2.051, 4: 2.514, 8: 3.885}


def clip_scale(bits: int) -> float:
    """``alpha_b`` used by the quantizer: the published value, else the computed MSE optimum."""
    return PUBLISHED_CLIP_SCALES.get(bits) or gaussian_mse_clip_scale(bits)


@dataclass
class QuESTConfig:
    weight_bits: int = 4  # 1..8, or 32 for float32 weights
    act_bits: int = 4  # 1..8, or 32 for float32 activations (inputs are still rotated)
    hadamard_block: int = 128  # Hadamard block size (paper: 128); smaller layers use the next power of two
    trust_factor: float = 1.0  # gradient kept where |q(x) - x| <= trust_factor * step / 2 (paper: 1)
    lr: float = 5e-4  # AdamW learning rate of the fine-tuning (constant)
    steps: int = 200  # fine-tuning steps when the profile's budget sets no "gradient_steps"
    scale_bits: int = 16  # bits to store one per-row weight scale (for effective bits)


def centred_levels(bits: int, alpha: float = 1.0) -> list[float]:
    """The ``2^b`` levels of the centred uniform grid with outermost levels ``-alpha`` and ``+alpha``."""
    count = 2**bits
    return [alpha * (2 * k + 1 - count) / (count - 1) for k in range(count)]


def gaussian_quantization_mse(alpha: float, bits: int) -> float:
    """E[(X - q(X))^2] for X ~ N(0, 1) and the centred ``bits``-bit grid clipped at ``alpha`` (exact).

    Each level ``l`` owns the interval between the midpoints to its neighbours; over ``[a, b]``,
    ``integral (x - l)^2 phi(x) dx = [(1 + l^2) Phi(x) + (2 l - x) phi(x)]_a^b``.
    """
    import numpy as np
    from scipy.stats import norm

    levels = np.array(centred_levels(bits, alpha))
    midpoints = (levels[1:] + levels[:-1]) / 2
    lower = np.concatenate([[-np.inf], midpoints])
    upper = np.concatenate([midpoints, [np.inf]])

    def primitive(x: np.ndarray) -> np.ndarray:
        density = np.where(np.isinf(x), 0.0, norm.pdf(x) * (2 * levels - np.where(np.isinf(x), 0.0, x)))
        return (1 + levels**2) * norm.cdf(x) + density

    return float(np.sum(primitive(upper) - primitive(lower)))


@functools.cache
def gaussian_mse_clip_scale(bits: int) -> float:
    """``alpha_b``: the clip scale (in units of the RMS) minimising the Gaussian quantization MSE."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(
        gaussian_quantization_mse, bounds=(1e-3, 8.0), args=(bits,), method="bounded", options={"xatol": 1e-7}
    )
    return float(result.x)


class QuESTQuantizer(nn.Module):
    """Per-row Gaussian-fitted quantization of an already rotated ``(rows, features)`` tensor, trust-masked."""

    def __init__(self, bits: int, trust_factor: float = 1.0) -> None:
        super().__init__()
        self.bits = bits
        self.alpha_scale = clip_scale(bits)
        self.trust_factor = trust_factor
        self._trusted_mean: torch.Tensor | float = 1.0

    @property
    def last_trusted_fraction(self) -> float:
        """Share of the last forward's values whose gradient was kept (a GPU sync only when read)."""
        return float(self._trusted_mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = dispatch.quest_rows(x.detach(), self.bits, self.alpha_scale, self.trust_factor)
        if kernel is not None:  # CUDA tensor: the CuPy kernel (dispatch.py); the torch code below is its reference
            quantized, trusted = kernel
            self._trusted_mean = trusted.float().mean()
            return quantized + (x - x.detach()) * trusted
        levels = 2**self.bits
        with torch.no_grad():
            rms = x.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-8)
            alpha = self.alpha_scale * rms
            step = 2 * alpha / (levels - 1)
            index = torch.clamp(torch.round((x + alpha) / step), 0, levels - 1)
            quantized = index * step - alpha
            trusted = (quantized - x).abs() <= self.trust_factor * step / 2 * (1 + 1e-6)
            self._trusted_mean = trusted.float().mean()
        # Forward: the quantized value; backward: identity where trusted, zero where the value was clipped.
        return quantized + (x - x.detach()) * trusted

    def extra_repr(self) -> str:
        return f"bits={self.bits}, alpha={self.alpha_scale:.3f}*RMS, trust={self.trust_factor}"


def quantize_model(model: nn.Module, names: list[str], config: QuESTConfig) -> nn.Module:
    def build(name: str, layer: nn.Module) -> QuantizedLayer:
        cols = layer.weight[0].numel()
        block = block_size_for(cols, config.hadamard_block)
        padded = math.ceil(cols / block) * block
        if config.weight_bits == FULL_PRECISION_BITS:
            weight_quantizer, bits = None, float(FULL_PRECISION_BITS)
        else:
            weight_quantizer = QuESTQuantizer(config.weight_bits, config.trust_factor)
            # Stored rotated: padded columns at weight_bits each plus one RMS scale per row.
            bits = (config.weight_bits * padded + config.scale_bits) / cols
        act = None if config.act_bits == FULL_PRECISION_BITS else QuESTQuantizer(config.act_bits, config.trust_factor)
        return QuantizedLayer(layer, weight_quantizer, act, bits_per_weight=bits, hadamard_block=block)

    return replace_layers(model, names, build)


def run(environment: QuantWorkload, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    config = QuESTConfig(**params)
    check_bits("weight_bits", config.weight_bits)
    check_bits("act_bits", config.act_bits)
    steps = int(context.budget_value("gradient_steps", config.steps))
    model = copy.deepcopy(environment.model)
    start = time.perf_counter()
    quantize_model(model, environment.quantizable, config)
    training = finetune(model, environment, steps, config.lr, context)
    trusted = [m.last_trusted_fraction for m in model.modules() if isinstance(m, QuESTQuantizer)]
    return quantization_outcome(
        environment,
        model,
        quantize_time_s=time.perf_counter() - start,
        quest_trusted_fraction=sum(trusted) / len(trusted) if trusted else 1.0,
        **training,
    )
