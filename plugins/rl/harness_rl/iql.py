"""Implicit Q-Learning: expectile regression of V on in-sample Q, advantage-weighted regression for the actor.

Paper: Kostrikov, Nair & Levine, "Offline Reinforcement Learning with Implicit Q-Learning", 2021,
https://arxiv.org/abs/2110.06169. Reference implementation and defaults: CORL ``algorithms/offline/iql.py``
(its locomotion settings: beta 3, expectile 0.7, observation normalization, rewards scaled by
1000 / (max return - min return), cosine-annealed actor learning rate).
Protocols: ``offline`` and ``offline-to-online`` (dataset mixed into online training, actions sampled from
the Gaussian policy).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness import CellContext
from harness_rl.data import normalization, offline_transitions, trajectory_returns
from harness_rl.hyperparameters import CompileMode, Protocol, config_from_params
from harness_rl.networks import adam, compiled, mlp, seed_everything, soft_update
from harness_rl.training import run_protocol, with_torch_threads

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
EXP_ADV_MAX = 100.0  # clip of exp(beta * advantage): keeps the actor's weights finite


@dataclass
class IQLConfig:
    protocol: Protocol = "offline"  # offline (budget gradient_steps) or offline-to-online (budget env_steps)
    batch_size: int = 256  # transitions per gradient step
    discount: float = 0.99  # discount factor gamma
    tau: float = 0.005  # Polyak factor of the target Q networks
    beta: float = 3.0  # inverse temperature of advantage-weighted regression
    iql_tau: float = 0.7  # expectile of the value regression
    vf_lr: float = 3e-4  # value-network learning rate
    qf_lr: float = 3e-4  # Q-networks learning rate
    actor_lr: float = 3e-4  # actor learning rate (cosine-annealed to 0 over the budget)
    hidden_dim: int = 256  # width of the two hidden layers of every network
    normalize: bool = True  # standardize observations with the dataset's mean and std
    normalize_reward: bool = True  # scale rewards by 1000 / (max - min trajectory return)
    compile: CompileMode = "off"  # torch.compile the losses: off (eager), default, reduce-overhead, max-autotune


class GaussianPolicy(nn.Module):
    """Tanh mean, state-independent log std (CORL's IQL actor)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden_dim)
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def forward(self, obs: torch.Tensor) -> torch.distributions.Normal:
        mean = torch.tanh(self.net(obs))
        return torch.distributions.Normal(mean, self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp())


class TwinQ(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.q1 = mlp(obs_dim + act_dim, 1, hidden_dim)
        self.q2 = mlp(obs_dim + act_dim, 1, hidden_dim)

    def both(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = torch.cat([obs, action], -1)
        return self.q1(inputs).squeeze(-1), self.q2(inputs).squeeze(-1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return torch.min(*self.both(obs, action))


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric L2: weight ``expectile`` above zero, ``1 - expectile`` below."""
    weight = torch.abs(expectile - (diff < 0).float())
    return torch.mean(weight * diff**2)


def reward_scale(data: dict[str, np.ndarray]) -> float:
    """CORL's locomotion reward normalization factor 1000 / (max - min trajectory return)."""
    returns, _ = trajectory_returns(data)
    spread = float(returns.max() - returns.min()) if len(returns) > 1 else 0.0
    return 1000.0 / spread if spread > 0 else 1.0


class IQLTrainer:
    def __init__(
        self, obs_dim: int, act_dim: int, obs_mean, obs_std, config: IQLConfig, max_steps: int, device
    ) -> None:
        self.config = config
        self.qf = TwinQ(obs_dim, act_dim, config.hidden_dim).to(device)
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
        self.optimizers = (self.v_optimizer, self.q_optimizer, self.actor_optimizer)
        self.compute_losses = compiled(self.losses, config.compile)

    def losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Value, Q and actor losses, all from the parameters before this step's updates (as CORL computes
        them): each loss reaches only its own network, so one backward of their sum gives each optimizer the
        gradient CORL's three separate backward passes give."""
        cfg = self.config
        obs = (batch["observations"] - self.obs_mean) / self.obs_std
        next_obs = (batch["next_observations"] - self.obs_mean) / self.obs_std
        actions = batch["actions"]
        rewards, terminals = batch["rewards"] * self.reward_scale, batch["terminals"]
        with torch.no_grad():
            next_v = self.vf(next_obs).squeeze(-1)
            target_q = self.q_target(obs, actions)
        # Value: an upper expectile of Q over the dataset's actions, never querying unseen actions.
        v = self.vf(obs).squeeze(-1)
        advantage = target_q - v
        v_loss = expectile_loss(advantage, cfg.iql_tau)

        targets = rewards + (1.0 - terminals) * cfg.discount * next_v
        q1, q2 = self.qf.both(obs, actions)
        q_loss = (F.mse_loss(q1, targets) + F.mse_loss(q2, targets)) / 2

        exp_advantage = torch.exp(cfg.beta * advantage.detach()).clamp(max=EXP_ADV_MAX)
        bc_losses = -self.actor(obs).log_prob(actions).sum(-1)
        actor_loss = torch.mean(exp_advantage * bc_losses)
        return v_loss, q_loss, actor_loss

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient step of value, Q and actor; returns the losses as detached tensors (reading them with
        ``.item()`` would wait for the GPU on every step)."""
        v_loss, q_loss, actor_loss = self.compute_losses(batch)
        for optimizer in self.optimizers:
            optimizer.zero_grad()
        (v_loss + q_loss + actor_loss).backward()
        for optimizer in self.optimizers:
            optimizer.step()
        self.actor_schedule.step()
        soft_update([(self.qf, self.q_target)], self.config.tau)
        return {"v_loss": v_loss.detach(), "q_loss": q_loss.detach(), "actor_loss": actor_loss.detach()}

    @torch.no_grad()
    def policy_action(self, obs: np.ndarray) -> np.ndarray:
        obs_t = torch.as_tensor(obs, device=self.obs_mean.device)
        return self.actor((obs_t - self.obs_mean) / self.obs_std).mean.clamp(-1, 1).cpu().numpy()

    @torch.no_grad()
    def explore_action(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        obs_t = torch.as_tensor(obs, device=self.obs_mean.device)
        return self.actor((obs_t - self.obs_mean) / self.obs_std).sample().clamp(-1, 1).cpu().numpy()

    def state(self) -> dict[str, Any]:
        names = ("qf", "q_target", "vf", "actor", "v_optimizer", "q_optimizer", "actor_optimizer")
        state = {n: getattr(self, n).state_dict() for n in names}
        state["actor_schedule"] = self.actor_schedule.state_dict()
        return state

    def load(self, state: dict[str, Any]) -> None:
        names = ("qf", "q_target", "vf", "actor", "v_optimizer", "q_optimizer", "actor_optimizer")
        for name in names:
            getattr(self, name).load_state_dict(state[name])
        self.actor_schedule.load_state_dict(state["actor_schedule"])


@with_torch_threads
def run(environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """Harness entry point; ``params["protocol"]`` is ``offline`` or ``offline-to-online``."""
    config = config_from_params(IQLConfig, params)
    seed_everything(context.seed)
    data = offline_transitions(environment)
    obs_dim, act_dim = data["observations"].shape[1], data["actions"].shape[1]
    mean, std = normalization(data, config.normalize)
    online = config.protocol == "offline-to-online"
    budget = context.budget_value("env_steps" if online else "gradient_steps", 1_000_000)
    trainer = IQLTrainer(obs_dim, act_dim, mean, std, config, int(budget), context.device)
    if config.normalize_reward:
        trainer.reward_scale = reward_scale(data)
    return run_protocol(
        trainer, data, environment, context, name="iql", batch_size=config.batch_size, protocol=config.protocol
    )
