"""A test-only environment plugin (loaded with ``harness -p harness_rl_testtask``): a tiny ``offline-rl`` task
from real InvertedPendulum-v5 random rollouts, so the rl algorithms can run through the real CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from harness import EnvironmentSpec, Param, hookimpl

HARNESS_API_VERSION = "1.0"
EPISODE_STEPS = 40


def make_inverted_pendulum(seed: int) -> gym.Env:
    return gym.make("InvertedPendulum-v5", max_episode_steps=EPISODE_STEPS)


def random_rollouts(transitions: int, seed: int) -> dict[str, np.ndarray]:
    """qlearning-layout transitions of a uniform random policy (actions in [-1, 1], the env's bounds x3)."""
    env = make_inverted_pendulum(seed)
    rng = np.random.default_rng(seed)
    keys = ("observations", "actions", "rewards", "next_observations", "terminals")
    rows: dict[str, list] = {k: [] for k in keys}
    obs, _ = env.reset(seed=seed)
    while len(rows["rewards"]) < transitions:
        action = rng.uniform(-1, 1, size=1).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action * env.action_space.high)
        for key, value in zip(keys, (obs, action, reward, next_obs, float(terminated)), strict=True):
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

    def make_env(self, seed: int) -> gym.Env:
        return make_inverted_pendulum(seed)

    def normalized_score(self, episode_return: float) -> float:
        return 100.0 * episode_return / EPISODE_STEPS


def make(params: dict[str, Any], context: Any) -> TinyOfflineTask:
    return TinyOfflineTask(dataset=random_rollouts(params["transitions"], seed=0))


@hookimpl
def harness_environments() -> list[EnvironmentSpec]:
    return [
        EnvironmentSpec(
            name="rl-test-inverted-pendulum",
            version="1",
            description="Test-only: random InvertedPendulum-v5 transitions (generated, not D4RL data).",
            task_kind="offline-rl",
            make="harness_rl_testtask:make",
            params=(Param("transitions", 400, "random transitions in the dataset"),),
        )
    ]
