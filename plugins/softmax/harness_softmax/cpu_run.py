"""``run`` entry points of the CPU softmax algorithms: check, then time against torch.softmax and memcpy."""

from __future__ import annotations

import platform
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import CellContext
from harness_softmax import cpu, protocol
from harness_softmax.workload import SoftmaxWorkload, last_level_cache_bytes

DEFAULT_WARMUP = 3
DEFAULT_REPEATS = 20
DEFAULT_COPY_MB = 256

Kernel = Callable[[Any, Any], None]


def cpu_name() -> str:
    """The CPU model as Linux reports it, else what the platform module knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def resolve_threads(params: dict[str, Any]) -> int:
    """``params["threads"]``, or torch's current intra-op thread count for 0 / absent."""
    import torch

    return int(params.get("threads") or 0) or torch.get_num_threads()


def run_kernel(
    algorithm: str,
    kernel: Kernel,
    passes: tuple[int, int] | None,
    environment: SoftmaxWorkload,
    params: dict[str, Any],
    context: CellContext,
    extra: dict[str, Any] | None = None,
    reference_kernel: Kernel | None = None,
) -> dict[str, Any]:
    """The protocol of :mod:`harness_softmax.protocol` for one CPU kernel ``kernel(x, out)``; the outcome record.

    ``reference_kernel`` (the compiled three-pass-reload, the Two-Pass paper's baseline) is timed interleaved
    with the kernel and ``torch.softmax``, so ``speedup_vs_three_pass_reload`` compares the same machine state.
    The cell's ``threads`` apply to the kernel (the caller binds them), to ``torch.softmax`` and to the memcpy
    ceiling alike, so every ratio in the record compares equal thread counts. Torch's own setting is restored
    afterwards: a worker runs many cells, and the next cell must find torch as it was.
    """
    import torch

    threads = resolve_threads(params)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run_kernel(
            algorithm, kernel, passes, environment, params, context, threads, extra or {}, reference_kernel
        )
    finally:
        torch.set_num_threads(threads_before)


def _run_kernel(
    algorithm: str,
    kernel: Kernel,
    passes: tuple[int, int] | None,
    environment: SoftmaxWorkload,
    params: dict[str, Any],
    context: CellContext,
    threads: int,
    extra: dict[str, Any],
    reference_kernel: Kernel | None,
) -> dict[str, Any]:
    if not isinstance(environment, SoftmaxWorkload):
        raise TypeError(
            f"{algorithm} runs on softmax-workload environments (softmax-rows, softmax-vector), "
            f"got {type(environment).__name__}"
        )
    tolerance = protocol.tolerance_for(environment.dtype, params.get("tolerance", 0.0), environment.cols)
    source, target = environment.input(0), environment.output(0)
    protocol.poison(target, environment.dtype)
    kernel(source, target)
    error = protocol.check_output(algorithm, environment, target, environment.reference(0), tolerance)

    warmup = int(context.budget_value("warmup", DEFAULT_WARMUP))
    repeats = int(context.budget_value("repeats", DEFAULT_REPEATS))
    pairs = environment.pairs(environment.rotation_count(last_level_cache_bytes()))

    def copy(x: Any, out: Any) -> None:
        cpu.copy_pair(x, out, threads)

    kernels = [kernel, cpu.torch_softmax, copy] + ([reference_kernel] if reference_kernel else [])
    own_times, torch_times, copy_times, *reference_times = protocol.time_interleaved_cpu(
        kernels, pairs, warmup, repeats
    )
    # The ceiling: memcpy of the same rotated buffers, interleaved, so a busy machine slows it like the kernel.
    ceiling = environment.min_traffic_bytes / statistics.median(copy_times) / 1e9
    if reference_times:
        reload_time = statistics.median(reference_times[0])
        extra = {
            **extra,
            "reload_time_s": reload_time,
            "speedup_vs_three_pass_reload": reload_time / statistics.median(own_times),
        }
    copy_bytes = int(context.budget_value("copy_mb", DEFAULT_COPY_MB)) * 1024**2
    large_copy = cpu.memcpy_bandwidth_gbps(copy_bytes, threads)
    ceiling_method = "memcpy of the cell's buffers, interleaved"
    if large_copy is None:  # no compiled kernels here: torch's copy
        large_copy, ceiling_method = protocol.cpu_copy_bandwidth_gbps(copy_bytes), "torch copy_ of the cell's buffers"
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
        threads=threads,
        buffers=len(pairs),
        warmup=warmup,
        extra={
            "copy_bytes": copy_bytes,
            "large_copy_gbps": large_copy,
            "fraction_of_large_copy": environment.min_traffic_bytes / statistics.median(own_times) / 1e9 / large_copy,
            "ceiling_method": ceiling_method,
            **extra,
        },
    )


def compiled_kernel(
    algorithm: str, environment: SoftmaxWorkload, params: dict[str, Any]
) -> tuple[Kernel, Kernel, dict[str, Any]]:
    """The compiled kernel of ``algorithm`` and of three-pass-reload, bound to the cell's isa, threads and
    nontemporal settings, and the settings they resolved to (recorded in the outcome)."""
    from harness import CellSkipped

    try:
        isa = cpu.select_isa(params.get("isa", "auto"))
    except cpu.CompiledKernelsUnavailable as exc:  # e.g. isa = "avx512" on a CPU without it: not a failure
        raise CellSkipped(str(exc)) from None
    threads = resolve_threads(params)
    setting = params.get("nontemporal", "auto")
    nontemporal = cpu.use_nontemporal(setting, environment.nbytes, threads)
    fixed = "on" if nontemporal else "off"

    def kernel(x: Any, out: Any) -> None:
        cpu.softmax(algorithm, x, out, isa=isa, threads=threads, nontemporal=fixed)

    def reload(x: Any, out: Any) -> None:
        cpu.softmax("three-pass-reload", x, out, isa=isa, threads=threads, nontemporal=fixed)

    return kernel, reload, {"isa": isa, "nontemporal": nontemporal, "cpu_features": cpu.cpu_features()}


def _compiled_runner(key: str) -> Any:
    algorithm = f"softmax-{key}-cpu"
    passes = cpu.ALGORITHMS[key]

    def run(*, environment: SoftmaxWorkload, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
        if not isinstance(environment, SoftmaxWorkload):
            raise TypeError(f"{algorithm} runs on softmax-workload environments, got {type(environment).__name__}")
        kernel, reload, settings = compiled_kernel(key, environment, params)
        if key == "three-pass-reload":  # its own reference: the ratio is 1 by definition, not timed twice
            outcome = run_kernel(algorithm, kernel, passes, environment, params, context, settings)
            return {**outcome, "reload_time_s": outcome["time_s"], "speedup_vs_three_pass_reload": 1.0}
        return run_kernel(algorithm, kernel, passes, environment, params, context, settings, reload)

    run.__name__ = f"run_{key.replace('-', '_')}_cpu"
    run.__doc__ = f"Run the compiled {key} kernel under the softmax protocol."
    return run


def _baseline_runner(kernel: Kernel, algorithm: str) -> Any:
    def run(*, environment: SoftmaxWorkload, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
        return run_kernel(algorithm, kernel, None, environment, params, context)  # the library's passes: uncounted

    run.__name__ = f"run_{algorithm.replace('-', '_')}"
    run.__doc__ = f"Run the baseline {algorithm} under the softmax protocol."
    return run


run_three_pass_recompute = _compiled_runner("three-pass-recompute")
run_three_pass_reload = _compiled_runner("three-pass-reload")
run_two_pass = _compiled_runner("two-pass")
run_online = _compiled_runner("online")
run_fused = _compiled_runner("fused")
run_torch = _baseline_runner(cpu.torch_softmax, "softmax-torch-cpu")
run_scipy = _baseline_runner(cpu.scipy_softmax, "softmax-scipy-cpu")
