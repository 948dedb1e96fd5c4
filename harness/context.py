"""The context the runner hands to every environment, algorithm and metric of one cell.

It carries everything a plugin needs from the harness, so that no plugin imports MLflow, Ray or the runner:
the seed, the device, the profile's budget, a deadline, a checkpoint folder that survives a crash of the
cell, a shared cache folder and a function to log curves.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class CellContext:
    """Per-cell facts and services.

    Attributes:
        seed: the cell's seed; python, numpy and torch are already seeded with it when ``make`` is called.
        device: ``"cpu"`` or ``"cuda"``: ``"cuda"`` for a spec needing GPUs (``Resources(gpus=1)``), and for one
            that can use a GPU (``Resources(uses_gpu=True)``) when the run's ``--device`` allows it and a GPU
            is visible; move models and tensors there.
        budget: the profile's budget, free-form (for example ``{"gradient_steps": 1000, "eval_episodes": 5}``);
            plugins read the keys they understand and fall back to their own defaults.
        profile: the name of the budget profile (``smoke``, ``short``, ``full`` or a suite's own).
        deadline: wall-clock time (``time.time()``) after which the runner kills the cell; ``inf`` if none.
        checkpoint_dir: a folder unique to this cell (by cell key) that is kept between attempts, so a long
            cell killed half way can resume from its last checkpoint.
        cache_dir: a folder shared by all cells, for artifacts worth reusing across cells (trained
            full-precision models, generated datasets), keyed by the plugin's own config hash.
        cell: names and resolved parameters of the cell (``algorithm``, ``environment``, ``seed``,
            ``algorithm_params``, ``environment_params``, ``key``).
        measurements: free-form values written by ``harness_execute_cell`` wrappers (timers, memory probes)
            for metrics to read.
    """

    seed: int
    device: str = "cpu"
    budget: Mapping[str, Any] = field(default_factory=dict)
    profile: str = "smoke"
    deadline: float = math.inf
    checkpoint_dir: Path = field(default_factory=lambda: Path("results/checkpoints/_"))
    cache_dir: Path = field(default_factory=lambda: Path("results/cache"))
    cell: Mapping[str, Any] = field(default_factory=dict)
    measurements: dict[str, Any] = field(default_factory=dict)
    history: list[tuple[str, int, float]] = field(default_factory=list)
    # The resolved callables of this cell (``make``, ``run``) and the made environment; runner-internal.
    components: dict[str, Any] = field(default_factory=dict, repr=False)

    def log(self, name: str, value: float, step: int) -> None:
        """Record one point of a curve (for example a score over training steps).

        Curves become MLflow metric histories under ``name``; the last value of each curve is also available
        to metrics through ``outcome`` only if the algorithm puts it there.
        """
        self.history.append((str(name), int(step), float(value)))

    def time_left(self) -> float:
        """Seconds until the deadline (``inf`` without one): long loops should stop and checkpoint before it."""
        return self.deadline - time.time()

    def budget_value(self, key: str, default: Any) -> Any:
        """``budget[key]`` if the profile sets it, else ``default``."""
        return self.budget.get(key, default)

    def numpy_rng(self, stream: int = 0) -> Any:
        """A numpy ``Generator`` seeded from the cell's seed and a stream number (independent streams)."""
        import numpy as np

        return np.random.default_rng([self.seed, stream])

    def cell_dir(self) -> Path:
        """The checkpoint folder, created on first use."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        return self.checkpoint_dir
