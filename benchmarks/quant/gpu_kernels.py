"""GB/s of the CuPy fake-quantization and block-FWHT kernels against the device's measured copy bandwidth.

Each kernel reads its input once and writes its output once: 8 bytes per float32 element (QuEST also writes
a 1-byte trust mask: 9 bytes). The roofline is a device-to-device copy of the same array (``cupy.copyto``,
also 8 bytes per element), timed the same way with CUDA events. Before timing, every kernel is checked
against its CPU reference (harness_quant.grids / quest / hadamard) on an irregular shape with fresh data.
The issue's target: at least 80 % of the copy bandwidth. Needs a CUDA GPU and CuPy.

    .venv/bin/python benchmarks/quant/gpu_kernels.py --rows 16384 --cols 4096 --repeats 50
"""

from __future__ import annotations

import argparse
import json

import torch
from harness_quant import gpu
from harness_quant.grids import quantize_dequantize
from harness_quant.hadamard import block_hadamard
from harness_quant.quantizers import quest


def check_against_cpu(cupy) -> None:
    x = torch.randn(37, 1000)
    out = torch.from_numpy(cupy.asnumpy(gpu.rtn_fake_quant_rows(cupy.asarray(x.numpy()), 4, True)))
    reference = quantize_dequantize(x, 4, symmetric=True, granularity="channel")
    assert float(((out - reference).abs() > 1e-5).float().mean()) < 1e-3, "rtn kernel disagrees with the CPU"
    values, _ = gpu.quest_fake_quant_rows(cupy.asarray(x.numpy()), 4, quest.clip_scale(4))
    torch.testing.assert_close(torch.from_numpy(cupy.asnumpy(values)), quest.QuESTQuantizer(4)(x), atol=1e-5, rtol=1e-5)
    y = torch.randn(19, 3 * 128)
    out = torch.from_numpy(cupy.asnumpy(gpu.fwht_blocks(cupy.asarray(y.numpy()), 128)))
    torch.testing.assert_close(out, block_hadamard(y, 128), atol=1e-4, rtol=1e-4)


def time_ms(cupy, launch, repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        launch()
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    for _ in range(repeats):
        launch()
    stop.record()
    stop.synchronize()
    return cupy.cuda.get_elapsed_time(start, stop) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    reason = gpu.unavailable_reason()
    if reason:
        raise SystemExit(f"gpu_kernels.py needs a CUDA GPU: {reason}")
    import cupy

    check_against_cpu(cupy)
    x = cupy.random.standard_normal((args.rows, args.cols), dtype=cupy.float32)
    copy_target = cupy.empty_like(x)
    elements = x.size
    cases = {
        "copy (roofline)": (lambda: cupy.copyto(copy_target, x), 8),
        "rtn_fake_quant_rows w4": (lambda: gpu.rtn_fake_quant_rows(x, 4, True), 8),
        "quest_fake_quant_rows w4": (lambda: gpu.quest_fake_quant_rows(x, 4, quest.clip_scale(4)), 9),
        "fwht_blocks 128": (lambda: gpu.fwht_blocks(x, 128), 8),
    }
    results = {name: elements * nbytes / time_ms(cupy, fn, args.repeats) / 1e6 for name, (fn, nbytes) in cases.items()}
    copy = results["copy (roofline)"]
    print(f"\n{cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}, {args.rows} x {args.cols} float32\n")
    print("| kernel | GB/s | of copy |")
    print("|---|---|---|")
    for name, gbps in results.items():
        print(f"| {name} | {gbps:.0f} | {100 * gbps / copy:.0f}% |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
