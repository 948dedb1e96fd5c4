"""CPU softmax: each compiled algorithm's GB/s, fraction of memcpy, and ratios to torch.softmax and to
three-pass-reload (the Two-Pass paper's figure), one Markdown table for benchmarks/RESULTS.md.

Every row runs under the suite's own protocol (harness_softmax.cpu_run: correctness gate on a poisoned output,
warm-up, median of repeats over rotated buffers, torch.softmax and the compiled three-pass-reload interleaved in
the same cell, and a memcpy of the same buffers on as many threads interleaved with them: the "memcpy GB/s"
column, the ceiling; "large memcpy" is a separate 256 MiB copy timed after the cell, for reference).

    .venv/bin/python benchmarks/softmax/cpu_table.py --threads 1 2 --repeats 15
    .venv/bin/python benchmarks/softmax/cpu_table.py --isa avx2 --workloads "vector 1e7 f32" "vector 5e7 f32"
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
from pathlib import Path

import torch
from harness_softmax import cpu, cpu_run
from harness_softmax.workload import SoftmaxWorkload

from harness import CellContext

ALGORITHMS = [*cpu.ALGORITHMS, "torch"]
WORKLOADS = [  # (label, rows, cols, dtype)
    ("rows 4096x1024 f32", 4096, 1024, "float32"),
    ("rows 4096x1024 bf16", 4096, 1024, "bfloat16"),
    ("rows 1823x781 f32", 1823, 781, "float32"),
    ("rows 1823x781 bf16", 1823, 781, "bfloat16"),
    ("vector 1e6 f32", 1, 10**6, "float32"),
    ("vector 1e7 f32", 1, 10**7, "float32"),
    ("vector 5e7 f32", 1, 5 * 10**7, "float32"),
    ("rows 4096x16384 f32", 4096, 16384, "float32"),
]


def run_one(algorithm: str, workload: SoftmaxWorkload, params: dict, context: CellContext) -> dict:
    if algorithm == "torch":
        return cpu_run.run_torch(environment=workload, params=params, context=context)
    return getattr(cpu_run, f"run_{algorithm.replace('-', '_')}")(environment=workload, params=params, context=context)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts to run (each a row)")
    parser.add_argument("--isa", default="auto", choices=cpu.ISA_CHOICES, help="instruction set of the kernels")
    parser.add_argument("--nontemporal", default="auto", choices=cpu.NONTEMPORAL_CHOICES)
    parser.add_argument("--repeats", type=int, default=15, help="timed repetitions (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed repetitions first")
    parser.add_argument("--copy-mb", type=int, default=256, help="size of the memcpy measuring the ceiling")
    parser.add_argument("--workloads", nargs="*", help="labels to run (default: all)")
    args = parser.parse_args()

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print(
        f"CPU: {cpu_run.cpu_name()} ({platform.machine()}, {cpu.default_threads()} CPUs, L2 {cpu.cache_bytes(2) >> 20}"
        f" MiB, L3 {cpu.cache_bytes(3) >> 20} MiB), kernels {cpu.select_isa(args.isa)}, torch {torch.__version__}, "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load average {load[0]:.2f} at start, "
        f"repeats={args.repeats}"
    )
    print()
    print(
        "| workload | threads | algorithm | median ms | GB/s (min traffic) | GB/s (actual passes) | memcpy GB/s "
        "| fraction of memcpy | large memcpy GB/s | vs torch.softmax | vs three-pass-reload | NT stores "
        "| max rel error |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        for label, rows, cols, dtype in WORKLOADS:
            if args.workloads and label not in args.workloads:
                continue
            workload = SoftmaxWorkload(rows, cols, dtype, -1000.0, 1000.0, seed=0)
            for threads in args.threads:
                for algorithm in ALGORITHMS:
                    if algorithm == "fused" and rows == 1:
                        continue  # one long vector is no row that fits a cache
                    context = CellContext(
                        seed=0,
                        budget={"warmup": args.warmup, "repeats": args.repeats, "copy_mb": args.copy_mb},
                        checkpoint_dir=Path(scratch),
                        cache_dir=Path(scratch),
                    )
                    params = {"threads": threads, "isa": args.isa, "nontemporal": args.nontemporal}
                    o = run_one(algorithm, workload, params, context)
                    actual = f"{o['gbps_actual_passes']:.2f}" if o["gbps_actual_passes"] is not None else "-"
                    reload = o.get("speedup_vs_three_pass_reload")
                    print(
                        f"| {label} | {threads} | {algorithm} | {o['time_s'] * 1e3:.2f} | {o['gbps_min_traffic']:.2f} "
                        f"| {actual} | {o['bandwidth_ceiling_gbps']:.1f} | {o['fraction_of_ceiling']:.2f} "
                        f"| {o['large_copy_gbps']:.1f} "
                        f"| {o['speedup_vs_torch']:.2f} | {f'{reload:.2f}' if reload else '-'} "
                        f"| {'yes' if o.get('nontemporal') else '-'} | {o['max_rel_error']:.1e} |",
                        flush=True,
                    )
            workload.close()


if __name__ == "__main__":
    main()
