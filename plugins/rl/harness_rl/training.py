"""One checkpointed training loop for offline, offline-to-online and online training.

* offline (``online=None``): ``total`` gradient steps on minibatches drawn uniformly from ``data``;
* online (``online=Online(make_env, ...)``): ``total`` environment steps, one gradient step per environment step
  once ``learning_starts`` transitions are at hand, on a batch drawn from ``data`` (offline-to-online: the
  dataset, kept whole and never evicted; online SAC: demonstrations; or nothing) together with the replay buffer.

An algorithm hands in a *trainer*: any object with ``update(batch) -> dict``, ``policy_action(obs) -> action in
[-1, 1]`` (deterministic, raw observation in), ``explore_action(obs, rng) -> action`` (online only), ``state() ->
dict`` and ``load(state)``. The loop checkpoints everything needed to resume (trainer, replay buffer, counters,
curve, RNG states) every ``checkpoint_every`` steps and when it stops; it stops when ``should_stop()`` says so (the
cell's deadline is near), evaluates every ``eval_every`` steps, and reports progress.

:func:`train_cell` is the harness side: it reads the budget and the deadline from the cell's context, and raises
:class:`TrainingInterrupted` (with the checkpoint kept) when training could not finish.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import CellContext
from harness_rl.data import ReplayBuffer, sample_batch, to_tensors
from harness_rl.evaluation import Evaluator, build_outcome, scale_action

DEADLINE_MARGIN_S = 30.0  # stop this long before the deadline: room to write the checkpoint and evaluate
PROGRESS_REPORTS = 100  # progress is reported this many times over a run (every total // 100 steps)
CHECKPOINT_FORMAT = 2  # bumped when the checkpoint's layout changes; an older checkpoint is not resumed


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
    def wrapper(environment: Any, params: Mapping[str, Any], context: CellContext) -> dict[str, Any]:
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


@dataclass
class Online:
    """How the loop acts in an environment; without one the loop trains offline on the data alone."""

    make_env: Callable[[int], Any]  # seed -> gymnasium.Env with a Box action space
    learning_starts: int = 0  # transitions at hand (data included) before the first update
    # Before learning_starts: False acts uniformly at random, True samples the trainer's own policy (WSRL's
    # warm-up by the frozen pretrained policy).
    warmup_with_policy: bool = False
    demo_ratio: float = 0.0  # share of each batch from ``data`` (0: uniform over data and online transitions)
    buffer_size: int | None = None  # replay capacity (None: every online transition is kept)
    stop_at_return: float | None = None  # stop once the mean of the last return_window episodes reaches it
    return_window: int = 10


@dataclass
class TrainingResult:
    steps: int  # environment steps online, gradient steps offline (including those before a resume)
    gradient_steps: int
    finished: bool  # False when should_stop() interrupted training (a checkpoint was written)
    stopped_early: bool = False  # stop_at_return was reached
    evaluations: list[dict[str, float]] = field(default_factory=list)  # the points ``evaluate`` returned
    episode_returns: list[float] = field(default_factory=list)  # finished training episodes, in order
    replay_buffer: dict[str, np.ndarray] | None = None  # online transitions, oldest first
    update_seconds: float = 0.0  # time in gradient updates, over all calls (restored on resume)
    env_seconds: float = 0.0  # time stepping the environment and choosing actions, over all calls
    train_seconds: float = 0.0  # wall time of this call's loop


def train(
    trainer: Any,
    data: Mapping[str, np.ndarray] | None,
    *,
    total: int,
    batch_size: int,
    seed: int,
    device: str | torch.device = "cpu",
    online: Online | None = None,
    rng: np.random.Generator | None = None,
    checkpoint_path: Path | None = None,
    checkpoint_every: int = 5_000,
    evaluate: Callable[[int], Mapping[str, float]] | None = None,
    eval_every: int = 0,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[..., Any] | None = None,
    log: Callable[[str, float, int], None] | None = None,
) -> TrainingResult:
    """Train ``trainer`` for ``total`` steps (counting those done before a resume from ``checkpoint_path``).

    ``evaluate(step) -> point`` runs every ``eval_every`` steps and once at the end; ``progress(done, total,
    note=...)`` is called every ``total // PROGRESS_REPORTS`` steps; ``log(name, value, step)`` receives each
    training episode's return and the update's losses every 1000 updates.
    """
    device = torch.device(device)
    rng = np.random.default_rng(seed) if rng is None else rng
    generator = torch.Generator(device=device).manual_seed(seed)  # offline minibatch indices
    n_data = 0 if data is None else len(data["observations"])
    unit = "environment steps" if online else "gradient steps"
    if online is None:
        tensors = to_tensors(data, device)
        env = buffer = None
    else:
        env = online.make_env(seed)
        obs_dim = int(np.prod(env.observation_space.shape))
        act_dim = int(np.prod(env.action_space.shape))
        low, high = env.action_space.low, env.action_space.high
        buffer = ReplayBuffer(obs_dim, act_dim, max(min(online.buffer_size or total, total), 1))
        start_at = max(batch_size, online.learning_starts)

    step, gradient_steps, update_seconds, env_seconds = 0, 0, 0.0, 0.0
    episode_returns: list[float] = []
    evaluations: list[dict[str, float]] = []
    stopped_early = False
    state = load_checkpoint(checkpoint_path, device) if checkpoint_path else None
    if state is not None and state.get("format") == CHECKPOINT_FORMAT:
        trainer.load(state["trainer"])
        step, gradient_steps = int(state["step"]), int(state["gradient_steps"])
        update_seconds, env_seconds = float(state["update_seconds"]), float(state["env_seconds"])
        episode_returns = [float(r) for r in state["episode_returns"]]
        evaluations = [dict(p) for p in state["evaluations"]]
        stopped_early = bool(state["stopped_early"])
        rng.bit_generator.state = dict(state["numpy_rng"])
        generator.set_state(state["generator"].cpu())  # RNG states are CPU byte tensors, even for CUDA
        torch.set_rng_state(state["torch_rng"].cpu())
        if buffer is not None:
            buffer.load(state["buffer"])

    def checkpoint() -> None:
        if checkpoint_path is None:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "trainer": trainer.state(),
            "step": step,
            "gradient_steps": gradient_steps,
            "update_seconds": update_seconds,
            "env_seconds": env_seconds,
            "episode_returns": episode_returns,
            "evaluations": evaluations,
            "stopped_early": stopped_early,
            "numpy_rng": rng.bit_generator.state,
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        if buffer is not None:
            state["buffer"] = buffer.state()
        save_checkpoint(state, checkpoint_path)

    def update(batch: Mapping[str, torch.Tensor]) -> None:
        nonlocal update_seconds, gradient_steps
        start = time.perf_counter()
        info = trainer.update(batch)
        update_seconds += time.perf_counter() - start
        gradient_steps += 1
        if log is not None and gradient_steps % 1000 == 0:
            for name, value in info.items():
                log(name, float(value), step)

    report_every = max(total // PROGRESS_REPORTS, 1)
    if env is not None:
        # A resumed run starts a fresh episode; seeding the reset with the step keeps it reproducible.
        obs, _ = env.reset(seed=seed + step)
        episode_return = 0.0
    finished = True
    loop_start = time.perf_counter()
    while step < total and not stopped_early:
        if should_stop is not None and should_stop():
            finished = False
            break
        if online is None:
            index = torch.randint(0, n_data, (batch_size,), device=device, generator=generator)
            update({k: v[index] for k, v in tensors.items()})
            step += 1
        else:
            start = time.perf_counter()
            if n_data + buffer.size >= online.learning_starts or online.warmup_with_policy:
                action = trainer.explore_action(np.asarray(obs, np.float32), rng)
            else:
                action = rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
            next_obs, reward, terminated, truncated, _ = env.step(scale_action(action, low, high))
            buffer.add(obs, action, reward, next_obs, float(terminated), float(truncated))
            episode_return += float(reward)
            obs = next_obs
            step += 1
            if terminated or truncated:
                episode_returns.append(episode_return)
                if log is not None:
                    log("episode_return", episode_return, step)
                window = episode_returns[-online.return_window :]
                if online.stop_at_return is not None and len(window) == online.return_window:
                    stopped_early = float(np.mean(window)) >= online.stop_at_return
                obs, _ = env.reset()
                episode_return = 0.0
            env_seconds += time.perf_counter() - start
            if n_data + buffer.size >= start_at:
                update(sample_batch(buffer, data, batch_size, rng, device, online.demo_ratio))
        if evaluate is not None and eval_every and step % eval_every == 0:
            evaluations.append(dict(evaluate(step)))
        if progress is not None and (step % report_every == 0 or step == total):
            note = f"{unit}" + (f", return {evaluations[-1]['return']:.1f}" if evaluations else "")
            progress(step, total, note=note)
        if checkpoint_path is not None and step % checkpoint_every == 0:
            checkpoint()
    train_seconds = time.perf_counter() - loop_start
    if finished and evaluate is not None and (not evaluations or evaluations[-1]["step"] != step):
        evaluations.append(dict(evaluate(step)))
    checkpoint()
    if env is not None:
        env.close()
    return TrainingResult(
        steps=step,
        gradient_steps=gradient_steps,
        finished=finished,
        stopped_early=stopped_early,
        evaluations=evaluations,
        episode_returns=episode_returns,
        replay_buffer=None if buffer is None else buffer.as_dict(),
        update_seconds=update_seconds,
        env_seconds=env_seconds,
        train_seconds=train_seconds,
    )


def train_cell(
    trainer: Any,
    data: Mapping[str, np.ndarray] | None,
    environment: Any,
    context: CellContext,
    *,
    name: str,
    batch_size: int,
    online: Online | None = None,
    total: int | None = None,
    default_total: int | None = None,
    rng: np.random.Generator | None = None,
    checkpoint_every: int = 5_000,
    evaluate: bool = True,
) -> tuple[TrainingResult, Evaluator]:
    """Run :func:`train` for one harness cell; returns the result and the evaluator holding the curve.

    Budget keys: ``gradient_steps`` (offline) or ``env_steps`` (online) unless ``total`` is given,
    ``eval_every`` (default a tenth of the run) and ``eval_episodes`` (10). The checkpoint is
    ``<cell_dir>/<name>.pt``. The curve is logged to the context after training, from the checkpointed
    points: a resumed cell then reports the whole curve, not only the part after the restart.
    """
    unit = "environment steps" if online else "gradient steps"
    if total is None:
        key = "env_steps" if online else "gradient_steps"
        total = int(context.budget_value(key, default_total or (100_000 if online else 1_000_000)))
    eval_every = int(context.budget_value("eval_every", max(total // 10, 1)))
    evaluator = Evaluator(environment, None, int(context.budget_value("eval_episodes", 10)), context.seed)

    def evaluate_at(step: int) -> dict[str, float]:
        evaluator(trainer.policy_action, step, env_steps=step if online else 0)
        return evaluator.points[-1]

    path = context.cell_dir() / f"{name}.pt"
    result = train(
        trainer,
        data,
        total=total,
        batch_size=batch_size,
        seed=context.seed,
        device=context.device,
        online=online,
        rng=context.numpy_rng(1) if rng is None else rng,
        checkpoint_path=path,
        checkpoint_every=checkpoint_every,
        evaluate=evaluate_at if evaluate else None,
        eval_every=eval_every,
        should_stop=lambda: context.time_left() < DEADLINE_MARGIN_S,
        # The core's progress channel, where this harness version has one.
        progress=getattr(context, "progress", None),
    )
    if not result.finished:
        raise interrupted(name, result.steps, total, unit, path)
    if evaluate:
        evaluator.context = context
        evaluator.load(result.evaluations)
        if evaluator.last is None:  # resumed after training had already finished: evaluate the final policy
            evaluator(trainer.policy_action, result.steps, env_steps=result.steps if online else 0, record=False)
    return result, evaluator


def run_protocol(
    trainer: Any,
    data: Mapping[str, np.ndarray],
    environment: Any,
    context: CellContext,
    *,
    name: str,
    batch_size: int,
    protocol: str = "offline",
) -> dict[str, Any]:
    """Train an offline-capable algorithm under ``protocol`` and return its outcome.

    ``offline``: ``gradient_steps`` updates on the dataset. ``offline-to-online``: the dataset is kept as
    demonstrations, sampled uniformly together with the online transitions (as ARSQ and RLPD-style
    kick-starting do), one update per environment step, budget ``env_steps``; the checkpoint is ``<name>_o2o``.
    """
    if protocol == "offline":
        result, evaluator = train_cell(trainer, data, environment, context, name=name, batch_size=batch_size)
        return build_outcome(evaluator, result.gradient_steps, result.update_seconds, extra={"protocol": protocol})
    if protocol != "offline-to-online":
        raise ValueError(f"{name}: protocol = {protocol!r}: choose offline or offline-to-online")
    result, evaluator = train_cell(
        trainer, data, environment, context, name=f"{name}_o2o", batch_size=batch_size,
        online=Online(environment.make_env),
    )  # fmt: skip
    return build_outcome(
        evaluator,
        result.gradient_steps,
        result.update_seconds,
        env_steps=result.steps,
        env_seconds=result.env_seconds,
        extra={
            "protocol": protocol,
            "demonstrations": len(data["observations"]),
            "train_episode_returns": result.episode_returns,
        },
    )
