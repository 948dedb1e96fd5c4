"""CPU softmax: each algorithm's fraction of the measured memcpy bandwidth and its ratio to torch.softmax.

Runs every CPU algorithm under the suite's own protocol (harness_softmax.cpu_run.run_kernel: correctness gate,
warm-up, median of repeats over rotated buffers, torch.softmax interleaved in the same cell, memcpy measured in
the same cell) and prints a Markdown table for benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/softmax/cpu_table.py --threads 1 --repeats 20
"""

from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
from pathlib import Path

import torch
from harness_softmax.cpu import KERNELS
from harness_softmax.cpu_run import cpu_name, run_kernel
from harness_softmax.workload import SoftmaxWorkload

from harness import CellContext

ALGORITHMS = ["three-pass-recompute", "three-pass-reload", "two-pass", "online", "fused", "torch", "scipy"]
WORKLOADS = [  # (label, rows, cols, dtype)
    ("rows 4096x1024 f32", 4096, 1024, "float32"),
    ("rows 1823x781 bf16", 1823, 781, "bfloat16"),
    ("vector 1e6 f32", 1, 10**6, "float32"),
    ("vector 1e7 f32", 1, 10**7, "float32"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed repetitions first")
    parser.add_argument("--copy-mb", type=int, default=256, help="size of the memcpy measuring the ceiling")
    parser.add_argument("--workloads", nargs="*", help="labels to run (default: all)")
    args = parser.parse_args()

    print(
        f"CPU: {cpu_name()} ({platform.machine()}), torch {torch.__version__}, threads={args.threads}, "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, repeats={args.repeats}"
    )
    print()
    print(
        "| workload | algorithm | median ms | GB/s (min traffic) | GB/s (actual passes) | memcpy GB/s "
        "| fraction of memcpy | speedup vs torch.softmax | max rel error |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        for label, rows, cols, dtype in WORKLOADS:
            if args.workloads and label not in args.workloads:
                continue
            workload = SoftmaxWorkload(rows, cols, dtype, -1000.0, 1000.0, seed=0)
            for algorithm in ALGORITHMS:
                if (algorithm == "scipy" and dtype == "bfloat16") or (algorithm == "fused" and cols > 1 << 16):
                    continue
                kernel, passes = KERNELS[algorithm]
                context = CellContext(
                    seed=0,
                    budget={"warmup": args.warmup, "repeats": args.repeats, "copy_mb": args.copy_mb},
                    checkpoint_dir=Path(scratch),
                    cache_dir=Path(scratch),
                )
                o = run_kernel(f"softmax-{algorithm}-cpu", kernel, passes, workload, {"threads": args.threads}, context)
                actual = f"{o['gbps_actual_passes']:.2f}" if o["gbps_actual_passes"] is not None else "-"
                print(
                    f"| {label} | {algorithm} | {o['time_s'] * 1e3:.2f} | {o['gbps_min_traffic']:.2f} | {actual} "
                    f"| {o['bandwidth_ceiling_gbps']:.1f} | {o['fraction_of_ceiling']:.3f} "
                    f"| {o['speedup_vs_torch']:.2f} | {o['max_rel_error']:.1e} |",
                    flush=True,
                )
            workload.close()


if __name__ == "__main__":
    main()
