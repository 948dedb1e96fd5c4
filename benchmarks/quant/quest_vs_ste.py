"""Does QuEST lose less than STE at 4-bit weights and activations on the character LM, at equal steps?

The issue's claim (from the QuEST paper) checked at this project's scale: for each seed, the char-lm
environment trains (or loads from the cache) its full-precision model with the ``short`` profile's budget,
then STE and QuEST fine-tune copies of it for the same number of steps with the same loop, learning rate and
batches, and we compare their gaps to full precision (relative perplexity increase). RTN W4A4 (no training)
is printed as the floor both should beat. Prints a Markdown table and writes JSON.

    .venv/bin/python benchmarks/quant/quest_vs_ste.py --seeds 0 1 2 --train-steps 1000 --gradient-steps 200

Seeds can run in separate processes (``--seeds 1 --out s1.json``) and be tabled together with
``--summarize s0.json s1.json s2.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from harness_quant.plugin import harness_algorithms, harness_environments

from harness import CellContext
from harness.specs import resolve_callable

ALGORITHMS = {spec.name: spec for spec in harness_algorithms()}
CHAR_LM = next(spec for spec in harness_environments() if spec.name == "char-lm")
QUANTIZERS = ("rtn", "ste", "quest")


def run_seed(seed: int, args: argparse.Namespace) -> dict:
    budget = {"train_steps": args.train_steps, "gradient_steps": args.gradient_steps}
    context = CellContext(seed=seed, budget=budget, checkpoint_dir=Path("/tmp"), cache_dir=args.cache_dir)
    torch.manual_seed(seed)
    start = time.perf_counter()
    environment = resolve_callable(CHAR_LM.make)(params=CHAR_LM.defaults, context=context)
    row = {"seed": seed, "fp_perplexity": environment.fp_quality, "make_s": time.perf_counter() - start}
    for name in QUANTIZERS:
        spec = ALGORITHMS[name]
        params = spec.resolve_params({"weight_bits": args.bits, "act_bits": args.bits})
        torch.manual_seed(seed)
        outcome = resolve_callable(spec.run)(environment=environment, params=params, context=context)
        row[f"{name}_perplexity"] = outcome["perplexity"]
        row[f"{name}_gap"] = outcome["gap_to_fp"]
        row[f"{name}_time_s"] = outcome["quantize_time_s"]
    return row


def print_table(rows: list[dict], bits: int, gradient_steps: object, train_steps: object) -> None:
    print(f"\nchar-lm, W{bits}A{bits}, {gradient_steps} QAT steps, FP trained {train_steps} steps\n")
    print("| seed | FP ppl | RTN ppl (gap) | STE ppl (gap) | QuEST ppl (gap) | QuEST gap < STE gap |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r[f'{n}_perplexity']:.3f} ({100 * r[f'{n}_gap']:+.2f}%)" for n in QUANTIZERS]
        print(f"| {r['seed']} | {r['fp_perplexity']:.3f} | {' | '.join(cells)} | {r['quest_gap'] < r['ste_gap']} |")
    mean = {n: 100 * statistics.mean(r[f"{n}_gap"] for r in rows) for n in QUANTIZERS}
    print(f"\nmean gap: RTN {mean['rtn']:+.2f}%, STE {mean['ste']:+.2f}%, QuEST {mean['quest']:+.2f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-steps", type=int, default=1000, help="FP training steps (short profile: 1000)")
    parser.add_argument("--gradient-steps", type=int, default=200, help="QAT steps (short profile: 200)")
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--cache-dir", type=Path, default=Path("results/cache"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/quant/quest_vs_ste.json"))
    parser.add_argument("--summarize", type=Path, nargs="+", help="only print the table of these JSON files")
    args = parser.parse_args()
    if args.summarize:
        rows = [row for path in args.summarize for row in json.loads(path.read_text())["rows"]]
        saved = json.loads(args.summarize[0].read_text())["args"]
        rows.sort(key=lambda r: r["seed"])
        print_table(rows, int(saved["bits"]), saved["gradient_steps"], saved["train_steps"])
        return
    torch.set_num_threads(args.threads)
    rows = []
    for seed in args.seeds:
        rows.append(run_seed(seed, args))
        print(json.dumps(rows[-1]), flush=True)
    print_table(rows, args.bits, args.gradient_steps, args.train_steps)
    payload = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": platform.platform(), "rows": rows}
    args.out.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
