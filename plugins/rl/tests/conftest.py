"""Fixtures: a tiny task matching the ``offline-rl`` contract, built from real InvertedPendulum-v5 rollouts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness import CellContext

# The task lives in a module that is also a test-only harness plugin (see test_rl_cli.py).
sys.path.insert(0, str(Path(__file__).parent))
from harness_rl_testtask import TinyOfflineTask, random_rollouts

# The networks in these tests are tiny: one thread avoids oversubscribing a shared CPU, which costs far more
# than it gains.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dataset() -> dict[str, np.ndarray]:
    return random_rollouts(600, seed=0)


@pytest.fixture
def tiny_task(tiny_dataset) -> TinyOfflineTask:
    return TinyOfflineTask(dataset={k: v.copy() for k, v in tiny_dataset.items()})


@pytest.fixture
def make_context(tmp_path):
    def make(budget: dict[str, Any], seed: int = 0, name: str = "cell") -> CellContext:
        return CellContext(
            seed=seed, budget=budget, checkpoint_dir=tmp_path / name / "ck", cache_dir=tmp_path / "cache"
        )

    return make
