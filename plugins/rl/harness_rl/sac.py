"""Soft Actor-Critic with automatic entropy temperature, usable as a library and as a harness algorithm.

Paper: Haarnoja et al., "Soft Actor-Critic Algorithms and Applications", 2018, https://arxiv.org/abs/1812.05905
Reference implementation and defaults: CleanRL ``cleanrl/sac_continuous_action.py``
(https://github.com/vwxyzjn/cleanrl), one update per environment step, delayed actor updates.

Library use (dataset generation trains experts with it for hours, so it checkpoints and resumes)::

    result = train_sac(lambda seed: gym.make("Hopper-v5"), total_steps=1_000_000, seed=0,
                       checkpoint_path=Path("hopper-expert.pt"))
    result.agent.act(obs)          # deterministic action in the env's bounds
    result.replay_buffer           # qlearning-layout dict (+ timeouts) of the online transitions
    save_agent(result.agent, path); agent = load_agent(path)

Conventions: the policy works in [-1, 1]^act (tanh squashing); ``SACAgent.act`` scales to the env's Box
bounds, and the replay buffer stores the [-1, 1] actions (identical for MuJoCo and Meta-World whose bounds are
[-1, 1]). ``terminals`` mark true terminations only (bootstrapping continues through time limits);
``timeouts`` mark truncations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness import CellContext
from harness_rl.data import check_transitions
from harness_rl.evaluation import build_outcome, scale_action
from harness_rl.hyperparameters import config_from_params
from harness_rl.networks import adam, seed_everything, soft_update
from harness_rl.training import Online, load_checkpoint, save_checkpoint, train, train_cell, with_torch_threads

LOG_STD_MAX = 2.0  # CleanRL's bounds on the policy's log standard deviation
LOG_STD_MIN = -5.0


@dataclass
class SACConfig:
    use_demonstrations: bool = True  # put the environment's demonstrations (or dataset) in the replay buffer
    buffer_size: int = 1_000_000  # online replay capacity; demonstrations are kept apart and never evicted
    gamma: float = 0.99  # discount factor
    tau: float = 0.005  # Polyak factor of the target critics
    batch_size: int = 256  # transitions per gradient step
    learning_starts: int = 5_000  # buffered transitions (demos count) before updates; until then random actions
    policy_lr: float = 3e-4  # actor learning rate
    q_lr: float = 1e-3  # critics' and temperature's learning rate
    policy_frequency: int = 2  # actor updated every this many steps (that many times, as in CleanRL/TD3)
    target_network_frequency: int = 1  # steps between target-critic Polyak updates
    alpha: float = 0.2  # entropy temperature; its initial value when autotuned (CleanRL starts at 1.0, which
    # with a sparse 0/1 reward lets the entropy bonus swamp the task for thousands of updates)
    demo_ratio: float = 0.0  # share of each batch drawn from the demonstrations; 0: uniform over demos and
    # online data together; 0.5 is RLPD's symmetric sampling (Ball et al. 2023)
    autotune: bool = True  # learn the temperature towards a target entropy of -act_dim
    hidden_dim: int = 256  # width of the two hidden layers of actor and critics
    return_window: int = 10  # training episodes averaged when checking train_sac's stop_at_return


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy with state-dependent standard deviation."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int = 256) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(obs_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU()
        )
        self.mean = nn.Linear(hidden_dim, act_dim)
        self.log_std = nn.Linear(hidden_dim, act_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.trunk(obs)
        log_std = torch.tanh(self.log_std(hidden))
        # Squash into [LOG_STD_MIN, LOG_STD_MAX] smoothly rather than clipping (CleanRL, from SpinningUp).
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
        return self.mean(hidden), log_std

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sampled action in [-1, 1], its log-probability (batch, 1), deterministic action)."""
        mean, log_std = self(obs)
        normal = torch.distributions.Normal(mean, log_std.exp())
        pre_tanh = normal.rsample()
        action = torch.tanh(pre_tanh)
        # Change of variables through tanh; 1e-6 keeps the log finite at the bounds.
        log_prob = normal.log_prob(pre_tanh) - torch.log(1 - action.pow(2) + 1e-6)
        return action, log_prob.sum(-1, keepdim=True), torch.tanh(mean)


class SoftQNetwork(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim + act_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, 1),
        )

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], -1))


@dataclass
class SACAgent:
    """A trained (or training) SAC agent: the actor, the twin critics and the env's action bounds."""

    actor: Actor
    qf1: SoftQNetwork
    qf2: SoftQNetwork
    action_low: np.ndarray
    action_high: np.ndarray
    log_alpha: torch.Tensor = field(default_factory=lambda: torch.zeros(1))
    hidden_dim: int = 256

    @property
    def device(self) -> torch.device:
        return next(self.actor.parameters()).device

    @torch.no_grad()
    def policy_action(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Action in [-1, 1] for one observation (obs_dim,) or a batch (n, obs_dim)."""
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        single = obs_t.ndim == 1
        sampled, _, mean = self.actor.sample(obs_t[None] if single else obs_t)
        action = (mean if deterministic else sampled).cpu().numpy()
        return action[0] if single else action

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Action in the environment's bounds for one observation or a batch."""
        return scale_action(self.policy_action(obs, deterministic), self.action_low, self.action_high)

    @torch.no_grad()
    def q_value(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """min(Q1, Q2) for a batch of observations and [-1, 1] actions, shape (n,)."""
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        act_t = torch.as_tensor(np.asarray(action, dtype=np.float32), device=self.device)
        return torch.min(self.qf1(obs_t, act_t), self.qf2(obs_t, act_t)).squeeze(-1).cpu().numpy()


def make_agent(
    obs_dim: int, act_dim: int, low: np.ndarray, high: np.ndarray, hidden_dim: int, device, initial_alpha: float = 1.0
) -> SACAgent:
    return SACAgent(
        actor=Actor(obs_dim, act_dim, hidden_dim).to(device),
        qf1=SoftQNetwork(obs_dim, act_dim, hidden_dim).to(device),
        qf2=SoftQNetwork(obs_dim, act_dim, hidden_dim).to(device),
        action_low=np.asarray(low, dtype=np.float32),
        action_high=np.asarray(high, dtype=np.float32),
        log_alpha=torch.full((1,), math.log(initial_alpha), device=device),
        hidden_dim=hidden_dim,
    )


def save_agent(agent: SACAgent, path: Path | str) -> None:
    """Save actor, critics, temperature and action bounds to one file (atomic)."""
    obs_dim = agent.actor.trunk[0].in_features
    save_checkpoint(
        {
            "obs_dim": obs_dim,
            "act_dim": agent.actor.mean.out_features,
            "hidden_dim": agent.hidden_dim,
            "action_low": torch.as_tensor(agent.action_low),
            "action_high": torch.as_tensor(agent.action_high),
            "actor": agent.actor.state_dict(),
            "qf1": agent.qf1.state_dict(),
            "qf2": agent.qf2.state_dict(),
            "log_alpha": agent.log_alpha.detach().cpu(),
        },
        Path(path),
    )


def load_agent(path: Path | str, device: str = "cpu") -> SACAgent:
    """Load an agent written by :func:`save_agent`."""
    state = load_checkpoint(Path(path), device)
    if state is None:
        raise FileNotFoundError(f"no SAC agent at {path}: train one with harness_rl.sac.train_sac first")
    agent = make_agent(
        state["obs_dim"],
        state["act_dim"],
        state["action_low"].cpu().numpy(),
        state["action_high"].cpu().numpy(),
        state["hidden_dim"],
        device,
    )
    agent.actor.load_state_dict(state["actor"])
    agent.qf1.load_state_dict(state["qf1"])
    agent.qf2.load_state_dict(state["qf2"])
    agent.log_alpha = state["log_alpha"].to(device)
    return agent


@dataclass
class SACResult:
    agent: SACAgent
    replay_buffer: dict[str, np.ndarray]  # online transitions only (demonstrations excluded), oldest first
    episode_returns: list[float]  # undiscounted returns of finished training episodes, in order
    env_steps: int = 0  # environment steps taken (including those before a resume)
    gradient_steps: int = 0
    stopped_early: bool = False  # stop_at_return was reached
    finished: bool = True  # False when should_stop() interrupted training (a checkpoint was written)
    evaluations: list[dict[str, float]] = field(default_factory=list)  # points logged by evaluate
    train_seconds: float = 0.0  # wall time of this call's training loop (gradient + env steps)
    env_seconds: float = 0.0  # time stepping the environment and choosing actions, over all calls
    update_seconds: float = 0.0  # time in gradient updates, over all calls (restored on resume)


class SACTrainer:
    """Holds the networks and optimizers; ``update`` does one CleanRL SAC gradient step."""

    def __init__(self, agent: SACAgent, config: SACConfig) -> None:
        self.agent, self.config = agent, config
        device = agent.device
        self.qf1_target = SoftQNetwork(
            agent.actor.trunk[0].in_features, agent.actor.mean.out_features, agent.hidden_dim
        ).to(device)
        self.qf2_target = SoftQNetwork(
            agent.actor.trunk[0].in_features, agent.actor.mean.out_features, agent.hidden_dim
        ).to(device)
        self.qf1_target.load_state_dict(agent.qf1.state_dict())
        self.qf2_target.load_state_dict(agent.qf2.state_dict())
        self.q_optimizer = adam([*agent.qf1.parameters(), *agent.qf2.parameters()], lr=config.q_lr)
        self.actor_optimizer = adam(agent.actor.parameters(), lr=config.policy_lr)
        self.target_entropy = -float(agent.actor.mean.out_features)
        agent.log_alpha = agent.log_alpha.detach().clone().to(device).requires_grad_(True)
        self.alpha_optimizer = adam([agent.log_alpha], lr=config.q_lr)
        self.alpha = agent.log_alpha.exp().item() if config.autotune else config.alpha
        self.steps = 0

    def actor_loss(self, log_prob: torch.Tensor, q_pi: torch.Tensor, pi: torch.Tensor, actions: torch.Tensor):
        """SAC's actor objective: maximize the soft value ``Q(s, pi(s)) - alpha * log pi(s)``."""
        return (self.alpha * log_prob - q_pi).mean()

    def update(self, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        agent, cfg = self.agent, self.config
        obs, actions, rewards = batch["observations"], batch["actions"], batch["rewards"]
        next_obs, terminals = batch["next_observations"], batch["terminals"]
        with torch.no_grad():
            next_actions, next_log_prob, _ = agent.actor.sample(next_obs)
            next_q = torch.min(self.qf1_target(next_obs, next_actions), self.qf2_target(next_obs, next_actions))
            soft_value = next_q - self.alpha * next_log_prob
            target = rewards[:, None] + (1 - terminals[:, None]) * cfg.gamma * soft_value
        q_loss = F.mse_loss(agent.qf1(obs, actions), target) + F.mse_loss(agent.qf2(obs, actions), target)
        self.q_optimizer.zero_grad()
        q_loss.backward()
        self.q_optimizer.step()
        info = {"q_loss": q_loss.item()}

        self.steps += 1
        if self.steps % cfg.policy_frequency == 0:
            # TD3-style delay, compensated by doing policy_frequency actor updates at once (CleanRL).
            for _ in range(cfg.policy_frequency):
                pi, log_prob, _ = agent.actor.sample(obs)
                q_pi = torch.min(agent.qf1(obs, pi), agent.qf2(obs, pi))
                actor_loss = self.actor_loss(log_prob, q_pi, pi, actions)
                self.actor_optimizer.zero_grad()
                actor_loss.backward()
                self.actor_optimizer.step()
                if cfg.autotune:
                    with torch.no_grad():
                        _, log_prob, _ = agent.actor.sample(obs)
                    alpha_loss = (-agent.log_alpha.exp() * (log_prob + self.target_entropy)).mean()
                    self.alpha_optimizer.zero_grad()
                    alpha_loss.backward()
                    self.alpha_optimizer.step()
                    self.alpha = agent.log_alpha.exp().item()
            info["actor_loss"] = actor_loss.item()
        if self.steps % cfg.target_network_frequency == 0:
            soft_update(((agent.qf1, self.qf1_target), (agent.qf2, self.qf2_target)), cfg.tau)
        return info

    def policy_action(self, obs: np.ndarray) -> np.ndarray:
        return self.agent.policy_action(obs, deterministic=True)

    def explore_action(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.agent.policy_action(obs, deterministic=False)  # torch's RNG: the policy's own noise

    def state(self) -> dict[str, Any]:
        a = self.agent
        return {
            "actor": a.actor.state_dict(),
            "qf1": a.qf1.state_dict(),
            "qf2": a.qf2.state_dict(),
            "qf1_target": self.qf1_target.state_dict(),
            "qf2_target": self.qf2_target.state_dict(),
            "log_alpha": a.log_alpha.detach(),
            "q_optimizer": self.q_optimizer.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
            "alpha": self.alpha,
            "steps": self.steps,
        }

    def load(self, state: Mapping[str, Any]) -> None:
        a = self.agent
        a.actor.load_state_dict(state["actor"])
        a.qf1.load_state_dict(state["qf1"])
        a.qf2.load_state_dict(state["qf2"])
        self.qf1_target.load_state_dict(state["qf1_target"])
        self.qf2_target.load_state_dict(state["qf2_target"])
        with torch.no_grad():
            a.log_alpha.copy_(state["log_alpha"])
        self.q_optimizer.load_state_dict(state["q_optimizer"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self.alpha, self.steps = float(state["alpha"]), int(state["steps"])


def train_sac(
    make_env: Callable[[int], Any],
    total_steps: int,
    seed: int,
    checkpoint_path: Path | None = None,
    checkpoint_every: int = 10_000,
    demonstrations: Mapping[str, np.ndarray] | None = None,
    stop_at_return: float | None = None,
    device: str = "cpu",
    log: Callable[[str, float, int], None] | None = None,
    config: SACConfig | None = None,
    evaluate: Callable[[SACAgent, int], Mapping[str, float]] | None = None,
    eval_every: int = 0,
    should_stop: Callable[[], bool] | None = None,
) -> SACResult:
    """Train SAC online for ``total_steps`` environment steps (counting steps done before a resume), with
    the one training loop (:func:`harness_rl.training.train`).

    Args:
        make_env: ``seed -> gymnasium.Env`` with a Box action space.
        checkpoint_path: file to resume from if present and to write every ``checkpoint_every`` env steps
            and at the end (networks, optimizers, temperature, replay buffer, RNG states, episode returns).
        demonstrations: qlearning-layout transitions sampled together with the online ones (never evicted).
        stop_at_return: stop once the mean of the last ``config.return_window`` training episode returns
            reaches it (to make a "medium" policy).
        log: ``log(name, value, step)`` receives ``episode_return`` per episode and losses every 1000 steps.
        config: hyperparameters (CleanRL defaults).
        evaluate: ``evaluate(agent, env_step) -> point`` called every ``eval_every`` env steps and at the end.
        should_stop: polled every step; when it returns True a checkpoint is written and training returns
            with ``finished=False`` (deadline awareness).
    """
    cfg = config or SACConfig()
    seed_everything(seed)
    env = make_env(seed)
    obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    low, high = env.action_space.low, env.action_space.high
    env.close()
    agent = make_agent(obs_dim, act_dim, low, high, cfg.hidden_dim, torch.device(device), cfg.alpha)
    trainer = SACTrainer(agent, cfg)
    demos = check_transitions(demonstrations, "demonstrations") if demonstrations else None
    result = train(
        trainer,
        demos,
        total=total_steps,
        batch_size=cfg.batch_size,
        seed=seed,
        device=device,
        online=online_sac(make_env, cfg, stop_at_return),
        checkpoint_path=checkpoint_path,
        checkpoint_every=checkpoint_every,
        evaluate=None if evaluate is None else lambda step: {"step": float(step), **evaluate(agent, step)},
        eval_every=eval_every,
        should_stop=should_stop,
        log=log,
    )
    return SACResult(
        agent=agent,
        replay_buffer=result.replay_buffer,
        episode_returns=result.episode_returns,
        env_steps=result.steps,
        gradient_steps=result.gradient_steps,
        stopped_early=result.stopped_early,
        finished=result.finished,
        evaluations=result.evaluations,
        train_seconds=result.train_seconds,
        env_seconds=result.env_seconds,
        update_seconds=result.update_seconds,
    )


def online_sac(make_env: Callable[[int], Any], cfg: SACConfig, stop_at_return: float | None = None) -> Online:
    """CleanRL's schedule: uniform random actions until ``learning_starts``, then one update per env step."""
    return Online(
        make_env,
        learning_starts=cfg.learning_starts,
        demo_ratio=cfg.demo_ratio,
        buffer_size=cfg.buffer_size,
        stop_at_return=stop_at_return,
        return_window=cfg.return_window,
    )


@with_torch_threads
def run(environment: Any, params: Mapping[str, Any], context: CellContext) -> dict[str, Any]:
    """Harness entry point: online SAC on ``environment.make_env``, demonstrations (if any and if
    ``use_demonstrations``) kick-starting the replay buffer. Budget keys: ``env_steps``, ``eval_every``,
    ``eval_episodes``."""
    cfg = config_from_params(SACConfig, params)
    demos = getattr(environment, "demonstrations", None) or getattr(environment, "dataset", None)
    if not cfg.use_demonstrations or not demos or not len(demos.get("observations", ())):
        demos = None
    demos = None if demos is None else check_transitions(demos, "demonstrations")
    seed_everything(context.seed)
    env = environment.make_env(context.seed)
    obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    low, high = env.action_space.low, env.action_space.high
    env.close()
    agent = make_agent(obs_dim, act_dim, low, high, cfg.hidden_dim, torch.device(context.device), cfg.alpha)
    result, evaluator = train_cell(
        SACTrainer(agent, cfg),
        demos,
        environment,
        context,
        name="sac",
        batch_size=cfg.batch_size,
        online=online_sac(environment.make_env, cfg),
        rng=np.random.default_rng(context.seed),
        checkpoint_every=int(params.get("checkpoint_every", 10_000)),
    )
    return build_outcome(
        evaluator,
        gradient_steps=result.gradient_steps,
        train_seconds=result.update_seconds,
        env_steps=result.steps,
        env_seconds=result.env_seconds,
        extra={"demonstrations": 0 if demos is None else len(demos["observations"])},
    )
