"""pytest-benchmark versions of the softmax kernels, so that `pytest-benchmark compare` works on them.

    OMP_NUM_THREADS=1 .venv/bin/pytest benchmarks/softmax --benchmark-autosave   # CPU (and GPU where present)
    .venv/bin/pytest-benchmark compare                                            # against earlier saved runs

On a shared or 2-core machine keep OMP_NUM_THREADS=1: with more torch threads than idle cores, OpenMP barriers
wait for descheduled threads and CPU timings go 10x off (extra_info records the thread count).

Every benchmark first checks its kernel against the float64 reference (a wrong kernel fails, it is not timed),
then times it on rotated buffers. extra_info carries the GB/s over the minimum traffic and over the actual
passes, and the fraction of the copy bandwidth measured once per session on the same device.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from harness_softmax import cpu, gpu, protocol
from harness_softmax.availability import cupy_unavailable_reason
from harness_softmax.workload import SoftmaxWorkload, last_level_cache_bytes

CPU_ALGORITHMS = [*cpu.ALGORITHMS, "torch", "scipy"]
CPU_WORKLOADS = {
    "rows-4096x1024-f32": (4096, 1024, "float32"),
    "rows-1823x781-bf16": (1823, 781, "bfloat16"),
    "vector-1e6-f32": (1, 10**6, "float32"),
    "vector-1e7-f32": (1, 10**7, "float32"),
}
GPU_ALGORITHMS = ["three-pass-recompute", "three-pass-reload", "two-pass", "online", "fused"]
GPU_WORKLOADS = {
    "rows-4096x1024-f32": (4096, 1024, "float32"),
    "rows-4096x1024-bf16": (4096, 1024, "bfloat16"),
    "rows-1024x32768-f32": (1024, 32768, "float32"),
    "vector-1e8-f32": (1, 10**8, "float32"),
}


def record(benchmark, workload: SoftmaxWorkload, passes, ceiling_gbps: float, threads) -> None:
    if benchmark.stats is None:  # --benchmark-disable: the kernel ran once (and was checked), nothing timed
        return
    median = benchmark.stats.stats.median
    gbps = workload.min_traffic_bytes / median / 1e9
    benchmark.extra_info.update(
        {
            "gbps_min_traffic": gbps,
            "gbps_actual_passes": None if passes is None else sum(passes) * workload.nbytes / median / 1e9,
            "copy_ceiling_gbps": ceiling_gbps,
            "fraction_of_ceiling": gbps / ceiling_gbps,
            "threads": threads,
        }
    )


@pytest.fixture(scope="session")
def cpu_ceiling_gbps() -> float:
    return cpu.memcpy_bandwidth_gbps(256 * 1024**2) or protocol.cpu_copy_bandwidth_gbps(256 * 1024**2)


@pytest.mark.parametrize("shape", list(CPU_WORKLOADS), ids=str)
@pytest.mark.parametrize("algorithm", CPU_ALGORITHMS)
def test_cpu_softmax(benchmark, algorithm, shape, cpu_ceiling_gbps):
    rows, cols, dtype = CPU_WORKLOADS[shape]
    if (algorithm == "scipy" and dtype == "bfloat16") or (algorithm == "fused" and rows == 1):
        pytest.skip(f"{algorithm} does not apply to {shape}")
    if algorithm in cpu.ALGORITHMS:
        _, passes = cpu.ALGORITHMS[algorithm]

        def kernel(x, out):
            cpu.softmax(algorithm, x, out, threads=torch.get_num_threads())
    else:
        kernel, passes = {"torch": cpu.torch_softmax, "scipy": cpu.scipy_softmax}[algorithm], None
    workload = SoftmaxWorkload(rows, cols, dtype, -1000.0, 1000.0, seed=0)
    out = workload.output(0)
    protocol.poison(out, dtype)
    kernel(workload.input(0), out)
    protocol.check_output(algorithm, workload, out, workload.reference(0), protocol.tolerance_for(dtype, 0.0, cols))
    pairs = itertools.cycle(workload.pairs(workload.rotation_count(last_level_cache_bytes())))

    def one_call() -> None:
        source, target = next(pairs)
        kernel(source, target)

    benchmark.group = f"cpu {shape}"
    benchmark.pedantic(one_call, rounds=20, warmup_rounds=3)
    record(benchmark, workload, passes, cpu_ceiling_gbps, torch.get_num_threads())


_GPU_REASON = cupy_unavailable_reason()


@pytest.fixture(scope="session")
def gpu_ceiling_gbps() -> float:
    return gpu.gpu_copy_bandwidth_gbps(1024**3)


@pytest.mark.gpu
@pytest.mark.skipif(_GPU_REASON is not None, reason=f"needs CuPy and a CUDA device: {_GPU_REASON}")
@pytest.mark.parametrize("shape", list(GPU_WORKLOADS), ids=str)
@pytest.mark.parametrize("algorithm", GPU_ALGORITHMS)
def test_gpu_softmax(benchmark, algorithm, shape, gpu_ceiling_gbps):
    import cupy

    rows, cols, dtype = GPU_WORKLOADS[shape]
    if algorithm == "fused" and cols > gpu.FUSED_MAX_COLS:
        pytest.skip(f"fused does not apply to {shape}")
    workload = SoftmaxWorkload(rows, cols, dtype, -1000.0, 1000.0, seed=0)
    device = cupy.cuda.Device()
    build = getattr(gpu, f"build_{algorithm.replace('-', '_')}")
    launch = build(workload, gpu.plan_chunks(rows, cols, device.attributes["MultiProcessorCount"]))
    rotation = gpu.device_pairs(workload, workload.rotation_count(device.attributes["L2CacheSize"]))
    source, target = rotation[0]
    launch(source, target)
    protocol.check_output(
        algorithm, workload, gpu.to_host(target, dtype), workload.reference(0), protocol.tolerance_for(dtype, 0.0, cols)
    )
    pairs = itertools.cycle(rotation)

    def one_call() -> None:  # wall clock around launch + synchronize: includes launch latency
        launch(*next(pairs))
        device.synchronize()

    benchmark.group = f"gpu {shape}"
    benchmark.pedantic(one_call, rounds=50, warmup_rounds=5)
    record(benchmark, workload, gpu_passes(algorithm), gpu_ceiling_gbps, None)


def gpu_passes(algorithm: str):
    return {
        "three-pass-recompute": (3, 1),
        "three-pass-reload": (3, 2),
        "two-pass": (2, 1),
        "online": (2, 1),
        "fused": (1, 1),
    }[algorithm]
