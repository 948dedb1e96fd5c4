"""The fine-tuning loop shared by the quantization-aware quantizers (STE, LSQ, QuEST).

It is the same loop for all three so that "equal training steps" means equal: AdamW at a constant learning
rate, gradient clipping at 1, the environment's own loss and batches. The quantizer decides only the forward
(fake quantization) and the backward (its gradient estimator).
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from harness import CellContext
from harness_quant.workload import QuantWorkload


def finetune(
    model: nn.Module, workload: QuantWorkload, steps: int, lr: float, context: CellContext, stream: int = 7
) -> dict[str, float]:
    """Train ``model`` (already fake-quantized) for ``steps`` steps; returns final loss and seconds per step.

    Raises ``FloatingPointError`` as soon as the loss is not finite: a diverged run is a failed cell, not a
    number.
    """
    rng = context.numpy_rng(stream)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    progress = getattr(context, "progress", None)
    for step in range(steps):
        if progress is not None:
            progress(step, steps, "QAT fine-tuning")
        loss = workload.loss(model, workload.train_batch(rng))
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"QAT loss became {value} at step {step} on {workload.name}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        losses.append(value)
        if step % 25 == 0 or step == steps - 1:
            context.log("qat_loss", losses[-1], step)
    seconds = time.perf_counter() - start
    model.eval()
    tail = losses[-max(1, len(losses) // 10) :] if losses else [float("nan")]
    return {
        "qat_steps": float(steps),
        "qat_final_loss": float(sum(tail) / len(tail)),
        "qat_step_time_s": seconds / steps if steps else 0.0,
    }
