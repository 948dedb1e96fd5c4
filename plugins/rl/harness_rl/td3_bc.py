"""TD3+BC: TD3 with a behavior-cloning term on the actor, the Q term scaled by alpha / mean|Q|.

Paper: Fujimoto & Gu, "A Minimalist Approach to Offline Reinforcement Learning", 2021,
https://arxiv.org/abs/2106.06860. Reference implementation and defaults: CORL ``algorithms/offline/td3_bc.py``.
Protocols: ``offline`` (dataset only) and ``offline-to-online`` (dataset mixed into online training, Gaussian
exploration noise ``expl_noise``).
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
from harness_rl.data import normalization, offline_transitions
from harness_rl.hyperparameters import CompileMode, Protocol, config_from_params
from harness_rl.networks import adam, compiled, mlp, seed_everything, soft_update
from harness_rl.training import run_protocol, with_torch_threads


@dataclass
class TD3BCConfig:
    protocol: Protocol = "offline"  # offline (budget gradient_steps) or offline-to-online (budget env_steps)
    batch_size: int = 256  # transitions per gradient step
    discount: float = 0.99  # discount factor gamma
    tau: float = 0.005  # Polyak factor of the target networks
    actor_lr: float = 3e-4  # Adam learning rate of the actor
    critic_lr: float = 3e-4  # Adam learning rate of the twin critics
    hidden_dim: int = 256  # width of the two hidden layers of actor and critics
    policy_noise: float = 0.2  # std of the target policy smoothing noise
    noise_clip: float = 0.5  # clip of the target policy smoothing noise
    policy_freq: int = 2  # actor and target updates every this many critic updates
    alpha: float = 2.5  # weight of the Q term relative to BC (lambda = alpha / mean|Q|)
    normalize: bool = True  # standardize observations with the dataset's mean and std
    expl_noise: float = 0.1  # std of the Gaussian exploration noise (offline-to-online only)
    compile: CompileMode = "off"  # torch.compile the losses: off (eager), default, reduce-overhead, max-autotune


class Critic(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.net = mlp(obs_dim + act_dim, 1, hidden_dim)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], -1))


class TD3BCTrainer:
    def __init__(self, obs_dim: int, act_dim: int, obs_mean, obs_std, config: TD3BCConfig, device) -> None:
        self.config = config
        self.actor = nn.Sequential(mlp(obs_dim, act_dim, config.hidden_dim), nn.Tanh()).to(device)
        self.critic1 = Critic(obs_dim, act_dim, config.hidden_dim).to(device)
        self.critic2 = Critic(obs_dim, act_dim, config.hidden_dim).to(device)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic1_target = copy.deepcopy(self.critic1)
        self.critic2_target = copy.deepcopy(self.critic2)
        self.actor_optimizer = adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optimizer = adam([*self.critic1.parameters(), *self.critic2.parameters()], lr=config.critic_lr)
        self.obs_mean = torch.as_tensor(obs_mean, device=device)
        self.obs_std = torch.as_tensor(obs_std, device=device)
        self.steps = 0
        self.target_pairs = (
            (self.critic1, self.critic1_target),
            (self.critic2, self.critic2_target),
            (self.actor, self.actor_target),
        )
        self.compute_critic_loss = compiled(self.critic_loss, config.compile)
        self.compute_actor_loss = compiled(self.actor_loss, config.compile)

    def critic_loss(self, obs, actions, rewards, terminals, next_obs, noise) -> torch.Tensor:
        cfg = self.config
        with torch.no_grad():
            # Target policy smoothing (TD3): clipped noise on the target action.
            noise = (noise * cfg.policy_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
            next_actions = (self.actor_target(next_obs) + noise).clamp(-1.0, 1.0)
            target_q = torch.min(
                self.critic1_target(next_obs, next_actions), self.critic2_target(next_obs, next_actions)
            )
            target_q = rewards + (1.0 - terminals) * cfg.discount * target_q
        return F.mse_loss(self.critic1(obs, actions), target_q) + F.mse_loss(self.critic2(obs, actions), target_q)

    def actor_loss(self, obs, actions) -> torch.Tensor:
        pi = self.actor(obs)
        q = self.critic1(obs, pi)
        # lambda normalizes the Q term by its scale so alpha means the same on every dataset.
        lmbda = self.config.alpha / q.abs().mean().detach()
        return -lmbda * q.mean() + F.mse_loss(pi, actions)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One critic step, and every ``policy_freq`` steps one actor step and the target updates; returns the
        losses as detached tensors (reading them with ``.item()`` would wait for the GPU on every step)."""
        obs = (batch["observations"] - self.obs_mean) / self.obs_std
        next_obs = (batch["next_observations"] - self.obs_mean) / self.obs_std
        actions, rewards, terminals = batch["actions"], batch["rewards"][:, None], batch["terminals"][:, None]
        self.steps += 1
        # The smoothing noise is drawn outside the compiled code so both modes consume torch's RNG alike.
        noise = torch.randn_like(actions)
        critic_loss = self.compute_critic_loss(obs, actions, rewards, terminals, next_obs, noise)
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()
        info = {"critic_loss": critic_loss.detach()}

        if self.steps % self.config.policy_freq == 0:
            # After the critic step, as TD3: the actor climbs the freshly updated critic.
            actor_loss = self.compute_actor_loss(obs, actions)
            self.actor_optimizer.zero_grad()
            actor_loss.backward()
            self.actor_optimizer.step()
            soft_update(self.target_pairs, self.config.tau)
            info["actor_loss"] = actor_loss.detach()
        return info

    @torch.no_grad()
    def policy_action(self, obs: np.ndarray) -> np.ndarray:
        obs_t = torch.as_tensor(obs, device=self.obs_mean.device)
        return self.actor((obs_t - self.obs_mean) / self.obs_std).cpu().numpy()

    def explore_action(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        action = self.policy_action(obs)
        noise = rng.normal(0.0, self.config.expl_noise, size=action.shape)
        return np.clip(action + noise, -1.0, 1.0).astype(np.float32)

    def state(self) -> dict[str, Any]:
        names = ("actor", "critic1", "critic2", "actor_target", "critic1_target", "critic2_target")
        state = {n: getattr(self, n).state_dict() for n in names}
        state["actor_optimizer"] = self.actor_optimizer.state_dict()
        state["critic_optimizer"] = self.critic_optimizer.state_dict()
        state["steps"] = self.steps
        return state

    def load(self, state: dict[str, Any]) -> None:
        for name in ("actor", "critic1", "critic2", "actor_target", "critic1_target", "critic2_target"):
            getattr(self, name).load_state_dict(state[name])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.steps = int(state["steps"])


@with_torch_threads
def run(environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """Harness entry point; ``params["protocol"]`` is ``offline`` or ``offline-to-online``."""
    config = config_from_params(TD3BCConfig, params)
    seed_everything(context.seed)
    data = offline_transitions(environment)
    obs_dim, act_dim = data["observations"].shape[1], data["actions"].shape[1]
    mean, std = normalization(data, config.normalize)
    trainer = TD3BCTrainer(obs_dim, act_dim, mean, std, config, context.device)
    return run_protocol(
        trainer, data, environment, context, name="td3_bc", batch_size=config.batch_size, protocol=config.protocol
    )
