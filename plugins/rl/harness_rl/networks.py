"""Network and optimizer pieces the algorithm files share: the CORL MLP, fused Adam, Polyak averaging,
torch.compile of a loss, seeding."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from harness_rl.hyperparameters import COMPILE_MODES


def mlp(inputs: int, outputs: int, hidden_dim: int) -> nn.Sequential:
    """CORL's network: two hidden ReLU layers of ``hidden_dim``, a linear output."""
    return nn.Sequential(
        nn.Linear(inputs, hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, outputs),
    )


def adam(parameters: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam, with torch's fused kernel where it has one (float parameters on CPU or CUDA): one kernel per step
    for all tensors instead of about ten small ops per tensor, 15-22% more IQL and TD3+BC updates per second
    on a 2-core CPU (benchmarks/RESULTS.md). The same algorithm; it differs from the unfused path by rounding."""
    params = list(parameters)
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused)


@torch.no_grad()
def soft_update(pairs: Iterable[tuple[torch.nn.Module, torch.nn.Module]], tau: float) -> None:
    """Polyak averaging, ``target <- (1 - tau) * target + tau * online`` for every ``(online, target)`` pair:
    the arithmetic of CORL's and CleanRL's per-tensor loop, as two foreach kernels over all tensors."""
    online: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    for net, target in pairs:
        online.extend(net.parameters())
        targets.extend(target.parameters())
    torch._foreach_mul_(targets, 1 - tau)
    torch._foreach_add_(targets, online, alpha=tau)


def compiled(function: Callable[..., Any], mode: str) -> Callable[..., Any]:
    """``function`` under ``torch.compile(mode=mode)``, or unchanged for mode "off" (``CompileMode``)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile = {mode!r}: choose one of {', '.join(COMPILE_MODES)}")
    if mode == "off":
        return function
    # Batches keep one shape for the whole cell: a static graph, no dynamic-shape guards.
    return torch.compile(function, mode=mode, dynamic=False)


def seed_everything(seed: int) -> None:
    """Seed python-independent RNGs the algorithms use (numpy's legacy global and torch)."""
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
