"""harness-rl: reinforcement-learning algorithms for the harness (BC, TD3+BC, IQL, RIQL, ARSQ, SAC, WSRL).

Importing this module imports nothing heavy: the specs name their callables as ``"module:function"`` strings.
"""

from __future__ import annotations

from harness_rl.registry import harness_algorithms, harness_metrics

HARNESS_API_VERSION = "1.0"

__all__ = ["HARNESS_API_VERSION", "harness_algorithms", "harness_metrics"]
