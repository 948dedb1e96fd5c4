"""CPU time of one QAT training step with each quantizer, relative to the full-precision step.

A step is what :func:`harness_quant.qat.finetune` does: forward, loss, backward, gradient clipping, AdamW.
Models: the char-lm transformer at its default size (d_model 128, 2 blocks, 64-character windows, batch 32)
and the digits MLP (width 64, batch 64), randomly initialised (step time does not depend on the weights).
Every variant is timed in the same process, rounds interleaved (FP, STE, LSQ, QuEST, FP, ...), so load from
other processes hits all of them alike; the table reports the median over rounds of the mean step time and
its ratio to the FP median. Prints a Markdown table and writes JSON.

    .venv/bin/python benchmarks/quant/qat_step_overhead.py --rounds 5 --steps 20 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from harness_quant.environments.charlm import CharTransformer, lm_loss
from harness_quant.environments.digits import _mlp
from harness_quant.quantizers import lsq, quest, ste
from torch.nn import functional as F

BITS = 4


def char_lm_workload(rng: np.random.Generator):
    model = CharTransformer(vocab_size=96, d_model=128, n_layers=2, n_heads=4, seq_len=64)
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "head"]
    return model, names, lambda: torch.from_numpy(rng.integers(0, 96, (32, 65))), lm_loss


def digits_workload(rng: np.random.Generator):
    model = _mlp(64)
    names = ["1", "3", "5"]

    def batch():
        return torch.from_numpy(rng.random((64, 1, 8, 8), dtype=np.float32)), torch.from_numpy(rng.integers(0, 10, 64))

    return model, names, batch, lambda m, b: F.cross_entropy(m(b[0]), b[1])


VARIANTS = {
    "fp": lambda model, names: model,
    "ste": lambda model, names: ste.quantize_model(model, names, ste.STEConfig(weight_bits=BITS, act_bits=BITS)),
    "lsq": lambda model, names: lsq.quantize_model(model, names, lsq.LSQConfig(weight_bits=BITS, act_bits=BITS)),
    "quest": lambda model, names: quest.quantize_model(
        model, names, quest.QuESTConfig(weight_bits=BITS, act_bits=BITS)
    ),
}


def time_steps(model, batch, loss_fn, steps: int) -> float:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    start = time.perf_counter()
    for _ in range(steps):
        loss = loss_fn(model, batch())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant per round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/quant/qat_step_overhead.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for workload_name, build in (("char-lm", char_lm_workload), ("digits-mlp", digits_workload)):
        rng = np.random.default_rng(0)
        torch.manual_seed(0)
        base, names, batch, loss_fn = build(rng)
        models = {}
        for variant, quantize in VARIANTS.items():
            model = quantize(copy.deepcopy(base), names)
            model.train()
            if variant == "lsq":  # initialise the learned steps from one batch, as lsq.run does
                with torch.no_grad():
                    loss_fn(model, batch())
            time_steps(model, batch, loss_fn, 3)  # warm-up
            models[variant] = model
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant, model in models.items():
                times[variant].append(time_steps(model, batch, loss_fn, args.steps))
        medians = {v: statistics.median(t) for v, t in times.items()}
        results[workload_name] = {"median_step_s": medians, "all_step_s": times}
    print(
        f"\nQAT step time, W{BITS}A{BITS}, torch {torch.__version__}, {args.threads} thread(s), "
        f"median of {args.rounds} rounds x {args.steps} steps\n"
    )
    print("| model | quantizer | step (ms) | relative to FP |")
    print("|---|---|---|---|")
    for workload_name, result in results.items():
        fp = result["median_step_s"]["fp"]
        for variant, seconds in result["median_step_s"].items():
            print(f"| {workload_name} | {variant} | {1000 * seconds:.2f} | {seconds / fp:.2f}x |")
    payload = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": platform.platform(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "results": results,
    }
    args.out.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
