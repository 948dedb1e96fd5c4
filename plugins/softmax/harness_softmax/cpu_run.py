"""``run`` entry points of the CPU softmax algorithms: check, then time against torch.softmax and memcpy."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from harness_softmax import protocol
from harness_softmax.cpu import DEFAULT_BLOCK_ELEMENTS, KERNELS, Kernel, torch_softmax
from harness_softmax.workload import SoftmaxWorkload, last_level_cache_bytes

DEFAULT_WARMUP = 3
DEFAULT_REPEATS = 20
DEFAULT_COPY_MB = 256


def cpu_name() -> str:
    """The CPU model as Linux reports it, else what the platform module knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_kernel(
    algorithm: str,
    kernel: Kernel,
    passes: tuple[int, int] | None,
    environment: SoftmaxWorkload,
    params: dict[str, Any],
    context: Any,
) -> dict[str, Any]:
    """The protocol of :mod:`harness_softmax.protocol` for one CPU kernel; returns the outcome record.

    ``params["threads"]`` (when positive) sets torch's intra-op threads for this call only: a worker runs many
    cells, and the next cell must find torch as it was.
    """
    import torch

    threads_before = torch.get_num_threads()
    if params.get("threads", 0) > 0:
        torch.set_num_threads(params["threads"])
    try:
        return _run_kernel(algorithm, kernel, passes, environment, params, context)
    finally:
        torch.set_num_threads(threads_before)


def _run_kernel(
    algorithm: str,
    kernel: Kernel,
    passes: tuple[int, int] | None,
    environment: SoftmaxWorkload,
    params: dict[str, Any],
    context: Any,
) -> dict[str, Any]:
    import torch

    if not isinstance(environment, SoftmaxWorkload):
        raise TypeError(
            f"{algorithm} runs on softmax-workload environments (softmax-rows, softmax-vector), "
            f"got {type(environment).__name__}"
        )
    block_elements = int(params.get("block_elements") or DEFAULT_BLOCK_ELEMENTS)

    def call(source: Any, target: Any) -> None:
        kernel(source, target, block_elements)

    tolerance = protocol.tolerance_for(environment.dtype, params.get("tolerance", 0.0), environment.cols)
    source, target = environment.input(0), environment.output(0)
    protocol.poison(target, environment.dtype)
    call(source, target)
    error = protocol.check_output(algorithm, environment, target, environment.reference(0), tolerance)

    warmup = int(context.budget_value("warmup", DEFAULT_WARMUP))
    repeats = int(context.budget_value("repeats", DEFAULT_REPEATS))
    pairs = environment.pairs(environment.rotation_count(last_level_cache_bytes()))
    own_times, torch_times = protocol.time_interleaved_cpu(
        [call, lambda s, t: torch_softmax(s, t)], pairs, warmup, repeats
    )
    copy_bytes = int(context.budget_value("copy_mb", DEFAULT_COPY_MB)) * 1024**2
    ceiling = protocol.cpu_copy_bandwidth_gbps(copy_bytes)
    return protocol.summarize(
        algorithm=algorithm,
        device="cpu",
        device_name=cpu_name(),
        workload=environment,
        passes=passes,
        times_s=own_times,
        torch_times_s=torch_times,
        bandwidth_ceiling_gbps=ceiling,
        max_rel_error=error,
        tolerance=tolerance,
        threads=torch.get_num_threads(),
        buffers=len(pairs),
        warmup=warmup,
        extra={"block_elements": block_elements, "copy_bytes": copy_bytes},
    )


def _runner(key: str, algorithm: str) -> Any:
    kernel, passes = KERNELS[key]

    def run(*, environment: SoftmaxWorkload, params: dict[str, Any], context: Any) -> dict[str, Any]:
        return run_kernel(algorithm, kernel, passes, environment, params, context)

    run.__name__ = f"run_{key.replace('-', '_')}_cpu"
    run.__doc__ = f"Run {algorithm} under the softmax protocol."
    return run


run_three_pass_recompute = _runner("three-pass-recompute", "softmax-three-pass-recompute-cpu")
run_three_pass_reload = _runner("three-pass-reload", "softmax-three-pass-reload-cpu")
run_two_pass = _runner("two-pass", "softmax-two-pass-cpu")
run_online = _runner("online", "softmax-online-cpu")
run_fused = _runner("fused", "softmax-fused-cpu")
run_torch = _runner("torch", "softmax-torch-cpu")
run_scipy = _runner("scipy", "softmax-scipy-cpu")
