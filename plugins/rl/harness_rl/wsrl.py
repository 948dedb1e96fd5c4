"""WSRL: warm-start online RL from an offline-pretrained agent, without retaining the offline data.

Paper: Zhou, Peng, Li, Levine & Kumar, "Efficient Online Reinforcement Learning Fine-Tuning Need Not Retain
Offline Data", 2024, https://arxiv.org/abs/2412.07762. Three phases:

1. offline pretraining of a SAC actor, twin critics and temperature on the dataset. The paper pretrains with
   Cal-QL; here the critic is SAC's and the actor carries a TD3+BC-style regularizer (``bc_weight`` / mean|Q|
   on Q plus regression onto the data's actions) so that it stays on the data's support; this is the one
   deliberate deviation;
2. warm-up: the frozen pretrained policy collects ``warmup_steps`` online transitions (5,000 in the paper;
   here ``warmup_fraction`` of the env-step budget, capped at ``max_warmup_steps``) into an empty buffer,
   re-calibrating the critic to online data before any update;
3. online SAC (CleanRL defaults, ``sac.py``) from the pretrained weights with no offline data in the buffer.

Budget: ``gradient_steps`` (pretraining, unless ``pretrain_steps`` is set), ``env_steps`` (online),
``eval_every`` (env steps), ``eval_episodes``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from harness_rl.common import (
    Evaluator,
    build_outcome,
    interrupted,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    with_torch_threads,
)
from harness_rl.loops import DEADLINE_MARGIN_S, config_from_params, offline_transitions, to_tensors
from harness_rl.sac import SACAgent, SACConfig, SACTrainer, make_agent, train_sac


def pretrain_offline(
    agent: SACAgent,
    data: dict[str, np.ndarray],
    config: SACConfig,
    steps: int,
    bc_weight: float,
    context: Any,
    checkpoint_every: int = 5_000,
) -> tuple[int, float, bool]:
    """Phase 1 in place on ``agent``; returns (gradient steps done, seconds spent, finished)."""
    device = torch.device(context.device)
    tensors = to_tensors(data, device)
    trainer = SACTrainer(agent, config)
    trainer.bc_weight = bc_weight
    generator = torch.Generator(device=device).manual_seed(context.seed)
    path = context.cell_dir() / "wsrl_pretrain.pt"
    step, seconds = 0, 0.0
    state = load_checkpoint(path, device)
    if state is not None:
        trainer.load(state["trainer"])
        step, seconds = int(state["step"]), float(state["seconds"])
        generator.set_state(state["generator"].cpu())

    def checkpoint() -> None:
        save_checkpoint(
            {"trainer": trainer.state(), "step": step, "seconds": seconds, "generator": generator.get_state()}, path
        )

    finished = True
    while step < steps:
        if context.time_left() < DEADLINE_MARGIN_S:
            finished = False
            break
        start = time.perf_counter()
        index = torch.randint(0, len(data["observations"]), (config.batch_size,), device=device, generator=generator)
        trainer.update({k: v[index] for k, v in tensors.items()})
        seconds += time.perf_counter() - start
        step += 1
        if step % checkpoint_every == 0:
            checkpoint()
    checkpoint()
    return step, seconds, finished


@with_torch_threads
def run(environment: Any, params: dict[str, Any], context: Any) -> dict[str, Any]:
    """Harness entry point: pretrain offline, warm up with the frozen policy, fine-tune online with SAC."""
    config = config_from_params(SACConfig, params)
    seed_everything(context.seed)
    data = offline_transitions(environment)
    env = environment.make_env(context.seed)
    low, high = env.action_space.low, env.action_space.high
    env.close()
    obs_dim, act_dim = data["observations"].shape[1], data["actions"].shape[1]
    agent = make_agent(obs_dim, act_dim, low, high, config.hidden_dim, context.device, config.alpha)

    pretrain_steps = int(params.get("pretrain_steps") or context.budget_value("gradient_steps", 1_000_000))
    done, pretrain_seconds, finished = pretrain_offline(
        agent, data, config, pretrain_steps, float(params.get("bc_weight", 2.5)), context
    )
    env_steps = int(context.budget_value("env_steps", 100_000))
    warmup_steps = min(
        int(params.get("max_warmup_steps", 5000)), round(float(params.get("warmup_fraction", 0.05)) * env_steps)
    )
    evaluator = Evaluator(environment, None, int(context.budget_value("eval_episodes", 10)), context.seed)
    eval_every = int(context.budget_value("eval_every", max(env_steps // 10, 1)))

    def evaluate(trained: SACAgent, step: int) -> dict[str, float]:
        evaluator(trained.policy_action, step, env_steps=step)
        return evaluator.points[-1]

    if not finished:
        raise interrupted("wsrl pretraining", done, pretrain_steps, "gradient steps", context.cell_dir())
    result = train_sac(
        environment.make_env,
        total_steps=env_steps,
        seed=context.seed,
        checkpoint_path=context.cell_dir() / "wsrl_online.pt",
        demonstrations=None,  # WSRL's point: no offline data retained online
        device=context.device,
        config=config,
        initial_agent=agent,
        warmup_steps=warmup_steps,
        evaluate=evaluate,
        eval_every=eval_every,
        should_stop=lambda: context.time_left() < DEADLINE_MARGIN_S,
    )
    if not result.finished:
        raise interrupted("wsrl online", result.env_steps, env_steps, "environment steps", context.cell_dir())
    evaluator.context = context
    evaluator.load(result.evaluations)
    if evaluator.last is None:  # resumed after the online phase had already finished
        evaluator(agent.policy_action, result.env_steps, env_steps=result.env_steps, record=False)
    return build_outcome(
        evaluator,
        gradient_steps=done + result.gradient_steps,
        train_seconds=pretrain_seconds + result.update_seconds,
        env_steps=result.env_steps,
        env_seconds=result.env_seconds,
        finished=True,
        extra={"protocol": "offline-to-online", "pretrain_gradient_steps": done, "warmup_steps": warmup_steps},
    )
