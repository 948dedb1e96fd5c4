"""Swapping a model's Linear and Conv2d layers for fake-quantized ones, and counting the bits they store.

Every quantizer in this package sees plain 2-D matrices: a layer's weight as ``(out_features, in_features)``
(a convolution's kernel flattened to ``(out_channels, in_channels * kh * kw)``) and its input as
``(rows, in_features)`` (tokens, or a convolution's image patches via ``unfold``). :class:`QuantizedLayer`
does that reshaping, optionally rotates both operands with the same block Hadamard transform (QuEST), applies
the weight and input quantizers and multiplies. Per-row grids and the rotation run on the CuPy kernels for CUDA
tensors and on torch elsewhere (:mod:`harness_quant.dispatch`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from harness_quant import dispatch
from harness_quant.grids import FULL_PRECISION_BITS, fake_quantize_ste, quantize_dequantize

QUANTIZABLE_TYPES = (nn.Linear, nn.Conv2d)


class GridQuantizer(nn.Module):
    """Round-to-nearest onto an integer grid (see :mod:`harness_quant.grids`); optionally straight-through."""

    def __init__(
        self,
        bits: int,
        symmetric: bool = True,
        granularity: str = "channel",
        group_size: int = 128,
        straight_through: bool = False,
    ) -> None:
        super().__init__()
        self.bits, self.symmetric, self.granularity = bits, symmetric, granularity
        self.group_size, self.straight_through = group_size, straight_through

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.granularity == "channel" and self.bits != FULL_PRECISION_BITS:
            # Per-row grids: the CuPy kernel for CUDA tensors, the torch reference elsewhere (dispatch.py).
            quantized = dispatch.rtn_rows(x.detach(), self.bits, self.symmetric)
            return x + (quantized - x).detach() if self.straight_through else quantized
        grid = {"symmetric": self.symmetric, "granularity": self.granularity, "group_size": self.group_size}
        if self.straight_through:
            return fake_quantize_ste(x, self.bits, **grid)
        with torch.no_grad():
            return quantize_dequantize(x, self.bits, **grid)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        kind = "sym" if self.symmetric else "asym"
        return f"bits={self.bits}, {kind}, {self.granularity}, group_size={self.group_size}"


class QuantizedLayer(nn.Module):
    """A Linear or Conv2d whose weight and input pass through quantizers before the product.

    ``layer`` keeps the (trainable) full-precision weight and bias; ``bits_per_weight`` is what one stored
    weight costs, scales and zero points included, and feeds :func:`model_size_bits`.
    """

    def __init__(
        self,
        layer: nn.Module,
        weight_quantizer: nn.Module | None,
        input_quantizer: nn.Module | None,
        bits_per_weight: float,
        hadamard_block: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(layer, QUANTIZABLE_TYPES):
            raise TypeError(f"QuantizedLayer wraps nn.Linear or nn.Conv2d, got {type(layer).__name__}")
        if isinstance(layer, nn.Conv2d) and layer.groups != 1:
            raise ValueError("grouped convolutions are not supported by the quantization suite")
        self.layer = layer
        self.weight_quantizer = weight_quantizer
        self.input_quantizer = input_quantizer
        self.bits_per_weight = float(bits_per_weight)
        self.hadamard_block = hadamard_block

    def weight_matrix(self) -> torch.Tensor:
        return self.layer.weight.reshape(self.layer.weight.shape[0], -1)

    def input_rows(self, x: torch.Tensor) -> torch.Tensor:
        return layer_input_rows(self.layer, x)

    def quantized_weight(self) -> torch.Tensor:
        weight = self.weight_matrix()
        if self.hadamard_block:
            weight = dispatch.hadamard(weight, self.hadamard_block)
        return self.weight_quantizer(weight) if self.weight_quantizer is not None else weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        weight = self.quantized_weight()
        if self.input_quantizer is None and not self.hadamard_block:
            # Only the weight changes: use the layer's own (faster) operator.
            if isinstance(layer, nn.Linear):
                return F.linear(x, weight, layer.bias)
            return F.conv2d(
                x, weight.reshape(layer.weight.shape), layer.bias, layer.stride, layer.padding, layer.dilation
            )
        rows = self.input_rows(x)
        if self.hadamard_block:
            rows = dispatch.hadamard(rows, self.hadamard_block)
        if self.input_quantizer is not None:
            rows = self.input_quantizer(rows)
        out = rows @ weight.T
        if layer.bias is not None:
            out = out + layer.bias
        if isinstance(layer, nn.Linear):
            return out.reshape(*x.shape[:-1], out.shape[-1])
        batch, _, height, width = x.shape
        out_h = _conv_out(height, layer, 0)
        out_w = _conv_out(width, layer, 1)
        return out.reshape(batch, out_h * out_w, -1).transpose(1, 2).reshape(batch, -1, out_h, out_w)


def layer_input_rows(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A layer's input as ``(rows, in_features)``: tokens of a Linear, image patches of a Conv2d."""
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    patches = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def _conv_out(size: int, conv: nn.Conv2d, axis: int) -> int:
    pad, dil, k, stride = conv.padding[axis], conv.dilation[axis], conv.kernel_size[axis], conv.stride[axis]
    return math.floor((size + 2 * pad - dil * (k - 1) - 1) / stride) + 1  # type: ignore[operator]


def quantizable_layer_names(model: nn.Module, skip: Iterable[str] = ()) -> list[str]:
    """Names of the model's Linear and Conv2d layers, in forward-definition order, minus ``skip`` prefixes."""
    skipped = tuple(skip)
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, QUANTIZABLE_TYPES) and not (skipped and name.startswith(skipped))
    ]


def replace_layers(model: nn.Module, names: Iterable[str], build: Callable[[str, nn.Module], nn.Module]) -> nn.Module:
    """Replace each named submodule by ``build(name, module)`` in place; return the model."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, build(name, getattr(parent, child)))
    return model


def input_quantizer_for(bits: int, symmetric: bool, straight_through: bool) -> GridQuantizer | None:
    """Dynamic per-token (per-row) input quantizer, or None when activations stay in float32."""
    if bits == FULL_PRECISION_BITS:
        return None
    return GridQuantizer(bits, symmetric=symmetric, granularity="channel", straight_through=straight_through)


def model_size_bits(model: nn.Module) -> tuple[float, float]:
    """(bits stored by the whole model, bits per weight of its quantized layers).

    Weights of :class:`QuantizedLayer` count ``bits_per_weight`` each; every other parameter (biases, norms,
    embeddings, layers left in full precision) counts 32 bits.
    """
    total = 0.0
    quantized_bits = 0.0
    quantized_count = 0
    counted: set[int] = set()
    for module in model.modules():
        if isinstance(module, QuantizedLayer):
            weight = module.layer.weight
            counted.add(id(weight))
            for quantizer in (module.weight_quantizer, module.input_quantizer):
                if quantizer is not None:  # learned step sizes are the scales already in bits_per_weight
                    counted.update(id(p) for p in quantizer.parameters())
            quantized_bits += weight.numel() * module.bits_per_weight
            quantized_count += weight.numel()
    total += quantized_bits
    for parameter in model.parameters():
        if id(parameter) not in counted:
            total += parameter.numel() * 32.0
    per_weight = quantized_bits / quantized_count if quantized_count else float(FULL_PRECISION_BITS)
    return total, per_weight
