"""The critic RIQL's adversarial corruption attacks, and the attack itself.

RIQL attacks with the critic ensemble and actor of an EDAC agent pretrained on the clean dataset. Nothing can
be downloaded here, so the critic is pretrained on the clean dataset by the plugin itself: a deterministic
behaviour-cloning actor ``pi`` (MSE to the dataset's actions) and a twin Q network fitted to it by temporal
differences, ``Q(s, a) <- r + gamma (1 - terminal) min_i Q_target,i(s', pi(s'))`` (fitted Q evaluation of
the behaviour policy). Like EDAC's ensemble mean, the attack uses the mean of the twin Qs.

The attack is RIQL's: starting from a uniform point of the box ``|d| <= scale * std``, take ``steps`` signed
gradient steps of size ``step_size * scale`` (in units of std) that lower the mean Q, clipping back into the
box after each. (RIQL re-creates an Adam optimiser every step; a fresh Adam's first step is exactly a signed
gradient step of the learning rate, which is what is written here.)
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class CriticPretrainConfig:
    """Pretraining of the attacked critic (CORL-sized networks)."""

    gradient_steps: int = 10000  # updates of actor and critic together
    batch_size: int = 256  # transitions per update
    hidden_dim: int = 256  # width of the two hidden layers
    learning_rate: float = 3e-4  # Adam, actor and critic
    discount: float = 0.99  # gamma of the TD target
    tau: float = 0.005  # Polyak rate of the target critic


def _mlp(in_dim: int, out_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)
    )


class AdversarialCritic(nn.Module):
    """A behaviour-cloning actor and a twin Q network over (observation, action)."""

    def __init__(self, observation_dim: int, action_dim: int, hidden_dim: int = 256) -> None:
        super().__init__()
        self.observation_dim = observation_dim
        self.action_dim = action_dim
        self.hidden_dim = hidden_dim
        self.actor = nn.Sequential(_mlp(observation_dim, action_dim, hidden_dim), nn.Tanh())
        self.q1 = _mlp(observation_dim + action_dim, 1, hidden_dim)
        self.q2 = _mlp(observation_dim + action_dim, 1, hidden_dim)

    def q_values(self, observations: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = torch.cat([observations, actions], dim=-1)
        return self.q1(inputs).squeeze(-1), self.q2(inputs).squeeze(-1)

    def mean_q(self, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        q1, q2 = self.q_values(observations, actions)
        return 0.5 * (q1 + q2)


def pretrain_critic(
    dataset: Mapping[str, np.ndarray], config: CriticPretrainConfig, seed: int, device: str = "cpu"
) -> AdversarialCritic:
    """Fit the BC actor and the twin critic on a clean qlearning-layout dataset."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tensors = {
        key: torch.as_tensor(np.asarray(dataset[key], dtype=np.float32), device=device)
        for key in ("observations", "actions", "rewards", "next_observations", "terminals")
    }
    rows = len(tensors["rewards"])
    model = AdversarialCritic(tensors["observations"].shape[1], tensors["actions"].shape[1], config.hidden_dim)
    model.to(device)
    target = copy.deepcopy(model).requires_grad_(False)
    actor_optimizer = torch.optim.Adam(model.actor.parameters(), lr=config.learning_rate)
    critic_optimizer = torch.optim.Adam([*model.q1.parameters(), *model.q2.parameters()], lr=config.learning_rate)
    # Dataset actions may lie slightly outside [-1, 1] (D4RL clips to 1 - 1e-5 only in some files).
    bc_targets = tensors["actions"].clamp(-1.0, 1.0)
    for _ in range(config.gradient_steps):
        batch = torch.randint(rows, (config.batch_size,), generator=generator).to(device)
        observations = tensors["observations"][batch]
        actor_loss = ((model.actor(observations) - bc_targets[batch]) ** 2).mean()
        actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        actor_optimizer.step()
        with torch.no_grad():
            next_observations = tensors["next_observations"][batch]
            next_q = torch.min(*target.q_values(next_observations, target.actor(next_observations)))
            not_done = 1.0 - tensors["terminals"][batch]
            td_target = tensors["rewards"][batch] + config.discount * not_done * next_q
        q1, q2 = model.q_values(observations, tensors["actions"][batch])
        critic_loss = ((q1 - td_target) ** 2).mean() + ((q2 - td_target) ** 2).mean()
        critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        critic_optimizer.step()
        with torch.no_grad():
            for param, target_param in zip(model.parameters(), target.parameters(), strict=True):
                target_param.lerp_(param, config.tau)
    return model.eval()


def dataset_fingerprint(dataset: Mapping[str, np.ndarray]) -> str:
    """A short hash of a qlearning dataset's contents: the cache key of its pretrained critic."""
    digest = hashlib.sha256()
    for key in ("observations", "actions", "rewards", "next_observations", "terminals"):
        digest.update(np.ascontiguousarray(dataset[key]).tobytes())
    return digest.hexdigest()[:16]


def cached_critic(
    dataset: Mapping[str, np.ndarray],
    config: CriticPretrainConfig,
    cache_dir: Path,
    seed: int = 0,
    device: str = "cpu",
) -> AdversarialCritic:
    """The pretrained critic of ``dataset`` from ``cache_dir``, pretraining and saving it on first use.

    The critic depends on the clean dataset and the pretraining config only (seed 0 by default), not on the
    cell's seed, so every cell corrupting the same dataset attacks the same critic. A file lock makes
    parallel cells wait for one pretraining instead of repeating it.
    """
    from filelock import FileLock

    cache_dir.mkdir(parents=True, exist_ok=True)
    name = (
        f"adversarial-critic-{dataset_fingerprint(dataset)}-steps{config.gradient_steps}"
        f"-h{config.hidden_dim}-seed{seed}.pt"
    )
    path = cache_dir / name
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            state = torch.load(path, map_location=device, weights_only=True)
            model = AdversarialCritic(int(state["observation_dim"]), int(state["action_dim"]), int(state["hidden_dim"]))
            model.load_state_dict(state["model"])
            return model.to(device).eval()
        model = pretrain_critic(dataset, config, seed=seed, device=device)
        partial = path.with_suffix(".pt.partial")
        torch.save(
            {
                "model": model.state_dict(),
                "observation_dim": model.observation_dim,
                "action_dim": model.action_dim,
                "hidden_dim": model.hidden_dim,
            },
            partial,
        )
        partial.replace(path)
        return model


def adversarial_perturbation(
    critic: AdversarialCritic,
    field: str,
    observations: np.ndarray,
    actions: np.ndarray,
    next_observations: np.ndarray,
    std: np.ndarray,
    scale: float,
    steps: int,
    step_size: float,
    seed: int,
    device: str = "cpu",
    chunk: int = 16384,
) -> np.ndarray:
    """Perturbations ``d`` with ``|d| <= scale * std`` that lower the critic's Q (RIQL's attack)."""
    if field not in ("observations", "actions", "next_observations"):
        raise ValueError(f"no gradient attack for field {field!r}")
    generator = torch.Generator().manual_seed(seed)
    std_t = torch.as_tensor(np.asarray(std, dtype=np.float32).reshape(1, -1), device=device)
    attacked = {"observations": observations, "actions": actions, "next_observations": next_observations}[field]
    result = np.empty(attacked.shape, dtype=np.float32)
    critic.requires_grad_(False)
    for start in range(0, len(attacked), chunk):
        stop = min(start + chunk, len(attacked))
        obs = torch.as_tensor(observations[start:stop], dtype=torch.float32, device=device)
        act = torch.as_tensor(actions[start:stop], dtype=torch.float32, device=device)
        next_obs = torch.as_tensor(next_observations[start:stop], dtype=torch.float32, device=device)
        # The box in units of std: unit in [-scale, scale], perturbation = unit * std.
        unit = (torch.rand((stop - start, attacked.shape[1]), generator=generator) * 2 - 1).to(device) * scale
        for _ in range(steps):
            unit.requires_grad_(True)
            delta = unit * std_t
            if field == "observations":
                q = critic.mean_q(obs + delta, act)
            elif field == "actions":
                q = critic.mean_q(obs, act + delta)
            else:
                moved = next_obs + delta
                q = critic.mean_q(moved, critic.actor(moved))
            (gradient,) = torch.autograd.grad(q.mean(), unit)
            with torch.no_grad():
                unit = (unit - step_size * scale * gradient.sign()).clamp(-scale, scale)
        result[start:stop] = (unit * std_t).detach().cpu().numpy()
    return result
