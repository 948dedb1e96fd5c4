"""harness-rlbench: manipulation from demonstrations on RLBench and Meta-World v3.

The hook module is :mod:`harness_rlbench.plugin` (the ``harness`` entry point); the names below are re-exported
from it for convenience. Importing the package imports nothing heavy.
"""

from __future__ import annotations

__version__ = "0.1.0"

from harness_rlbench.plugin import (  # after __version__, which the task modules read
    HARNESS_API_VERSION,
    METAWORLD_TASKS,
    RLBENCH_TASKS,
    harness_environments,
    harness_suites,
)

__all__ = ["HARNESS_API_VERSION", "METAWORLD_TASKS", "RLBENCH_TASKS", "harness_environments", "harness_suites"]
