"""Former home of the shared pieces, kept so that scripts importing from it (``benchmarks/``) keep working.

New code imports from the module named for what it is: :mod:`harness_rl.data`, :mod:`harness_rl.training`,
:mod:`harness_rl.evaluation`, :mod:`harness_rl.networks`.
"""

from __future__ import annotations

from harness_rl.data import observation_stats, trajectory_ends, trajectory_returns
from harness_rl.evaluation import ActFn, Evaluator, build_outcome, evaluate_policy, scale_action
from harness_rl.networks import adam, compiled, seed_everything, soft_update
from harness_rl.training import (
    TrainingInterrupted,
    interrupted,
    load_checkpoint,
    save_checkpoint,
    with_torch_threads,
)

__all__ = [
    "ActFn",
    "Evaluator",
    "TrainingInterrupted",
    "adam",
    "build_outcome",
    "compiled",
    "evaluate_policy",
    "interrupted",
    "load_checkpoint",
    "observation_stats",
    "save_checkpoint",
    "scale_action",
    "seed_everything",
    "soft_update",
    "trajectory_ends",
    "trajectory_returns",
    "with_torch_threads",
]
