"""The CUDA kernels compile for sm_90 without a GPU (NVRTC as CuPy uses it, and nvcc), and on a GPU they agree
with the CPU references on irregular shapes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from harness_quant import gpu
from harness_quant.grids import quantize_dequantize
from harness_quant.hadamard import block_hadamard
from harness_quant.quantizers import quest

KERNELS = [Path(gpu.__file__).parent / "kernels" / name for name in gpu.KERNEL_FILES]


def _nvrtc():
    try:
        from cupy.cuda import nvrtc
    except ImportError:
        pytest.skip("CuPy is not installed (pip install 'harness-quant[gpu]'); nvcc still checks the kernels")
    return nvrtc


@pytest.mark.parametrize("source", KERNELS, ids=lambda p: p.name)
def test_kernel_compiles_with_nvrtc_for_compute_90(source):
    nvrtc = _nvrtc()
    program = nvrtc.createProgram(source.read_text(), source.name, [], [])
    try:
        nvrtc.compileProgram(program, ["-arch=compute_90", "-std=c++17"])
    except nvrtc.NVRTCError as exc:
        pytest.fail(f"NVRTC failed on {source.name}: {exc}\n{nvrtc.getProgramLog(program)}")
    ptx = nvrtc.getPTX(program)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    for kernel in ("rtn_fake_quant_rows", "quest_fake_quant_rows") if "fake" in source.name else ("fwht_blocks",):
        assert f".entry {kernel}" in ptx


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) is not installed; NVRTC still checks")
@pytest.mark.parametrize("source", KERNELS, ids=lambda p: p.name)
def test_kernel_compiles_with_nvcc_for_sm_90(source, tmp_path):
    ptx = tmp_path / f"{source.stem}.ptx"
    result = subprocess.run(
        ["nvcc", "-ptx", "-arch=sm_90", str(source), "-o", str(ptx)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert ".target sm_90" in ptx.read_text()


needs_gpu = pytest.mark.skipif(gpu.unavailable_reason() is not None, reason=str(gpu.unavailable_reason()))


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_gpu_rtn_fake_quant_matches_the_cpu_reference(bits, symmetric):
    import cupy

    x = torch.randn(37, 1001) * torch.rand(37, 1)
    out = cupy.asnumpy(gpu.rtn_fake_quant_rows(cupy.asarray(x.numpy()), bits, symmetric))
    reference = quantize_dequantize(x, bits, symmetric=symmetric, granularity="channel")
    mismatched = (torch.from_numpy(out) - reference).abs() > 1e-5 * (1 + reference.abs())
    assert float(mismatched.float().mean()) < 1e-3  # only exact .5 ties may round differently


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("bits", [1, 4, 8])
def test_gpu_quest_fake_quant_matches_the_cpu_reference(bits):
    import cupy

    x = torch.randn(19, 384)
    values, trusted = gpu.quest_fake_quant_rows(cupy.asarray(x.numpy()), bits, quest.clip_scale(bits))
    quantizer = quest.QuESTQuantizer(bits)
    x.requires_grad_(True)
    reference = quantizer(x)
    reference.sum().backward()
    torch.testing.assert_close(torch.from_numpy(cupy.asnumpy(values)), reference.detach(), atol=1e-5, rtol=1e-5)
    assert torch.equal(torch.from_numpy(cupy.asnumpy(trusted)).bool(), x.grad == 1.0)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("block", [2, 64, 128, 1024])
def test_gpu_fwht_matches_the_cpu_reference(block):
    import cupy

    x = torch.randn(13, 3 * block)
    out = torch.from_numpy(cupy.asnumpy(gpu.fwht_blocks(cupy.asarray(x.numpy()), block)))
    torch.testing.assert_close(out, block_hadamard(x, block), atol=1e-4, rtol=1e-4)
