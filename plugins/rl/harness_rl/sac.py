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
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness_rl.common import (
    Evaluator,
    adam,
    build_outcome,
    interrupted,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    scale_action,
    seed_everything,
    set_rng_state,
    soft_update,
    with_torch_threads,
)

LOG_STD_MAX = 2.0  # CleanRL's bounds on the policy's log standard deviation
LOG_STD_MIN = -5.0
QLEARNING_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals")


@dataclass
class SACConfig:
    buffer_size: int = 1_000_000  # online replay capacity; demonstrations are kept apart and never evicted
    gamma: float = 0.99  # discount
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
    return_window: int = 10  # training episodes averaged when checking stop_at_return


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


class ReplayBuffer:
    """Ring buffer of online transitions in qlearning layout plus ``timeouts``."""

    def __init__(self, obs_dim: int, act_dim: int, capacity: int) -> None:
        self.capacity = capacity
        self.arrays = {
            "observations": np.zeros((capacity, obs_dim), np.float32),
            "actions": np.zeros((capacity, act_dim), np.float32),
            "rewards": np.zeros(capacity, np.float32),
            "next_observations": np.zeros((capacity, obs_dim), np.float32),
            "terminals": np.zeros(capacity, np.float32),
            "timeouts": np.zeros(capacity, np.float32),
        }
        self.position = 0  # next slot to write
        self.size = 0

    def add(self, obs, action, reward, next_obs, terminal, timeout) -> None:
        i = self.position
        a = self.arrays
        a["observations"][i], a["actions"][i], a["rewards"][i] = obs, action, reward
        a["next_observations"][i], a["terminals"][i], a["timeouts"][i] = next_obs, terminal, timeout
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def as_dict(self) -> dict[str, np.ndarray]:
        """The stored transitions in the order they were collected."""
        if self.size < self.capacity:
            return {k: v[: self.size].copy() for k, v in self.arrays.items()}
        return {k: np.roll(v, -self.position, axis=0) for k, v in self.arrays.items()}

    def state(self) -> dict[str, Any]:
        # Saved oldest first so it loads into a buffer of any capacity (a resumed run may ask for more).
        return {k: torch.from_numpy(v) for k, v in self.as_dict().items()}

    def load(self, state: Mapping[str, Any]) -> None:
        size = min(len(state["observations"]), self.capacity)
        for key, value in self.arrays.items():
            value[:size] = state[key][len(state[key]) - size :].cpu().numpy()
        self.size, self.position = size, size % self.capacity


def check_transitions(data: Mapping[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    """Validate a qlearning-layout dict; return it as float32 arrays with 1-D rewards and terminals."""
    missing = [k for k in QLEARNING_KEYS if k not in data]
    if missing:
        raise ValueError(f"{what} lacks {missing}; expected D4RL qlearning_dataset keys {list(QLEARNING_KEYS)}")
    out = {k: np.asarray(data[k], dtype=np.float32) for k in QLEARNING_KEYS}
    out["rewards"] = out["rewards"].reshape(-1)
    out["terminals"] = out["terminals"].reshape(-1)
    n = len(out["observations"])
    for key, value in out.items():
        if len(value) != n:
            raise ValueError(f"{what}[{key!r}] has {len(value)} rows, observations has {n}")
    return out


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
        # Offline pretraining only (WSRL): weight of the TD3+BC-style regularizer keeping the actor on the
        # data's actions; None for plain SAC.
        self.bc_weight: float | None = None

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
                actor_loss = (self.alpha * log_prob - q_pi).mean()
                if self.bc_weight is not None:
                    # TD3+BC: the Q term scaled by bc_weight / mean|Q|, plus regression onto data actions.
                    lmbda = self.bc_weight / q_pi.abs().mean().detach()
                    actor_loss = (self.alpha * log_prob).mean() - lmbda * q_pi.mean() + F.mse_loss(pi, actions)
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


def sample_batch(
    buffer: ReplayBuffer,
    demos: dict[str, np.ndarray] | None,
    batch_size: int,
    rng: np.random.Generator,
    device: torch.device,
    demo_ratio: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Uniform over the union of demonstrations and online transitions (demos kick-start the buffer), or,
    with ``demo_ratio > 0`` and online data present, that share of the batch from the demonstrations."""
    n_demo = 0 if demos is None else len(demos["observations"])
    if n_demo and buffer.size and demo_ratio > 0:
        n_from_demo = round(batch_size * demo_ratio)
        from_demo = rng.integers(0, n_demo, size=n_from_demo)
        from_online = rng.integers(0, buffer.size, size=batch_size - n_from_demo)
    else:
        index = rng.integers(0, n_demo + buffer.size, size=batch_size)
        from_demo, from_online = index[index < n_demo], index[index >= n_demo] - n_demo
    batch = {}
    for key in QLEARNING_KEYS:
        parts = [buffer.arrays[key][from_online]]
        if n_demo:
            parts.insert(0, demos[key][from_demo])
        batch[key] = torch.as_tensor(np.concatenate(parts), device=device)
    return batch


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
    initial_agent: SACAgent | None = None,
    warmup_steps: int = 0,
    evaluate: Callable[[SACAgent, int], Mapping[str, float]] | None = None,
    eval_every: int = 0,
    should_stop: Callable[[], bool] | None = None,
) -> SACResult:
    """Train SAC online for ``total_steps`` environment steps (counting steps done before a resume).

    Args:
        make_env: ``seed -> gymnasium.Env`` with a Box action space.
        checkpoint_path: file to resume from if present and to write every ``checkpoint_every`` env steps
            and at the end (networks, optimizers, temperature, replay buffer, RNG states, episode returns).
        demonstrations: qlearning-layout transitions sampled together with the online ones (never evicted).
        stop_at_return: stop once the mean of the last ``config.return_window`` training episode returns
            reaches it (to make a "medium" policy).
        log: ``log(name, value, step)`` receives ``episode_return`` per episode and losses every 1000 steps.
        config: hyperparameters (CleanRL defaults).
        initial_agent: warm start (WSRL): its actor, critics and temperature are trained further.
        warmup_steps: with ``initial_agent``, env steps collected by the frozen initial policy before the
            first update (replaces ``learning_starts`` and random exploration).
        evaluate: ``evaluate(agent, env_step) -> point`` called every ``eval_every`` env steps and at the end.
        should_stop: polled every step; when it returns True a checkpoint is written and training returns
            with ``finished=False`` (deadline awareness).
    """
    cfg = config or SACConfig()
    torch_device = torch.device(device)
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    env = make_env(seed)
    obs_dim = int(np.prod(env.observation_space.shape))
    act_dim = int(np.prod(env.action_space.shape))
    low, high = env.action_space.low, env.action_space.high
    if initial_agent is not None:
        agent = initial_agent
    else:
        agent = make_agent(obs_dim, act_dim, low, high, cfg.hidden_dim, torch_device, cfg.alpha)
    trainer = SACTrainer(agent, cfg)
    demos = check_transitions(demonstrations, "demonstrations") if demonstrations else None
    n_demo = 0 if demos is None else len(demos["observations"])
    buffer = ReplayBuffer(obs_dim, act_dim, min(cfg.buffer_size, max(total_steps, 1)))
    start_threshold = warmup_steps if initial_agent is not None else cfg.learning_starts
    exploring_with = "initial_policy" if initial_agent is not None else "uniform"

    step, episode_returns, evaluations, stopped_early = 0, [], [], False
    update_seconds, env_seconds = 0.0, 0.0
    state = load_checkpoint(checkpoint_path, torch_device) if checkpoint_path else None
    if state is not None:
        trainer.load(state["trainer"])
        buffer.load(state["buffer"])
        step = int(state["step"])
        episode_returns = [float(r) for r in state["episode_returns"]]
        evaluations = [dict(p) for p in state["evaluations"]]
        stopped_early = bool(state["stopped_early"])
        update_seconds, env_seconds = float(state["update_seconds"]), float(state["env_seconds"])
        set_rng_state(rng, state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"].cpu())

    def checkpoint() -> None:
        if checkpoint_path is None:
            return
        save_checkpoint(
            {
                "trainer": trainer.state(),
                "buffer": buffer.state(),
                "step": step,
                "episode_returns": episode_returns,
                "evaluations": evaluations,
                "stopped_early": stopped_early,
                "update_seconds": update_seconds,
                "env_seconds": env_seconds,
                "numpy_rng": rng_state(rng),
                "torch_rng": torch.get_rng_state(),
                "config": asdict(cfg),
            },
            checkpoint_path,
        )

    # A resumed run starts a fresh episode; seeding the reset with the step keeps it reproducible.
    obs, _ = env.reset(seed=seed + step)
    episode_return, finished = 0.0, True
    start = time.perf_counter()
    while step < total_steps and not stopped_early:
        if should_stop is not None and should_stop():
            finished = False
            break
        env_start = time.perf_counter()
        if n_demo + buffer.size < start_threshold:
            if exploring_with == "uniform":
                action = rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
            else:
                action = agent.policy_action(obs, deterministic=False)
        else:
            action = agent.policy_action(obs, deterministic=False)
        next_obs, reward, terminated, truncated, _ = env.step(scale_action(action, low, high))
        buffer.add(obs, action, reward, next_obs, float(terminated), float(truncated))
        episode_return += float(reward)
        obs = next_obs
        step += 1
        if terminated or truncated:
            episode_returns.append(episode_return)
            if log is not None:
                log("episode_return", episode_return, step)
            window = episode_returns[-cfg.return_window :]
            if stop_at_return is not None and len(window) == cfg.return_window:
                stopped_early = float(np.mean(window)) >= stop_at_return
            obs, _ = env.reset()
            episode_return = 0.0
        env_seconds += time.perf_counter() - env_start

        if n_demo + buffer.size >= max(start_threshold, cfg.batch_size):
            update_start = time.perf_counter()
            info = trainer.update(sample_batch(buffer, demos, cfg.batch_size, rng, torch_device, cfg.demo_ratio))
            update_seconds += time.perf_counter() - update_start
            if log is not None and trainer.steps % 1000 == 0:
                for name, value in info.items():
                    log(name, value, step)
        if evaluate is not None and eval_every and step % eval_every == 0:
            evaluations.append({"env_steps": float(step), **evaluate(agent, step)})
        if checkpoint_path is not None and step % checkpoint_every == 0:
            checkpoint()
    train_seconds = time.perf_counter() - start
    if finished and evaluate is not None and (not evaluations or evaluations[-1]["env_steps"] != step):
        evaluations.append({"env_steps": float(step), **evaluate(agent, step)})
    checkpoint()
    env.close()
    return SACResult(
        agent=agent,
        replay_buffer=buffer.as_dict(),
        episode_returns=episode_returns,
        env_steps=step,
        gradient_steps=trainer.steps,
        stopped_early=stopped_early,
        finished=finished,
        evaluations=evaluations,
        train_seconds=train_seconds,
        env_seconds=env_seconds,
        update_seconds=update_seconds,
    )


@with_torch_threads
def run(environment: Any, params: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Harness entry point: online SAC on ``environment.make_env``, demonstrations (if any and if
    ``use_demonstrations``) kick-starting the replay buffer. Budget keys: ``env_steps``, ``eval_every``,
    ``eval_episodes``."""
    config = SACConfig(**{k: params[k] for k in SACConfig.__dataclass_fields__ if k in params})
    total_steps = int(context.budget_value("env_steps", params.get("env_steps", 100_000)))
    eval_every = int(context.budget_value("eval_every", max(total_steps // 10, 1)))
    # Points are logged to the context after training, from the checkpointed list: a resumed cell then
    # reports the whole curve, not only the part after the restart.
    evaluator = Evaluator(environment, None, int(context.budget_value("eval_episodes", 10)), context.seed)
    demos = getattr(environment, "demonstrations", None) or getattr(environment, "dataset", None)
    if not params.get("use_demonstrations", True) or not demos or not len(demos.get("observations", ())):
        demos = None

    def evaluate(agent: SACAgent, step: int) -> dict[str, float]:
        evaluator(agent.policy_action, step, env_steps=step)
        return evaluator.points[-1]

    result = train_sac(
        environment.make_env,
        total_steps=total_steps,
        seed=context.seed,
        checkpoint_path=context.cell_dir() / "sac.pt",
        checkpoint_every=int(params.get("checkpoint_every", 10_000)),
        demonstrations=demos,
        device=context.device,
        config=config,
        evaluate=evaluate,
        eval_every=eval_every,
        should_stop=lambda: context.time_left() < 30,
    )
    if not result.finished:
        raise interrupted("sac", result.env_steps, total_steps, "environment steps", context.cell_dir() / "sac.pt")
    evaluator.context = context
    evaluator.load(result.evaluations)
    if evaluator.last is None:  # resumed after training had already finished: evaluate the final agent
        evaluator(result.agent.policy_action, result.env_steps, env_steps=result.env_steps, record=False)
    return build_outcome(
        evaluator,
        gradient_steps=result.gradient_steps,
        train_seconds=result.update_seconds,
        env_steps=result.env_steps,
        env_seconds=result.env_seconds,
        finished=result.finished,
        extra={"demonstrations": 0 if demos is None else len(demos["observations"])},
    )
