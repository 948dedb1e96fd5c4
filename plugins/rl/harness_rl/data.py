"""Transitions: the schema every algorithm trains on, its checks, the replay buffer and batch sampling.

The schema is D4RL's ``qlearning_dataset`` layout, a dict of numpy arrays with one row per transition:
``observations`` (N, obs_dim), ``actions`` (N, act_dim) in [-1, 1], ``rewards`` (N,), ``next_observations``
(N, obs_dim) and ``terminals`` (N,), 1.0 on true terminations only (bootstrapping continues through time limits).
Online data adds ``timeouts`` (N,), 1.0 where an episode was truncated. Offline datasets (``offline-rl``
environments) and demonstrations (``manipulation`` environments) arrive in this layout from other plugins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

QLEARNING_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals")


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


def offline_transitions(environment: Any) -> dict[str, np.ndarray]:
    """The environment's dataset (offline-rl) or demonstrations (manipulation), validated."""
    data = getattr(environment, "dataset", None)
    if data is None:
        data = getattr(environment, "demonstrations", None)
    name = getattr(environment, "name", type(environment).__name__)
    if not data or len(data.get("observations", ())) == 0:
        raise ValueError(
            f"environment {name!r} provides no dataset or demonstrations; offline training needs transitions "
            "(for manipulation tasks raise the environment's number of demonstrations)"
        )
    return check_transitions(data, f"dataset of {name!r}")


def to_tensors(data: Mapping[str, np.ndarray], device: str | torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(data[k], device=device) for k in QLEARNING_KEYS}


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


def sample_batch(
    buffer: ReplayBuffer,
    demos: Mapping[str, np.ndarray] | None,
    batch_size: int,
    rng: np.random.Generator,
    device: torch.device,
    demo_ratio: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Uniform over the union of demonstrations and online transitions (demos kick-start the buffer), or,
    with ``demo_ratio > 0`` and online data present, that share of the batch from the demonstrations
    (0.5 is RLPD's symmetric sampling, Ball et al. 2023).

    The batch holds the qlearning keys and ``from_dataset`` (N,) bool, True on the rows drawn from ``demos``
    (they come first): algorithms that treat demonstrations differently (ARSQ's penalty) read it."""
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
    from_dataset = np.zeros(len(from_demo) + len(from_online), bool)
    from_dataset[: len(from_demo)] = True
    batch["from_dataset"] = torch.as_tensor(from_dataset, device=device)
    return batch


def observation_stats(observations: np.ndarray, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std (+eps, CORL's ``compute_mean_std``) for observation normalization."""
    return observations.mean(0).astype(np.float32), (observations.std(0) + eps).astype(np.float32)


def normalization(data: Mapping[str, np.ndarray], normalize: bool) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of the observations when ``normalize``, else the identity (zeros, ones)."""
    if normalize:
        return observation_stats(data["observations"])
    obs_dim = data["observations"].shape[1]
    return np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32)


def trajectory_ends(data: Mapping[str, np.ndarray]) -> np.ndarray:
    """Indices of the last transition of each trajectory in a qlearning-layout dict.

    qlearning_dataset drops timeouts' rows, so an episode also ends where the next row does not start at this
    row's next observation; ``terminals`` (and ``timeouts`` when present) end one too.
    """
    n = len(data["observations"])
    ends = data["terminals"].reshape(-1) > 0
    if "timeouts" in data:
        ends |= np.asarray(data["timeouts"]).reshape(-1) > 0
    if n > 1:
        ends[:-1] |= np.any(data["next_observations"][:-1] != data["observations"][1:], axis=1)
    ends[-1] = True
    return np.flatnonzero(ends)


def trajectory_returns(data: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(return of each trajectory, trajectory id of each transition)."""
    ends = trajectory_ends(data)
    trajectory_id = np.zeros(len(data["observations"]), np.int64)
    trajectory_id[ends[:-1] + 1] = 1
    trajectory_id = np.cumsum(trajectory_id)
    returns = np.bincount(trajectory_id, weights=data["rewards"].reshape(-1), minlength=len(ends))
    return returns, trajectory_id
