"""Grids, bit accounting, the Hadamard transform and the quantizers' building blocks, on hand-checkable data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from harness_quant.grids import effective_bits, quantize_dequantize
from harness_quant.hadamard import block_hadamard, fwht, inverse_block_hadamard
from harness_quant.layers import QuantizedLayer, model_size_bits
from harness_quant.quantizers import gptq, lsq, quest, rtn
from torch import nn


def on_grid_values(bits: int, symmetric: bool, rows: int, cols: int, seed: int) -> torch.Tensor:
    """Random values already on each row's grid, each row touching the grid's ends so the scale is exact."""
    rng = np.random.default_rng(seed)
    scales = 2.0 ** rng.integers(-6, 3, size=(rows, 1))  # powers of two: x / s is exact in float32
    if symmetric and bits == 1:
        magnitude = scales
        return torch.tensor(np.where(rng.random((rows, cols)) < 0.5, -magnitude, magnitude), dtype=torch.float32)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        k = rng.integers(-qmax, qmax + 1, size=(rows, cols))
        k[:, 0] = qmax  # the absmax sets the scale
        return torch.tensor(k * scales, dtype=torch.float32)
    qmax = 2**bits - 1
    zero = rng.integers(0, qmax + 1, size=(rows, 1))
    k = rng.integers(0, qmax + 1, size=(rows, cols))
    k[:, 0], k[:, 1] = 0, qmax  # min and max set scale and zero point
    return torch.tensor((k - zero) * scales, dtype=torch.float32)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("bits", range(1, 9))
def test_rtn_quantize_dequantize_is_exact_on_grid_values(bits, symmetric):
    x = on_grid_values(bits, symmetric, rows=5, cols=37, seed=bits)
    assert torch.equal(quantize_dequantize(x, bits, symmetric=symmetric, granularity="channel"), x)
    # Groups: every group of 37 columns is the whole row here, and groups of 16 split it (last one ragged).
    grouped = torch.cat([on_grid_values(bits, symmetric, 5, 16, seed=bits + g) for g in range(3)], dim=1)
    out = quantize_dequantize(grouped[:, :37], bits, symmetric=symmetric, granularity="group", group_size=16)
    assert torch.equal(out, grouped[:, :37])


def test_rtn_moves_off_grid_values_by_at_most_half_a_step():
    x = torch.randn(8, 64)
    out = quantize_dequantize(x, 4, symmetric=True, granularity="channel")
    step = x.abs().amax(dim=1, keepdim=True) / 7
    assert torch.all((out - x).abs() <= step / 2 + 1e-6)
    assert all(len(torch.unique(row)) <= 16 for row in out)


def test_effective_bits_counts_scales_and_zero_points():
    # The example: 4-bit groups of 128 with a 16-bit scale and a 16-bit zero point.
    assert effective_bits(4, 64, 512, symmetric=False, granularity="group", group_size=128) == 4.25
    assert effective_bits(4, 64, 512, symmetric=True, granularity="group", group_size=128) == 4.125
    assert effective_bits(3, 10, 200, symmetric=True, granularity="channel") == 3 + 16 / 200
    assert effective_bits(8, 10, 200, symmetric=False, granularity="tensor") == 8 + 32 / 2000
    # A ragged last group still stores a scale and a zero point: 2 groups for 130 columns.
    assert effective_bits(2, 4, 130, symmetric=False, granularity="group", group_size=128) == 2 + 2 * 32 / 130


def test_model_size_counts_quantized_weights_and_full_precision_rest():
    model = nn.Sequential(nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 10))
    config = rtn.RTNConfig(weight_bits=4, symmetric=False, granularity="group", group_size=128)
    rtn.quantize_model(model, ["0"], config)
    total, per_weight = model_size_bits(model)
    assert per_weight == 4.25
    assert total == 256 * 64 * 4.25 + (64 + 64 * 10 + 10) * 32


def test_fwht_is_the_normalised_sylvester_hadamard_matrix():
    x = torch.randn(3, 64, dtype=torch.float64)
    expected = x @ torch.tensor(scipy.linalg.hadamard(64), dtype=torch.float64) / 8.0
    torch.testing.assert_close(fwht(x), expected)


@pytest.mark.parametrize("shape", [(7, 300), (2, 3, 128), (5, 9), (1, 1000)])
def test_block_hadamard_is_orthogonal_round_trip_and_preserves_products(shape):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    rotated = block_hadamard(x, 128)
    torch.testing.assert_close(inverse_block_hadamard(rotated, shape[-1], 128), x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1), atol=1e-4, rtol=1e-5)
    weight = torch.randn(11, shape[-1])
    torch.testing.assert_close(rotated @ block_hadamard(weight, 128).T, x @ weight.T, atol=1e-3, rtol=1e-4)


def test_quest_clip_scales_reproduce_the_published_ones():
    for bits in (1, 2, 3, 4):
        assert round(quest.gaussian_mse_clip_scale(bits), 3) == quest.PUBLISHED_CLIP_SCALES[bits]
    assert quest.gaussian_mse_clip_scale(1) == pytest.approx(math.sqrt(2 / math.pi), abs=1e-6)  # E|X|
    # 8 bits: the exact optimum is 3.922; the published 3.885 sits on the flat bottom (MSE within 0.2 %).
    optimum = quest.gaussian_mse_clip_scale(8)
    assert optimum == pytest.approx(3.922, abs=2e-3)
    published_mse = quest.gaussian_quantization_mse(quest.PUBLISHED_CLIP_SCALES[8], 8)
    assert published_mse / quest.gaussian_quantization_mse(optimum, 8) < 1.002
    # Monotone in bits, and the quantizer uses the published value where there is one.
    scales = [quest.clip_scale(b) for b in range(1, 9)]
    assert scales == sorted(scales) and quest.clip_scale(8) == 3.885


def test_quest_gaussian_mse_formula_matches_monte_carlo():
    sample = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for bits in (1, 3):
        alpha = quest.gaussian_mse_clip_scale(bits)
        levels = 2**bits
        step = 2 * alpha / (levels - 1)
        q = torch.clamp(torch.round((sample + alpha) / step), 0, levels - 1) * step - alpha
        assert float(((sample - q) ** 2).mean()) == pytest.approx(
            quest.gaussian_quantization_mse(alpha, bits), rel=1e-2
        )


def test_quest_quantizer_grid_and_trust_mask():
    quantizer = quest.QuESTQuantizer(bits=2)
    x = torch.randn(4, 256)
    x[0, 0] = 50.0  # an outlier far beyond alpha: clipped, so its gradient must not be trusted
    x.requires_grad_(True)
    out = quantizer(x)
    rms = x.detach().pow(2).mean(dim=1, keepdim=True).sqrt()
    alpha = quest.clip_scale(2) * rms
    # Centred 2-bit grid: every output is one of -alpha, -alpha/3, alpha/3, alpha (no level at zero).
    grid_index = out.detach() / alpha * 1.5 + 1.5
    torch.testing.assert_close(grid_index, grid_index.round(), atol=1e-4, rtol=0)
    assert set(grid_index.round().unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    out.sum().backward()
    assert x.grad[0, 0] == 0.0
    inside = x.detach().abs() <= alpha * (1 + 1 / 3)  # |x| <= alpha + step/2 with step = 2 alpha / 3
    assert torch.equal(x.grad == 1.0, inside)


def test_lsq_step_gradient_is_scaled_by_one_over_sqrt_n_qp():
    quantizer = lsq.LSQQuantizer(bits=3, rows=1, signed=True)
    x = torch.tensor([[0.1, -0.7, 2.5, -9.0, 0.33, 0.0]])
    quantizer(x)  # initialises the step
    with torch.no_grad():
        quantizer.step.fill_(0.5)
    quantizer(x).sum().backward()
    qn, qp = 4, 3
    v = x / 0.5
    inside = (v > -qn) & (v < qp)
    expected = torch.where(inside, torch.round(v) - v, torch.where(v <= -qn, -float(qn), float(qp))).sum()
    assert float(quantizer.step.grad) == pytest.approx(float(expected) / math.sqrt(x.numel() * qp), rel=1e-5)


def test_gptq_has_lower_layer_output_error_than_rtn():
    torch.manual_seed(0)
    inputs = torch.randn(2048, 96) @ torch.randn(96, 96) / 5  # correlated features: where GPTQ helps
    weight = torch.randn(48, 96)
    hessian = 2 * inputs.T @ inputs / inputs.shape[0]
    config = gptq.GPTQConfig(weight_bits=3, symmetric=False, granularity="channel", block_size=32)
    gptq_weight = gptq.gptq_quantize_matrix(weight, hessian, config)
    rtn_weight = quantize_dequantize(weight, 3, symmetric=False, granularity="channel")
    exact = inputs @ weight.T
    gptq_error = (inputs @ gptq_weight.T - exact).pow(2).mean()
    rtn_error = (inputs @ rtn_weight.T - exact).pow(2).mean()
    assert gptq_error < 0.7 * rtn_error
    # GPTQ's weights still lie on each row's 3-bit grid: at most 8 distinct values per row.
    assert all(len(torch.unique(row)) <= 8 for row in gptq_weight)


def test_quantized_conv_in_linear_form_equals_the_convolution():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1, stride=2)
    x = torch.randn(2, 3, 9, 7)
    # A Hadamard rotation with no quantizer forces the unfold path; it must not change the output.
    wrapped = QuantizedLayer(conv, None, None, bits_per_weight=32, hadamard_block=32)
    torch.testing.assert_close(wrapped(x), conv(x), atol=1e-5, rtol=1e-5)


def test_block_hadamard_dense_path_equals_the_butterflies():
    x = torch.randn(6, 3, 256, dtype=torch.float64)
    butterflies = fwht(x.reshape(6, 3, 2, 128)).reshape(6, 3, 256)
    torch.testing.assert_close(block_hadamard(x, 128), butterflies)
