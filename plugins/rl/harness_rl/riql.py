"""Robust IQL: IQL made robust to corrupted data with a quantile Q ensemble, a Huber Q loss and observation
normalization.

Paper: Yang et al., "Towards Robust Offline Reinforcement Learning under Diverse Data Corruption", ICLR 2024,
https://arxiv.org/abs/2310.12955 (code: github.com/YangRui2015/RIQL). Defaults: the paper's IQL settings
(beta 3, expectile 0.7) with K = 5 critics, quantile 0.25 and Huber delta 1.0; the paper tunes the quantile
(0.1 to 0.25) and delta (0.1 to 1.0) per corruption type, so pass them as params to reproduce a table cell.

What changes from IQL (``iql.py``) and why:
* the value target is the ``quantile`` of K target Q-values instead of the min of two: corrupted
  transitions inflate a few members, a low quantile ignores them;
* the Q loss is Huber with ``huber_delta``: heavy-tailed errors from corrupted rewards or dynamics get linear,
  not quadratic, weight;
* observations are always normalized (corrupted observations would otherwise dominate the scale).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness import CellContext
from harness_rl.data import observation_stats, offline_transitions
from harness_rl.hyperparameters import config_from_params
from harness_rl.iql import EXP_ADV_MAX, GaussianPolicy, expectile_loss, reward_scale
from harness_rl.networks import adam, mlp, seed_everything, soft_update
from harness_rl.training import run_protocol, with_torch_threads


@dataclass
class RIQLConfig:
    batch_size: int = 256  # transitions per gradient step
    discount: float = 0.99  # discount factor gamma
    tau: float = 0.005  # Polyak factor of the target Q ensemble
    beta: float = 3.0  # inverse temperature of advantage-weighted regression
    iql_tau: float = 0.7  # expectile of the value regression
    num_critics: int = 5  # K, Q-ensemble size
    quantile: float = 0.25  # quantile of the K target Q-values used as the value target
    huber_delta: float = 1.0  # delta of the Huber Q loss
    vf_lr: float = 3e-4  # value-network learning rate
    qf_lr: float = 3e-4  # Q-ensemble learning rate
    actor_lr: float = 3e-4  # actor learning rate (cosine-annealed over the budget, as in IQL)
    hidden_dim: int = 256  # width of the two hidden layers of every network
    normalize_reward: bool = True  # scale rewards by 1000 / (max - min trajectory return), as IQL


class VectorizedLinear(nn.Module):
    """K independent linear layers applied in one batched matmul: input (K, B, in) -> (K, B, out)."""

    def __init__(self, inputs: int, outputs: int, members: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, inputs, outputs))
        self.bias = nn.Parameter(torch.empty(members, 1, outputs))
        for member in range(members):  # nn.Linear's default initialization, member by member
            nn.init.kaiming_uniform_(self.weight[member].T, a=math.sqrt(5))
        bound = 1 / math.sqrt(inputs)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


class QEnsemble(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, members: int) -> None:
        super().__init__()
        self.members = members
        self.net = nn.Sequential(
            VectorizedLinear(obs_dim + act_dim, hidden_dim, members),
            nn.ReLU(),
            VectorizedLinear(hidden_dim, hidden_dim, members),
            nn.ReLU(),
            VectorizedLinear(hidden_dim, 1, members),
        )

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q-values of every member, shape (K, B)."""
        inputs = torch.cat([obs, action], -1).unsqueeze(0).expand(self.members, -1, -1)
        return self.net(inputs).squeeze(-1)


class RIQLTrainer:
    def __init__(
        self, obs_dim: int, act_dim: int, obs_mean, obs_std, config: RIQLConfig, max_steps: int, device
    ) -> None:
        self.config = config
        self.qf = QEnsemble(obs_dim, act_dim, config.hidden_dim, config.num_critics).to(device)
        self.q_target = copy.deepcopy(self.qf).requires_grad_(False)
        self.vf = mlp(obs_dim, 1, config.hidden_dim).to(device)
        self.actor = GaussianPolicy(obs_dim, act_dim, config.hidden_dim).to(device)
        self.v_optimizer = adam(self.vf.parameters(), lr=config.vf_lr)
        self.q_optimizer = adam(self.qf.parameters(), lr=config.qf_lr)
        self.actor_optimizer = adam(self.actor.parameters(), lr=config.actor_lr)
        self.actor_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_optimizer, max(max_steps, 1))
        self.obs_mean = torch.as_tensor(obs_mean, device=device)
        self.obs_std = torch.as_tensor(obs_std, device=device)
        self.reward_scale = 1.0

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.config
        obs = (batch["observations"] - self.obs_mean) / self.obs_std
        next_obs = (batch["next_observations"] - self.obs_mean) / self.obs_std
        actions = batch["actions"]
        rewards, terminals = batch["rewards"] * self.reward_scale, batch["terminals"]
        with torch.no_grad():
            next_v = self.vf(next_obs).squeeze(-1)
            target_q = torch.quantile(self.q_target(obs, actions), cfg.quantile, dim=0)
        v = self.vf(obs).squeeze(-1)
        advantage = target_q - v
        v_loss = expectile_loss(advantage, cfg.iql_tau)
        self.v_optimizer.zero_grad()
        v_loss.backward()
        self.v_optimizer.step()

        targets = rewards + (1.0 - terminals) * cfg.discount * next_v
        q_all = self.qf(obs, actions)
        q_loss = F.huber_loss(q_all, targets.unsqueeze(0).expand_as(q_all), delta=cfg.huber_delta)
        self.q_optimizer.zero_grad()
        q_loss.backward()
        self.q_optimizer.step()
        soft_update([(self.qf, self.q_target)], cfg.tau)

        exp_advantage = torch.exp(cfg.beta * advantage.detach()).clamp(max=EXP_ADV_MAX)
        actor_loss = torch.mean(exp_advantage * -self.actor(obs).log_prob(actions).sum(-1))
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()
        self.actor_schedule.step()
        return {"v_loss": v_loss.item(), "q_loss": q_loss.item(), "actor_loss": actor_loss.item()}

    @torch.no_grad()
    def policy_action(self, obs: np.ndarray) -> np.ndarray:
        obs_t = torch.as_tensor(obs, device=self.obs_mean.device)
        return self.actor((obs_t - self.obs_mean) / self.obs_std).mean.clamp(-1, 1).cpu().numpy()

    def state(self) -> dict[str, Any]:
        names = ("qf", "q_target", "vf", "actor", "v_optimizer", "q_optimizer", "actor_optimizer")
        state = {n: getattr(self, n).state_dict() for n in names}
        state["actor_schedule"] = self.actor_schedule.state_dict()
        return state

    def load(self, state: dict[str, Any]) -> None:
        for name in ("qf", "q_target", "vf", "actor", "v_optimizer", "q_optimizer", "actor_optimizer"):
            getattr(self, name).load_state_dict(state[name])
        self.actor_schedule.load_state_dict(state["actor_schedule"])


@with_torch_threads
def run(environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """Harness entry point (offline protocol): budget ``gradient_steps``, ``eval_every``, ``eval_episodes``."""
    config = config_from_params(RIQLConfig, params)
    seed_everything(context.seed)
    data = offline_transitions(environment)
    obs_dim, act_dim = data["observations"].shape[1], data["actions"].shape[1]
    mean, std = observation_stats(data["observations"])
    budget = int(context.budget_value("gradient_steps", 1_000_000))
    trainer = RIQLTrainer(obs_dim, act_dim, mean, std, config, budget, context.device)
    if config.normalize_reward:
        trainer.reward_scale = reward_scale(data)
    return run_protocol(trainer, data, environment, context, name="riql", batch_size=config.batch_size)
