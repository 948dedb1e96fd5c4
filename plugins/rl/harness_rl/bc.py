"""Behavior cloning: regress the dataset's actions from its observations (optionally the best trajectories).

Reference and defaults: CORL ``algorithms/offline/any_percent_bc.py`` (Tarasov et al., "CORL: Research-oriented
Deep Offline Reinforcement Learning Library", https://arxiv.org/abs/2210.07105). ``frac = 1.0`` is CORL's "BC"
and ``frac = 0.1`` its "10% BC" (cloning only the trajectories with the top 10% returns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness import CellContext
from harness_rl.data import normalization, offline_transitions, trajectory_returns
from harness_rl.hyperparameters import config_from_params
from harness_rl.networks import adam, seed_everything
from harness_rl.training import run_protocol, with_torch_threads


@dataclass
class BCConfig:
    batch_size: int = 256  # transitions per gradient step
    learning_rate: float = 3e-4  # Adam learning rate of the actor
    hidden_dim: int = 256  # width of the actor's two hidden layers
    frac: float = 1.0  # fraction of trajectories (best returns first) to clone; CORL's "10% BC" uses 0.1
    normalize: bool = True  # standardize observations with the dataset's mean and std


class Actor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, act_dim),
            nn.Tanh(),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


def keep_best_trajectories(data: dict[str, np.ndarray], frac: float) -> dict[str, np.ndarray]:
    """The transitions of the ``frac`` best trajectories by return (all of them for frac >= 1)."""
    if frac >= 1.0:
        return data
    returns, trajectory_id = trajectory_returns(data)
    keep_count = max(1, round(frac * len(returns)))
    best = np.argsort(-returns, kind="stable")[:keep_count]
    mask = np.isin(trajectory_id, best)
    return {k: v[mask] for k, v in data.items()}


class BCTrainer:
    def __init__(self, obs_dim: int, act_dim: int, obs_mean, obs_std, config: BCConfig, device) -> None:
        self.actor = Actor(obs_dim, act_dim, config.hidden_dim).to(device)
        self.optimizer = adam(self.actor.parameters(), lr=config.learning_rate)
        self.obs_mean = torch.as_tensor(obs_mean, device=device)
        self.obs_std = torch.as_tensor(obs_std, device=device)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        obs = (batch["observations"] - self.obs_mean) / self.obs_std
        loss = F.mse_loss(self.actor(obs), batch["actions"])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"bc_loss": loss.item()}

    @torch.no_grad()
    def policy_action(self, obs: np.ndarray) -> np.ndarray:
        obs_t = torch.as_tensor(obs, device=self.obs_mean.device)
        return self.actor((obs_t - self.obs_mean) / self.obs_std).cpu().numpy()

    def state(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.optimizer.load_state_dict(state["optimizer"])


@with_torch_threads
def run(environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """Harness entry point (offline protocol only): budget ``gradient_steps``, ``eval_every``,
    ``eval_episodes``."""
    config = config_from_params(BCConfig, params)
    seed_everything(context.seed)
    data = keep_best_trajectories(offline_transitions(environment), config.frac)
    obs_dim, act_dim = data["observations"].shape[1], data["actions"].shape[1]
    mean, std = normalization(data, config.normalize)
    trainer = BCTrainer(obs_dim, act_dim, mean, std, config, context.device)
    return run_protocol(trainer, data, environment, context, name="bc", batch_size=config.batch_size)
