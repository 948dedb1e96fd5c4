"""Small pieces every algorithm file uses: evaluation episodes, atomic checkpoints, the outcome dict.

Kept deliberately thin (no base classes): an algorithm file reads top to bottom and calls these by name.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness_rl.registry import COMPILE_MODES

ActFn = Callable[[np.ndarray], np.ndarray]


class TrainingInterrupted(TimeoutError):
    """Training stopped short of its budget because the cell's deadline was near. The checkpoint is written,
    so running the suite again resumes the cell; a partly trained result is never reported as finished."""


def interrupted(name: str, done: int, total: int, unit: str, checkpoint: Any) -> TrainingInterrupted:
    return TrainingInterrupted(
        f"{name}: stopped at {done} of {total} {unit} because the cell's deadline was near; the checkpoint "
        f"{checkpoint} is kept: run the suite again (or raise its timeout_s) to resume from there"
    )


def with_torch_threads(run: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Wrap an algorithm's ``run`` so ``params["threads"] > 0`` sets torch's intra-op threads for the cell
    (restored afterwards). Several torch threads on an oversubscribed CPU spin against each other and can be
    many times slower than one; suites on shared machines set ``threads = 1``."""

    @functools.wraps(run)
    def wrapper(environment: Any, params: Mapping[str, Any], context: Any) -> dict[str, Any]:
        threads = int(params.get("threads", 0) or 0)
        if threads <= 0:
            return run(environment=environment, params=params, context=context)
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return run(environment=environment, params=params, context=context)
        finally:
            torch.set_num_threads(before)

    return wrapper


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
    """``function`` under ``torch.compile(mode=mode)``, or unchanged for mode "off" (``registry.COMPILE``)."""
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


def save_checkpoint(state: Mapping[str, Any], path: Path) -> None:
    """Write ``state`` with torch.save through a temporary file and an atomic rename, so a cell killed while
    writing never leaves a truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(dict(state), tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none yet."""
    path = Path(path)
    if not path.exists():
        return None
    # Our own checkpoints hold only tensors and plain python values, so the safe loader suffices.
    return torch.load(path, map_location=device, weights_only=True)


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return rng.bit_generator.state


def set_rng_state(rng: np.random.Generator, state: Mapping[str, Any]) -> None:
    rng.bit_generator.state = dict(state)


class Evaluator:
    """Periodic evaluation that logs curves to the cell context and remembers them for the outcome.

    The curve points are part of the algorithm's checkpoint (``state()``/``load()``) so a resumed cell
    reports the whole curve, not just the part after the restart.
    """

    def __init__(self, environment: Any, context: Any, episodes: int, seed: int) -> None:
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
            for name in ("return", "normalized_score", "success_rate"):
                if name in point:
                    self.context.log(name, point[name], step)
        return result

    def state(self) -> list[dict[str, float]]:
        return list(self.points)

    def load(self, points: list[dict[str, float]]) -> None:
        self.points = [dict(p) for p in points]
        if self.context is not None:  # replay the curve into this (new) process's context
            for point in self.points:
                for name in ("return", "normalized_score", "success_rate"):
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
    normalize = getattr(evaluator.environment, "normalized_score", None)
    if normalize is not None and returns:
        outcome["normalized_score"] = float(np.mean([normalize(r) for r in returns]))
    if last.get("successes") is not None:
        outcome["success_rate"] = float(np.mean(last["successes"]))
    if extra:
        outcome.update(extra)
    return outcome


def observation_stats(observations: np.ndarray, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std (+eps, CORL's ``compute_mean_std``) for observation normalization."""
    return observations.mean(0).astype(np.float32), (observations.std(0) + eps).astype(np.float32)


def trajectory_ends(data: Mapping[str, np.ndarray]) -> np.ndarray:
    """Indices of the last transition of each trajectory in a qlearning-layout dict.

    qlearning_dataset drops timeouts' rows, so an episode also ends where the next row does not start at this
    row's next observation; ``terminals`` (and ``timeouts`` when present) end one too.
    """
    n = len(data["observations"])
    ends = data["terminals"].reshape(-1) > 0
    if "timeouts" in data:
        ends |= np.asarray(data["timeouts"]).reshape(-1) > 0
    if n > 1:
        ends[:-1] |= np.any(data["next_observations"][:-1] != data["observations"][1:], axis=1)
    ends[-1] = True
    return np.flatnonzero(ends)


def trajectory_returns(data: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(return of each trajectory, trajectory id of each transition)."""
    ends = trajectory_ends(data)
    trajectory_id = np.zeros(len(data["observations"]), np.int64)
    trajectory_id[ends[:-1] + 1] = 1
    trajectory_id = np.cumsum(trajectory_id)
    returns = np.bincount(trajectory_id, weights=data["rewards"].reshape(-1), minlength=len(ends))
    return returns, trajectory_id
