"""A tiny task matching the ``offline-rl`` contract, built from real InvertedPendulum-v5 rollouts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from harness import CellContext

# The networks in these tests are tiny: one thread avoids oversubscribing a shared CPU, which costs far more
# than it gains.
torch.set_num_threads(1)

EPISODE_STEPS = 40


def make_inverted_pendulum(seed: int) -> gym.Env:
    return gym.make("InvertedPendulum-v5", max_episode_steps=EPISODE_STEPS)


def random_rollouts(transitions: int, seed: int) -> dict[str, np.ndarray]:
    """qlearning-layout transitions of a uniform random policy (actions rescaled to [-1, 1])."""
    env = make_inverted_pendulum(seed)
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminals")}
    obs, _ = env.reset(seed=seed)
    while len(rows["rewards"]) < transitions:
        action = rng.uniform(-1, 1, size=1).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action * env.action_space.high)
        for key, value in zip(rows, (obs, action, reward, next_obs, float(terminated)), strict=True):
            rows[key].append(value)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return {k: np.asarray(v, dtype=np.float32) for k, v in rows.items()}


@dataclass
class TinyOfflineTask:
    """The ``offline-rl`` contract: dataset, make_env, normalized_score, dims, episode length, name."""

    dataset: dict[str, np.ndarray]
    name: str = "inverted-pendulum-random-tiny"
    observation_dim: int = 4
    action_dim: int = 1
    max_episode_steps: int = EPISODE_STEPS
    extra: dict[str, Any] = field(default_factory=dict)

    def make_env(self, seed: int) -> gym.Env:
        return make_inverted_pendulum(seed)

    def normalized_score(self, episode_return: float) -> float:
        return 100.0 * episode_return / EPISODE_STEPS


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
