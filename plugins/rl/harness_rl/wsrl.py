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

WSRL reuses SAC's networks and update (``sac.py``); what is its own is the config below and the pretraining
actor loss (:class:`WSRLPretrainer`). Budget: ``gradient_steps`` (pretraining, unless ``pretrain_steps`` is
set), ``env_steps`` (online), ``eval_every`` (env steps), ``eval_episodes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness import CellContext
from harness_rl.data import offline_transitions
from harness_rl.evaluation import build_outcome
from harness_rl.hyperparameters import config_from_params
from harness_rl.networks import seed_everything
from harness_rl.sac import SACTrainer, make_agent
from harness_rl.training import Online, train_cell, with_torch_threads


@dataclass
class WSRLConfig:
    pretrain_steps: int = 0  # offline pretraining gradient steps (0: the budget's gradient_steps)
    warmup_fraction: float = 0.05  # share of env_steps collected by the frozen pretrained policy
    max_warmup_steps: int = 5_000  # cap on the warm-up steps (the paper's 5,000)
    bc_weight: float = 2.5  # alpha of the TD3+BC-style actor regularizer during offline pretraining
    # Online SAC from here on, CleanRL's defaults as in sac.py:
    buffer_size: int = 1_000_000  # online replay capacity (no offline data is kept in it)
    gamma: float = 0.99  # discount factor
    tau: float = 0.005  # Polyak factor of the target critics
    batch_size: int = 256  # transitions per gradient step, offline and online
    policy_lr: float = 3e-4  # actor learning rate
    q_lr: float = 1e-3  # critics' and temperature's learning rate
    policy_frequency: int = 2  # actor updated every this many steps (that many times, as in CleanRL/TD3)
    target_network_frequency: int = 1  # steps between target-critic Polyak updates
    alpha: float = 0.2  # entropy temperature; its initial value when autotuned
    autotune: bool = True  # learn the temperature towards a target entropy of -act_dim
    hidden_dim: int = 256  # width of the two hidden layers of actor and critics


class WSRLPretrainer(SACTrainer):
    """SAC's update with WSRL's offline actor loss: the deliberate deviation from the paper's Cal-QL."""

    def actor_loss(self, log_prob: torch.Tensor, q_pi: torch.Tensor, pi: torch.Tensor, actions: torch.Tensor):
        # TD3+BC: the Q term scaled by bc_weight / mean|Q| (the same weight on any reward scale), plus
        # regression onto the data's actions, which keeps the pretrained actor on the data's support.
        lmbda = self.config.bc_weight / q_pi.abs().mean().detach()
        return (self.alpha * log_prob).mean() - lmbda * q_pi.mean() + F.mse_loss(pi, actions)


def warmup_steps(config: WSRLConfig, env_steps: int) -> int:
    return min(config.max_warmup_steps, round(config.warmup_fraction * env_steps))


@with_torch_threads
def run(environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """Harness entry point: pretrain offline, warm up with the frozen policy, fine-tune online with SAC."""
    config = config_from_params(WSRLConfig, params)
    seed_everything(context.seed)
    data = offline_transitions(environment)
    env = environment.make_env(context.seed)
    low, high = env.action_space.low, env.action_space.high
    env.close()
    obs_dim, act_dim = data["observations"].shape[1], data["actions"].shape[1]
    agent = make_agent(obs_dim, act_dim, low, high, config.hidden_dim, context.device, config.alpha)

    # 1. Offline pretraining, in place on the agent; not evaluated.
    pretraining, _ = train_cell(
        WSRLPretrainer(agent, config),
        data,
        environment,
        context,
        name="wsrl_pretrain",
        batch_size=config.batch_size,
        total=config.pretrain_steps or None,
        evaluate=False,
    )
    # 2. and 3. Warm-up by the frozen policy, then online SAC, with fresh optimizers and target critics copied
    # from the pretrained ones; no offline data retained online (WSRL's point).
    env_steps = int(context.budget_value("env_steps", 100_000))
    warmup = warmup_steps(config, env_steps)
    seed_everything(context.seed)
    online, evaluator = train_cell(
        SACTrainer(agent, config),
        None,
        environment,
        context,
        name="wsrl_online",
        batch_size=config.batch_size,
        online=Online(
            environment.make_env, learning_starts=warmup, warmup_with_policy=True, buffer_size=config.buffer_size
        ),
        total=env_steps,
        rng=np.random.default_rng(context.seed),
        checkpoint_every=10_000,
    )
    return build_outcome(
        evaluator,
        gradient_steps=pretraining.gradient_steps + online.gradient_steps,
        train_seconds=pretraining.update_seconds + online.update_seconds,
        env_steps=online.steps,
        env_seconds=online.env_seconds,
        extra={
            "protocol": "offline-to-online",
            "pretrain_gradient_steps": pretraining.gradient_steps,
            "warmup_steps": warmup,
        },
    )
