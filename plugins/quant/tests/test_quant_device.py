"""Quantizers on the cell's device: the specs declare a GPU use, CUDA tensors go to the CuPy kernels, others to
torch. On the CPU the dispatch is tested with fake kernels that record their calls and compute the torch
reference, so the wiring (straight-through gradients, the Hadamard kernel's backward) is checked without a GPU;
on a GPU the real kernels are compared with torch's CUDA ops and a QAT cell runs on the device."""

from __future__ import annotations

import pytest
import torch
from harness_quant import dispatch, gpu
from harness_quant.grids import fake_quantize_ste, quantize_dequantize
from harness_quant.hadamard import block_hadamard
from harness_quant.layers import GridQuantizer, QuantizedLayer
from harness_quant.plugin import harness_algorithms
from harness_quant.quantizers.quest import QuESTQuantizer
from torch import nn

from harness import CellContext


class FakeKernels:
    """The torch references behind the kernel interface, recording which kernel ran."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def rtn_rows(self, x, bits, symmetric):
        self.calls.append("rtn")
        return quantize_dequantize(x, bits, symmetric=symmetric, granularity="channel")

    def quest_rows(self, x, bits, alpha_scale, trust):
        self.calls.append("quest")  # QuESTQuantizer.forward's torch code, written out (it would call back here)
        levels = 2**bits
        alpha = alpha_scale * x.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-8)
        step = 2 * alpha / (levels - 1)
        values = torch.clamp(torch.round((x + alpha) / step), 0, levels - 1) * step - alpha
        return values, (values - x).abs() <= trust * step / 2 * (1 + 1e-6)

    def fwht(self, x, block):
        self.calls.append("fwht")
        return block_hadamard(x, block)


@pytest.fixture
def fake(monkeypatch):
    kernels = FakeKernels()
    monkeypatch.setattr(dispatch, "kernels_for", lambda x: kernels if x.dim() == 2 else None)
    return kernels


def test_every_quantizer_spec_can_use_a_gpu():
    specs = harness_algorithms()
    assert specs and all(spec.resources.uses_gpu and spec.resources.gpus == 0 for spec in specs)


def test_cpu_tensors_take_the_torch_path_and_the_choice_is_checked(monkeypatch):
    assert dispatch.kernels_for(torch.randn(4, 8)) is None
    monkeypatch.setenv(dispatch.KERNELS_VARIABLE, "cupy-please")
    with pytest.raises(ValueError, match="auto, torch"):
        dispatch.kernel_choice()


def test_per_row_grids_use_the_kernel_with_the_straight_through_gradient(fake):
    x = torch.randn(7, 33, requires_grad=True)
    out = GridQuantizer(3, symmetric=False, granularity="channel", straight_through=True)(x)
    out.pow(2).sum().backward()
    assert fake.calls == ["rtn"]
    reference_x = x.detach().clone().requires_grad_(True)
    reference = fake_quantize_ste(reference_x, 3, symmetric=False, granularity="channel")
    reference.pow(2).sum().backward()
    torch.testing.assert_close(out, reference)
    torch.testing.assert_close(x.grad, reference_x.grad)


def test_grids_the_kernels_do_not_cover_stay_on_torch(fake):
    x = torch.randn(5, 300)
    out = GridQuantizer(4, granularity="group", group_size=128)(x)
    assert fake.calls == []
    torch.testing.assert_close(out, quantize_dequantize(x, 4, granularity="group", group_size=128))


def test_quest_uses_the_kernel_values_and_trust_mask(fake, monkeypatch):
    x = torch.randn(9, 128) * 3
    x_kernel = x.clone().requires_grad_(True)
    quantizer = QuESTQuantizer(2)
    out = quantizer(x_kernel)
    out.sum().backward()
    assert fake.calls == ["quest"]
    monkeypatch.setattr(dispatch, "kernels_for", lambda x: None)
    x_torch = x.clone().requires_grad_(True)
    reference_quantizer = QuESTQuantizer(2)
    reference = reference_quantizer(x_torch)
    reference.sum().backward()
    torch.testing.assert_close(out, reference)
    assert torch.equal(x_kernel.grad, x_torch.grad)  # zero exactly where the value was clipped
    assert quantizer.last_trusted_fraction == pytest.approx(reference_quantizer.last_trusted_fraction)
    assert 0 < quantizer.last_trusted_fraction < 1


def test_the_hadamard_kernel_rotates_both_operands_and_its_backward_is_the_same_transform(fake, monkeypatch):
    torch.manual_seed(0)
    layer = nn.Linear(256, 10)
    x = torch.randn(6, 256, requires_grad=True)
    wrapped = QuantizedLayer(layer, GridQuantizer(8, straight_through=True), None, 8.0, hadamard_block=128)
    out = wrapped(x)
    out.pow(2).sum().backward()
    assert fake.calls.count("fwht") == 4  # weight and input forward, then both backward
    grads = (x.grad.clone(), layer.weight.grad.clone())
    monkeypatch.setattr(dispatch, "kernels_for", lambda x: None)
    x.grad, layer.weight.grad = None, None
    reference = wrapped(x)
    reference.pow(2).sum().backward()
    torch.testing.assert_close(out, reference)
    torch.testing.assert_close(grads[0], x.grad)
    torch.testing.assert_close(grads[1], layer.weight.grad)


def test_a_dimension_off_the_block_is_padded_by_torch(fake):
    x = torch.randn(3, 200)  # 200 is not a multiple of 128: block_hadamard pads
    torch.testing.assert_close(dispatch.hadamard(x, 128), block_hadamard(x, 128))
    assert fake.calls == []


# --- on a GPU ----------------------------------------------------------------------------------------------

needs_gpu = pytest.mark.skipif(
    gpu.unavailable_reason() is not None or not torch.cuda.is_available(),
    reason=f"needs CuPy and torch with CUDA: {gpu.unavailable_reason() or 'torch has no CUDA'}",
)


@pytest.mark.gpu
@needs_gpu
def test_gpu_kernels_match_torch_cuda_in_a_quest_layer(monkeypatch):
    torch.manual_seed(1)
    layer = nn.Linear(384, 96).cuda()
    quantized = QuantizedLayer(layer, QuESTQuantizer(4), QuESTQuantizer(4), 4.0, hadamard_block=128)
    x = torch.randn(257, 384, device="cuda", requires_grad=True)
    assert isinstance(dispatch.kernels_for(x), dispatch.CupyKernels)
    out = quantized(x)
    out.sum().backward()
    grad = x.grad.clone()
    monkeypatch.setenv(dispatch.KERNELS_VARIABLE, "torch")
    assert dispatch.kernels_for(x) is None
    x.grad = None
    reference = quantized(x)
    reference.sum().backward()
    mismatched = ((out - reference).abs() > 1e-3 * (1 + reference.abs())).float().mean()
    assert float(mismatched) < 1e-3  # rounding ties after a float32 rotation may differ
    assert float(((grad - x.grad).abs() > 1e-3).float().mean()) < 1e-2


@pytest.mark.gpu
@needs_gpu
def test_a_qat_cell_runs_on_the_gpu(tmp_path):
    from harness_quant.environments.digits import make_mlp
    from harness_quant.quantizers import quest

    context = CellContext(seed=0, device="cuda", budget={"train_steps": 30, "gradient_steps": 5}, cache_dir=tmp_path)
    params = {"width": 32, "train_steps": 30, "lr": 2e-3, "batch_size": 64, "validation_fraction": 0.25}
    workload = make_mlp(params=params, context=context)
    assert workload.device == "cuda" and next(workload.model.parameters()).is_cuda
    outcome = quest.run(workload, {"weight_bits": 4, "act_bits": 4}, context)
    assert 0 <= outcome["accuracy"] <= 1 and outcome["qat_steps"] == 5
