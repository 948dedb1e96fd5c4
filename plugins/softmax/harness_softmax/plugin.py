"""The ``softmax`` harness plugin: softmax algorithms on CPU and GPU, their workloads and their metrics.

Task kind ``softmax-workload``: the environment's ``make`` returns a
:class:`harness_softmax.workload.SoftmaxWorkload` (rows x cols host inputs of one dtype, drawn from a seeded
uniform range, with rotated output buffers and a lazily computed float64 reference); an algorithm's ``run``
returns the outcome record of :func:`harness_softmax.protocol.summarize`.

Nothing heavy is imported here: callables are ``"module:function"`` strings, and the GPU algorithms' ``requires``
probe imports CuPy only when ``harness list`` asks.
"""

from __future__ import annotations

from pathlib import Path

from harness import AlgorithmSpec, EnvironmentSpec, MetricSpec, Param, Resources, hookimpl, outcome_value

HARNESS_API_VERSION = "1.0"

TASK_KIND = "softmax-workload"
# Outcome keys and metrics that are measurements (times, bandwidths and their ratios), so they differ between
# two runs with one seed; `harness plugins check softmax` needs them as --ignore KEY.
MEASURED_KEYS = (
    "time_s",
    "time_s_min",
    "time_s_p90",
    "gbps_min_traffic",
    "gbps_actual_passes",
    "bandwidth_ceiling_gbps",
    "fraction_of_ceiling",
    "torch_time_s",
    "speedup_vs_torch",
    "reload_time_s",
    "large_copy_gbps",
    "fraction_of_large_copy",
    "speedup_vs_three_pass_reload",
    "softmax_fraction_of_ceiling",
    "softmax_speedup_vs_torch",
    "softmax_speedup_vs_reload",
)
VERSION = "1"  # bump when a change makes results incomparable with earlier ones
# The CPU algorithms: 2 since they are compiled SIMD kernels (1 was torch ops over cache-sized blocks).
CPU_VERSION = "2"

_DTYPE = Param(
    "dtype",
    "float32",
    "storage type of inputs and outputs (arithmetic is float32)",
    choices=("float32", "float16", "bfloat16"),
)
_LOW = Param("low", -1000.0, "inputs are uniform(low, high)")
_HIGH = Param("high", 1000.0, "inputs are uniform(low, high)")
_BUFFERS = Param("buffers", 0, "input/output pairs timed runs rotate over; 0: enough to exceed 2x the cache")
_TOLERANCE = Param(
    "tolerance",
    0.0,
    "max relative error allowed; 0: the dtype's default (float32 1e-5, times sqrt(cols / 1e6) for longer rows; "
    "float16 2e-3; bfloat16 1.6e-2)",
)
_THREADS = Param(
    "threads",
    0,
    "CPU threads of the kernel, of the torch.softmax baseline and of the memcpy ceiling alike; 0: torch's current "
    "intra-op setting (reported in the outcome)",
)
_ISA = Param(
    "isa",
    "auto",
    "instruction set of the compiled kernels; auto: the fastest this CPU supports (avx512, avx2, portable C)",
    choices=("auto", "avx512", "avx2", "portable"),
)
_NONTEMPORAL = Param(
    "nontemporal",
    "auto",
    "stream output stores past the cache; auto: when the output per thread exceeds the L2 cache",
    choices=("auto", "on", "off"),
)

_CPU_ALGORITHMS = {
    "three-pass-recompute": "compiled SIMD three-pass safe softmax: max, sum of exp, output recomputing exp "
    "(3 reads, 1 write)",
    "three-pass-reload": "compiled SIMD three-pass safe softmax: max, stored exp and sum, rescale (3 reads, 2 writes)",
    "two-pass": "compiled SIMD Dukhan & Ablavatski 2020 two-pass softmax: (mantissa, exponent) sum, output "
    "(2 reads, 1 write)",
    "online": "compiled SIMD Milakov & Gimelshein 2018 online softmax: running max and rescaled sum, output "
    "(2 reads, 1 write)",
    "fused": "compiled SIMD fused rows: each row read once, max, exp and scale while it is in L1/L2 (1 read, 1 write)",
}
_CPU_BASELINES = {
    "torch": "baseline torch.softmax",
    "scipy": "baseline scipy.special.softmax (float32, float16; its allocated result is copied out)",
}
_GPU_ALGORITHMS = {
    "three-pass-recompute": "CuPy kernels: max, sum of exp, output recomputing exp (3 reads, 1 write)",
    "three-pass-reload": "CuPy kernels: max, stored exp and sum, rescale (3 reads, 2 writes)",
    "two-pass": "CuPy kernels: Dukhan & Ablavatski (mantissa, exponent) sum, output (2 reads, 1 write)",
    "online": "CuPy kernels: Milakov & Gimelshein running max and rescaled sum, output (2 reads, 1 write)",
    "fused": "CuPy fused row kernel: a row held in the registers of one block (up to 32768) or of a thread-block "
    "cluster (up to 262144); 1 read, 1 write",
}


def _run_name(key: str) -> str:
    return key.replace("-", "_")


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    specs = [
        AlgorithmSpec(
            name=f"softmax-{key}-cpu",
            version=CPU_VERSION,
            description=description,
            task_kinds=(TASK_KIND,),
            run=f"harness_softmax.cpu_run:run_{_run_name(key)}",
            params=(_TOLERANCE, _THREADS, _ISA, _NONTEMPORAL),
            requires="harness_softmax.cpu:compiled_unavailable_reason",
        )
        for key, description in _CPU_ALGORITHMS.items()
    ]
    specs += [
        AlgorithmSpec(
            name=f"softmax-{key}-cpu",
            version=CPU_VERSION,
            description=description,
            task_kinds=(TASK_KIND,),
            run=f"harness_softmax.cpu_run:run_{_run_name(key)}",
            params=(_TOLERANCE, _THREADS),
        )
        for key, description in _CPU_BASELINES.items()
    ]
    specs += [
        AlgorithmSpec(
            name=f"softmax-{key}-gpu",
            version=VERSION,
            description=description,
            task_kinds=(TASK_KIND,),
            run=f"harness_softmax.gpu:run_{_run_name(key)}",
            params=(_TOLERANCE,),
            resources=Resources(cpus=1.0, gpus=1.0),
            requires="harness_softmax.availability:cupy_unavailable_reason",
        )
        for key, description in _GPU_ALGORITHMS.items()
    ]
    specs.append(
        AlgorithmSpec(
            name="softmax-torch-cuda",
            version=VERSION,
            description="baseline torch.softmax on the GPU (CUDA build of torch)",
            task_kinds=(TASK_KIND,),
            run="harness_softmax.gpu:run_torch_cuda",
            params=(_TOLERANCE,),
            resources=Resources(cpus=1.0, gpus=1.0),
            requires="harness_softmax.availability:torch_cuda_unavailable_reason",
        )
    )
    return specs


@hookimpl
def harness_environments() -> list[EnvironmentSpec]:
    return [
        EnvironmentSpec(
            name="softmax-rows",
            version=VERSION,
            description="a batch of rows x cols inputs from uniform(low, high); softmax along each row",
            task_kind=TASK_KIND,
            make="harness_softmax.workload:make_rows",
            params=(
                Param("rows", 4096, "number of rows"),
                Param("cols", 1024, "elements per row"),
                _DTYPE,
                _LOW,
                _HIGH,
                _BUFFERS,
            ),
        ),
        EnvironmentSpec(
            name="softmax-vector",
            version=VERSION,
            description="one vector of n inputs from uniform(low, high) (in cache at 1e4, far out at 1e8)",
            task_kind=TASK_KIND,
            make="harness_softmax.workload:make_vector",
            params=(Param("n", 1_000_000, "number of elements"), _DTYPE, _LOW, _HIGH, _BUFFERS),
        ),
    ]


def _metric(name: str, key: str, unit: str, direction: str, description: str, threshold: float) -> MetricSpec:
    return MetricSpec(
        name=name,
        version=VERSION,
        description=description,
        unit=unit,
        direction=direction,  # type: ignore[arg-type]
        compute=outcome_value(key),
        task_kinds=(TASK_KIND,),
        threshold=threshold,
    )


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    return [
        _metric("softmax_time_s", "time_s", "s", "lower", "median time of one softmax over rotated buffers", 0.05),
        _metric(
            "softmax_gbps",
            "gbps_min_traffic",
            "GB/s",
            "higher",
            "throughput counting the minimum traffic (input read once, output written once)",
            0.05,
        ),
        _metric(
            "softmax_gbps_actual",
            "gbps_actual_passes",
            "GB/s",
            "higher",
            "throughput counting the algorithm's actual reads and writes per element",
            0.05,
        ),
        _metric(
            "softmax_bandwidth_ceiling_gbps",
            "bandwidth_ceiling_gbps",
            "GB/s",
            "higher",
            "copy bandwidth measured on the same device in the same cell (CPU: memcpy of the cell's own buffers, "
            "interleaved with the kernel, on the cell's threads)",
            0.05,
        ),
        _metric(
            "softmax_fraction_of_ceiling",
            "fraction_of_ceiling",
            "1",
            "higher",
            "softmax_gbps over the measured copy bandwidth",
            0.05,
        ),
        _metric(
            "softmax_speedup_vs_torch",
            "speedup_vs_torch",
            "x",
            "higher",
            "torch.softmax time over this algorithm's time, measured interleaved in the same cell",
            0.05,
        ),
        _metric(
            "softmax_speedup_vs_reload",
            "speedup_vs_three_pass_reload",
            "x",
            "higher",
            "compiled three-pass-reload time over this compiled algorithm's time (the Two-Pass paper's ratio), "
            "measured interleaved in the same cell",
            0.05,
        ),
        _metric(
            "softmax_max_rel_error",
            "max_rel_error",
            "1",
            "lower",
            "max relative error against float64 (denominator floored at the dtype's smallest normal)",
            1.0,
        ),
    ]


@hookimpl
def harness_suites() -> list[Path]:
    """suites/softmax.toml, shipped as package data (a link to the repository's file in a source checkout)."""
    suite = Path(__file__).parent / "suites" / "softmax.toml"
    return [suite] if suite.is_file() else []
