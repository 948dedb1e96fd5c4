"""Step ``softmax`` of the GPU check: every GPU softmax algorithm and torch.softmax, under the plugin's protocol.

Each cell is ``harness_softmax.gpu.run_*`` as the harness runs it (poisoned output and float64 check first, a
wrong kernel is recorded as an error and not timed; CUDA events over rotated buffers; the copy bandwidth
measured in the same cell; torch.softmax timed interleaved on the same buffers). Shapes: rows of 1K to 256K
columns at about 2^24 elements per buffer (rows of 64K and longer exercise the fused kernel's split-row path),
and single vectors of 1e4 to 1e8 elements; float32 and bfloat16 first, then float16. Rows of results are
appended to ``<json>.jsonl`` as they come, so a step stopped at its time limit keeps the cells it finished.

Targets (issue 16): fused >= 90 % of the copy bandwidth on rows of 1K-32K (and longer) in float32 and bfloat16
and >= 1.0x torch.softmax; out-of-cache vectors: two-pass and online >= 1.28x three-pass-reload.

    python benchmarks/gpu/softmax_table.py --json softmax.json --md softmax.md [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ALGORITHMS = ("fused", "online", "two-pass", "three-pass-reload", "three-pass-recompute", "torch")
ROW_COLS = (1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144)
VECTOR_SIZES = (10**4, 10**5, 10**6, 10**7, 10**8)
ELEMENTS_PER_BUFFER = 1 << 24
BUDGET = {"warmup": 3, "repeats": 20, "copy_mb": 512}


def workloads(quick: bool) -> list[tuple[str, int, int, str]]:
    """(label, rows, cols, dtype), most wanted first: float32 and bfloat16 rows, vectors, then float16."""
    cols_list = (1024, 8192, 32768, 131072) if quick else ROW_COLS
    sizes = (10**4, 10**6, 10**8) if quick else VECTOR_SIZES
    rows = [(f"rows-{ELEMENTS_PER_BUFFER // c}x{c}", ELEMENTS_PER_BUFFER // c, c) for c in cols_list]
    vectors = [(f"vector-{n:.0e}".replace("+0", ""), 1, n) for n in sizes]
    ordered = []
    for dtypes in (("float32", "bfloat16"), ("float16",)):
        for group in (rows, vectors):
            ordered += [(label, r, c, dtype) for dtype in dtypes for label, r, c in group]
    return ordered


def run_cell(gpu: Any, workload: Any, algorithm: str, context: Any) -> dict[str, Any]:
    run = gpu.run_torch_cuda if algorithm == "torch" else getattr(gpu, f"run_{algorithm.replace('-', '_')}")
    return run(environment=workload, params={"tolerance": 0.0}, context=context)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "GB/s over the minimum traffic (read once, write once); of copy: over the device-to-device copy measured in "
        "the same cell; vs torch: torch.softmax time over the algorithm's, interleaved on the same buffers.",
        "",
        "| workload | dtype | algorithm | GB/s | of copy | vs torch | max rel err | note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if row.get("error"):
            lines.append(f"| {row['workload']} | {row['dtype']} | {row['algorithm']} | | | | | {row['error'][:120]} |")
            continue
        speedup = f"{row['speedup_vs_torch']:.2f}x" if row.get("speedup_vs_torch") else ""
        lines.append(
            f"| {row['workload']} | {row['dtype']} | {row['algorithm']} | {row['gbps_min_traffic']:.0f} | "
            f"{100 * row['fraction_of_ceiling']:.0f}% | {speedup} | {row['max_rel_error']:.2g} | "
            f"{row.get('fused_path', '')} |"
        )
    return "\n".join(lines)


def headline(rows: list[dict[str, Any]]) -> str:
    ok = [r for r in rows if not r.get("error")]
    fused = [
        r
        for r in ok
        if r["algorithm"] == "fused" and r["workload"].startswith("rows") and r["dtype"] in ("float32", "bfloat16")
    ]
    errors = len(rows) - len(ok)
    if not fused:
        return f"{len(ok)} cells, {errors} errors; no fused row cells"
    worst = min(fused, key=lambda r: r["fraction_of_ceiling"])
    slowest = min(fused, key=lambda r: r.get("speedup_vs_torch") or 0.0)
    return (
        f"{len(ok)} cells, {errors} errors; fused rows f32/bf16: worst {100 * worst['fraction_of_ceiling']:.0f}% of "
        f"copy ({worst['workload']} {worst['dtype']}), lowest {slowest.get('speedup_vs_torch') or 0:.2f}x torch"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--md", type=Path)
    parser.add_argument("--quick", action="store_true", help="fewer shapes (a third of the cells)")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    args = parser.parse_args()
    from harness_softmax import gpu
    from harness_softmax.workload import SoftmaxWorkload

    from harness import CellContext

    lines = args.json.with_suffix(".jsonl")
    lines.write_text("")
    context = CellContext(seed=0, device="cuda", budget=BUDGET)
    rows: list[dict[str, Any]] = []
    for label, n_rows, cols, dtype in workloads(args.quick):
        workload = SoftmaxWorkload(n_rows, cols, dtype, -1000.0, 1000.0, seed=0)
        for algorithm in args.algorithms.split(","):
            if algorithm == "fused" and cols > gpu.SPLIT_MAX_COLS:
                continue  # longer than a cluster's registers: fused refuses by design (online and two-pass run)
            begin = time.perf_counter()
            row: dict[str, Any] = {"workload": label, "dtype": dtype, "algorithm": algorithm}
            try:
                outcome = run_cell(gpu, workload, algorithm, context)
                row.update({k: v for k, v in outcome.items() if isinstance(v, (int, float, str, type(None)))})
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            row["cell_s"] = round(time.perf_counter() - begin, 3)
            rows.append(row)
            with lines.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(f"{label} {dtype} {algorithm}: {row.get('gbps_min_traffic', row.get('error'))}", flush=True)
        workload.close()
        args.json.write_text(json.dumps({"headline": headline(rows), "budget": BUDGET, "cells": rows}, indent=1))
        if args.md:
            args.md.write_text(markdown(rows) + "\n")
    print(headline(rows))
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
