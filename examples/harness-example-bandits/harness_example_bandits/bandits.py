"""The bandit, the two algorithms and the two metrics, as plain functions the specs name.

Every random draw comes from ``context.numpy_rng(stream)``, which is seeded by the cell's seed: the same seed
gives the same arms, the same pulls and the same metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


class BernoulliBandit:
    """Arms that pay 1 with probability ``means[arm]``, else 0; counts every pull for the metrics."""

    def __init__(self, means: np.ndarray, rng: np.random.Generator) -> None:
        self.means = means
        self.n_arms = len(means)
        self.pulls = np.zeros(self.n_arms, dtype=np.int64)
        self._rng = rng

    def pull(self, arm: int) -> float:
        self.pulls[arm] += 1
        return float(self._rng.random() < self.means[arm])


def make_bernoulli_bandit(*, params: Mapping[str, Any], context: Any) -> BernoulliBandit:
    arms, gap = params["arms"], params["gap"]
    if arms < 2:
        raise ValueError(f"bandit-bernoulli needs at least 2 arms, got arms={arms}")
    if not 0.0 < gap < 1.0:
        raise ValueError(f"bandit-bernoulli gap must lie in (0, 1), got gap={gap}")
    rng = context.numpy_rng(stream=0)
    # Second-best and worse arms lie below 1 - gap, so the best arm (second best + gap) is a probability.
    means = rng.uniform(0.0, 1.0 - gap, size=arms)
    best = int(rng.integers(arms))
    means[best] = np.max(np.delete(means, best)) + gap
    return BernoulliBandit(means, context.numpy_rng(stream=1))


def _steps(context: Any) -> int:
    # The suite's profiles set the budget; 1000 pulls when run without one.
    return int(context.budget_value("env_steps", 1000))


def _outcome(environment: BernoulliBandit, total_reward: float) -> dict[str, Any]:
    return {"steps": int(environment.pulls.sum()), "total_reward": total_reward, "pulls": environment.pulls.tolist()}


def run_epsilon_greedy(*, environment: BernoulliBandit, params: Mapping[str, Any], context: Any) -> dict[str, Any]:
    epsilon = params["epsilon"]
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"bandit-epsilon-greedy epsilon must lie in [0, 1], got epsilon={epsilon}")
    rng = context.numpy_rng(stream=2)
    counts = np.zeros(environment.n_arms)
    sums = np.zeros(environment.n_arms)
    total = 0.0
    for step in range(_steps(context)):
        if step < environment.n_arms:
            arm = step  # pull every arm once so the estimates exist
        elif rng.random() < epsilon:
            arm = int(rng.integers(environment.n_arms))
        else:
            arm = int(np.argmax(sums / counts))
        reward = environment.pull(arm)
        counts[arm] += 1
        sums[arm] += reward
        total += reward
    return _outcome(environment, total)


def run_ucb1(*, environment: BernoulliBandit, params: Mapping[str, Any], context: Any) -> dict[str, Any]:
    exploration = params["exploration"]
    if exploration < 0:
        raise ValueError(f"bandit-ucb1 exploration must be non-negative, got exploration={exploration}")
    counts = np.zeros(environment.n_arms)
    sums = np.zeros(environment.n_arms)
    total = 0.0
    for step in range(_steps(context)):
        if step < environment.n_arms:
            arm = step
        else:
            bounds = sums / counts + np.sqrt(exploration * math.log(step) / counts)
            arm = int(np.argmax(bounds))
        reward = environment.pull(arm)
        counts[arm] += 1
        sums[arm] += reward
        total += reward
    return _outcome(environment, total)


def regret(*, outcome: Mapping[str, Any], environment: BernoulliBandit, context: Any = None) -> float | None:
    pulls = outcome.get("pulls")
    if pulls is None:
        return None
    pulls = np.asarray(pulls)
    return float(pulls.sum() * environment.means.max() - pulls @ environment.means)


def best_arm_fraction(*, outcome: Mapping[str, Any], environment: BernoulliBandit, context: Any = None) -> float | None:
    pulls = outcome.get("pulls")
    if not pulls:
        return None
    return float(pulls[int(np.argmax(environment.means))] / sum(pulls))
