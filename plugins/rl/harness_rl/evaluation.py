"""Evaluation episodes and the outcome dict every algorithm returns.

A policy here is a function from one raw observation to an action in [-1, 1]; :func:`scale_action` maps it to the
environment's Box bounds (the identity for MuJoCo and Meta-World).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from harness import CellContext

ActFn = Callable[[np.ndarray], np.ndarray]
CURVE_NAMES = ("return", "normalized_score", "success_rate")  # what a curve point logs to the cell context


def scale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map a policy action in [-1, 1] to the environment's Box bounds (identity for MuJoCo and Meta-World)."""
    return low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)


def evaluate_policy(
    make_env: Callable[[int], Any],
    act: ActFn,
    episodes: int,
    seed: int,
    max_episode_steps: int | None = None,
) -> dict[str, Any]:
    """Run ``episodes`` deterministic episodes; returns returns, successes (None if the env reports none),
    and environment steps per second (policy time included: it is what an evaluation costs).

    ``act`` maps one observation to an action in [-1, 1]; it is scaled to the env's bounds here.
    Each episode gets its own env seed (``seed + i``) so evaluations are reproducible.
    """
    env = make_env(seed)
    low, high = env.action_space.low, env.action_space.high
    returns: list[float] = []
    successes: list[float] = []
    saw_success = False
    steps = 0
    start = time.perf_counter()
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            total, success, length = 0.0, 0.0, 0
            while True:
                action = act(np.asarray(obs, dtype=np.float32))
                obs, reward, terminated, truncated, info = env.step(scale_action(action, low, high))
                total += float(reward)
                length += 1
                if "success" in info:
                    saw_success = True
                    success = max(success, float(info["success"]))
                if terminated or truncated or (max_episode_steps and length >= max_episode_steps):
                    break
            steps += length
            returns.append(total)
            successes.append(success)
    finally:
        env.close()
    elapsed = time.perf_counter() - start
    return {
        "returns": returns,
        "successes": successes if saw_success else None,
        "env_steps": steps,
        "env_steps_per_s": steps / elapsed if elapsed > 0 else math.nan,
    }


class Evaluator:
    """Periodic evaluation that logs curves to the cell context and remembers them for the outcome.

    The curve points are part of the algorithm's checkpoint (``state()``/``load()``) so a resumed cell
    reports the whole curve, not just the part after the restart.
    """

    def __init__(self, environment: Any, context: CellContext, episodes: int, seed: int) -> None:
        self.environment = environment
        self.context = context
        self.episodes = episodes
        self.seed = seed
        self.points: list[dict[str, float]] = []
        self.last: dict[str, Any] | None = None

    def __call__(self, act: ActFn, step: int, env_steps: int = 0, record: bool = True) -> dict[str, Any]:
        """Evaluate ``act``; with ``record=False`` only the outcome's final figures are set (used to
        re-evaluate a resumed, already finished cell without adding a duplicate curve point)."""
        result = evaluate_policy(
            self.environment.make_env,
            act,
            self.episodes,
            seed=self.seed + 10_000,
            max_episode_steps=getattr(self.environment, "max_episode_steps", None),
        )
        point: dict[str, float] = {
            "step": float(step),
            "env_steps": float(env_steps),
            "return": float(np.mean(result["returns"])),
        }
        normalize = getattr(self.environment, "normalized_score", None)
        if normalize is not None:
            point["normalized_score"] = float(np.mean([normalize(r) for r in result["returns"]]))
        if result["successes"] is not None:
            point["success_rate"] = float(np.mean(result["successes"]))
        self.last = result
        if not record:
            return result
        self.points.append(point)
        if self.context is not None:
            for name in CURVE_NAMES:
                if name in point:
                    self.context.log(name, point[name], step)
        return result

    def state(self) -> list[dict[str, float]]:
        return list(self.points)

    def load(self, points: list[dict[str, float]]) -> None:
        self.points = [dict(p) for p in points]
        if self.context is not None:  # replay the curve into this (new) process's context
            for point in self.points:
                for name in CURVE_NAMES:
                    if name in point:
                        self.context.log(name, point[name], int(point["step"]))


def build_outcome(
    evaluator: Evaluator,
    gradient_steps: int,
    train_seconds: float,
    env_steps: int = 0,
    env_seconds: float = 0.0,
    finished: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The outcome dict every algorithm returns (JSON-serialisable).

    ``gradient_steps_per_s`` and ``env_steps_per_s`` describe training throughput when the algorithm trains
    online; for offline algorithms ``env_steps_per_s`` is the evaluation stepping rate.
    """
    last = evaluator.last or {"returns": [], "successes": None, "env_steps_per_s": math.nan}
    returns = [float(r) for r in last["returns"]]
    outcome: dict[str, Any] = {
        "return_mean": float(np.mean(returns)) if returns else None,
        "eval_returns": returns,
        "gradient_steps": int(gradient_steps),
        "gradient_steps_per_s": gradient_steps / train_seconds if train_seconds > 0 else None,
        "env_steps": int(env_steps),
        "finished": bool(finished),
        "curve": evaluator.points,
    }
    if env_steps and env_seconds > 0:
        outcome["env_steps_per_s"] = env_steps / env_seconds
    else:
        rate = last.get("env_steps_per_s")
        outcome["env_steps_per_s"] = None if rate is None or math.isnan(rate) else float(rate)
    # The final normalized score is the d4rl metric's to compute, from eval_returns and the environment's
    # references: one computation, not one here and another there. Curve points carry it (logged per point).
    if last.get("successes") is not None:
        outcome["success_rate"] = float(np.mean(last["successes"]))
    if extra:
        outcome.update(extra)
    return outcome
