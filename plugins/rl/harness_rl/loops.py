"""The two training protocols every offline-capable algorithm shares, written once.

* ``offline``: gradient steps on the dataset only (budget ``gradient_steps``), evaluated every ``eval_every``
  gradient steps.
* ``offline-to-online``: the dataset is kept as demonstrations and sampled together with online transitions
  (uniformly over the union, as ARSQ and RLPD-style kick-starting do); one gradient step per environment step,
  budget ``env_steps``, evaluated every ``eval_every`` environment steps.

An algorithm hands in a *trainer*: any object with ``update(batch) -> dict``, ``policy_action(obs) -> action
in [-1, 1]`` (deterministic, raw observation in), ``explore_action(obs, rng) -> action`` (online only),
``state() -> dict`` and ``load(state)``. Both loops checkpoint into ``context.checkpoint_dir`` (resuming a
killed cell), stop and checkpoint when the deadline is near, and return the outcome dict.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from harness_rl.common import (
    Evaluator,
    build_outcome,
    interrupted,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    scale_action,
    set_rng_state,
)
from harness_rl.sac import QLEARNING_KEYS, ReplayBuffer, check_transitions, sample_batch

DEADLINE_MARGIN_S = 30.0  # stop this long before the deadline: room to write the checkpoint and evaluate


def offline_transitions(environment: Any) -> dict[str, np.ndarray]:
    """The environment's dataset (offline-rl) or demonstrations (manipulation), validated."""
    data = getattr(environment, "dataset", None)
    if data is None:
        data = getattr(environment, "demonstrations", None)
    name = getattr(environment, "name", type(environment).__name__)
    if not data or len(data.get("observations", ())) == 0:
        raise ValueError(
            f"environment {name!r} provides no dataset or demonstrations; offline training needs transitions "
            "(for manipulation tasks raise the environment's number of demonstrations)"
        )
    return check_transitions(data, f"dataset of {name!r}")


def to_tensors(data: Mapping[str, np.ndarray], device: str | torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(data[k], device=device) for k in QLEARNING_KEYS}


def train_offline(
    trainer: Any,
    data: Mapping[str, np.ndarray],
    environment: Any,
    context: Any,
    batch_size: int,
    name: str,
    default_gradient_steps: int = 1_000_000,
    checkpoint_every: int = 5_000,
) -> dict[str, Any]:
    """Offline protocol: ``gradient_steps`` updates on uniformly sampled minibatches of ``data``."""
    device = torch.device(context.device)
    tensors = to_tensors(data, device)
    size = len(data["observations"])
    total = int(context.budget_value("gradient_steps", default_gradient_steps))
    eval_every = int(context.budget_value("eval_every", max(total // 10, 1)))
    evaluator = Evaluator(environment, None, int(context.budget_value("eval_episodes", 10)), context.seed)
    generator = torch.Generator(device=device).manual_seed(context.seed)
    path = context.cell_dir() / f"{name}.pt"

    step, update_seconds = 0, 0.0
    state = load_checkpoint(path, device)
    if state is not None:
        trainer.load(state["trainer"])
        step, update_seconds = int(state["step"]), float(state["update_seconds"])
        evaluator.points = [dict(p) for p in state["curve"]]
        generator.set_state(state["generator"].cpu())  # RNG states are CPU byte tensors, even for CUDA
        torch.set_rng_state(state["torch_rng"].cpu())

    def checkpoint() -> None:
        save_checkpoint(
            {
                "trainer": trainer.state(),
                "step": step,
                "update_seconds": update_seconds,
                "curve": evaluator.points,
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
            },
            path,
        )

    finished = True
    while step < total:
        if context.time_left() < DEADLINE_MARGIN_S:
            finished = False
            break
        start = time.perf_counter()
        index = torch.randint(0, size, (batch_size,), device=device, generator=generator)
        trainer.update({k: v[index] for k, v in tensors.items()})
        update_seconds += time.perf_counter() - start
        step += 1
        if step % eval_every == 0 or step == total:
            evaluator(trainer.policy_action, step)
        if step % checkpoint_every == 0:
            checkpoint()
    checkpoint()
    if not finished:
        raise interrupted(name, step, total, "gradient steps", path)
    points = evaluator.points
    evaluator.context = context
    evaluator.load(points)
    if evaluator.last is None:  # resumed after the last evaluation, or interrupted before any
        evaluator(trainer.policy_action, step, record=False)
    return build_outcome(evaluator, step, update_seconds, finished=finished, extra={"protocol": "offline"})


def train_offline_to_online(
    trainer: Any,
    data: Mapping[str, np.ndarray] | None,
    environment: Any,
    context: Any,
    batch_size: int,
    name: str,
    default_env_steps: int = 100_000,
    learning_starts: int = 0,
    checkpoint_every: int = 5_000,
) -> dict[str, Any]:
    """Offline-to-online protocol: act in ``environment.make_env``, one update per environment step on a batch
    drawn uniformly from the dataset (kept whole, never evicted) plus the online replay buffer."""
    device = torch.device(context.device)
    total = int(context.budget_value("env_steps", default_env_steps))
    eval_every = int(context.budget_value("eval_every", max(total // 10, 1)))
    evaluator = Evaluator(environment, None, int(context.budget_value("eval_episodes", 10)), context.seed)
    rng = context.numpy_rng(1)
    env = environment.make_env(context.seed)
    obs_dim = int(np.prod(env.observation_space.shape))
    act_dim = int(np.prod(env.action_space.shape))
    low, high = env.action_space.low, env.action_space.high
    buffer = ReplayBuffer(obs_dim, act_dim, max(total, 1))
    n_demo = 0 if data is None else len(data["observations"])
    path = context.cell_dir() / f"{name}.pt"

    step, gradient_steps, update_seconds, env_seconds, episode_returns = 0, 0, 0.0, 0.0, []
    state = load_checkpoint(path, device)
    if state is not None:
        trainer.load(state["trainer"])
        buffer.load(state["buffer"])
        step, gradient_steps = int(state["step"]), int(state["gradient_steps"])
        update_seconds, env_seconds = float(state["update_seconds"]), float(state["env_seconds"])
        episode_returns = [float(r) for r in state["episode_returns"]]
        evaluator.points = [dict(p) for p in state["curve"]]
        set_rng_state(rng, state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"].cpu())

    def checkpoint() -> None:
        save_checkpoint(
            {
                "trainer": trainer.state(),
                "buffer": buffer.state(),
                "step": step,
                "gradient_steps": gradient_steps,
                "update_seconds": update_seconds,
                "env_seconds": env_seconds,
                "episode_returns": episode_returns,
                "curve": evaluator.points,
                "numpy_rng": rng_state(rng),
                "torch_rng": torch.get_rng_state(),
            },
            path,
        )

    obs, _ = env.reset(seed=context.seed + step)
    episode_return, finished = 0.0, True
    while step < total:
        if context.time_left() < DEADLINE_MARGIN_S:
            finished = False
            break
        start = time.perf_counter()
        if n_demo + buffer.size < learning_starts:
            action = rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
        else:
            action = trainer.explore_action(np.asarray(obs, np.float32), rng)
        next_obs, reward, terminated, truncated, _ = env.step(scale_action(action, low, high))
        buffer.add(obs, action, reward, next_obs, float(terminated), float(truncated))
        episode_return += float(reward)
        obs = next_obs
        step += 1
        if terminated or truncated:
            episode_returns.append(episode_return)
            obs, _ = env.reset()
            episode_return = 0.0
        env_seconds += time.perf_counter() - start
        if n_demo + buffer.size >= max(batch_size, learning_starts):
            start = time.perf_counter()
            trainer.update(sample_batch(buffer, data, batch_size, rng, device))
            update_seconds += time.perf_counter() - start
            gradient_steps += 1
        if step % eval_every == 0 or step == total:
            evaluator(trainer.policy_action, step, env_steps=step)
        if step % checkpoint_every == 0:
            checkpoint()
    env.close()
    checkpoint()
    if not finished:
        raise interrupted(name, step, total, "environment steps", path)
    points = evaluator.points
    evaluator.context = context
    evaluator.load(points)
    if evaluator.last is None:
        evaluator(trainer.policy_action, step, env_steps=step, record=False)
    return build_outcome(
        evaluator,
        gradient_steps,
        update_seconds,
        env_steps=step,
        env_seconds=env_seconds,
        finished=finished,
        extra={"protocol": "offline-to-online", "demonstrations": n_demo, "train_episode_returns": episode_returns},
    )


def config_from_params(config_type: type, params: Mapping[str, Any]) -> Any:
    """Build an algorithm's config dataclass from the cell's params (names that are not fields are ignored)."""
    fields = config_type.__dataclass_fields__
    return config_type(**{k: v for k, v in params.items() if k in fields})
