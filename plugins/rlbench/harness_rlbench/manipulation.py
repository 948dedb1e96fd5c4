"""The ``manipulation`` task kind: what an environment of this plugin hands to an algorithm.

The object :func:`make` functions return (a :class:`ManipulationEnvironment`) is the contract with algorithm
plugins such as ``harness_rl``:

* ``make_env(seed) -> gymnasium.Env``: a fresh environment; ``step`` puts ``info["success"]`` (bool) in every
  info dict. Reward is the success indicator (``reward_type == "sparse"``) or the benchmark's shaped reward
  (``"dense"``). Its first ``reset()`` without a seed uses ``seed``, so the same seed gives the same episodes.
* ``demonstrations``: expert episodes as a dict of numpy arrays in D4RL's ``qlearning_dataset`` layout
  (``observations``, ``actions``, ``rewards``, ``next_observations``, ``terminals``), collected by the task's
  expert (RLBench's motion planner, Meta-World's scripted policies), seeded by the cell seed.
* ``observation_dim``, ``action_dim``, ``max_episode_steps``, ``name``, ``reward_type`` and
  ``normalized_score = None`` (manipulation is scored by success rate, not by a normalized return).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TASK_KIND = "manipulation"
REWARD_TYPES = ("sparse", "dense")
DEMO_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals")


@dataclass
class ManipulationEnvironment:
    """One manipulation task ready to run: an environment factory plus expert demonstrations."""

    name: str
    make_env: Callable[[int], Any]
    demonstrations: dict[str, np.ndarray]
    observation_dim: int
    action_dim: int
    max_episode_steps: int
    reward_type: str
    # Manipulation is scored by success rate; there is no normalized return as in D4RL.
    normalized_score: None = None
    # Facts worth recording with results: which simulator, how many demos, their success and length.
    info: dict[str, Any] = field(default_factory=dict)
    _close: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def n_demonstrations(self) -> int:
        return int(self.info.get("n_demos", 0))

    def close(self) -> None:
        if self._close is not None:
            self._close()


@dataclass
class Episode:
    """One expert episode, step by step, before it is flattened into the D4RL layout."""

    observations: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    next_observations: list[np.ndarray] = field(default_factory=list)
    terminals: list[bool] = field(default_factory=list)
    success: bool = False

    def __len__(self) -> int:
        return len(self.actions)


def empty_demonstrations(observation_dim: int, action_dim: int) -> dict[str, np.ndarray]:
    """The D4RL layout with zero transitions (``n_demos = 0``: online RL without demonstrations)."""
    return {
        "observations": np.zeros((0, observation_dim), np.float32),
        "actions": np.zeros((0, action_dim), np.float32),
        "rewards": np.zeros((0,), np.float32),
        "next_observations": np.zeros((0, observation_dim), np.float32),
        "terminals": np.zeros((0,), bool),
    }


def episodes_to_qlearning(episodes: Sequence[Episode], observation_dim: int, action_dim: int) -> dict[str, np.ndarray]:
    """Concatenate episodes into D4RL's ``qlearning_dataset`` layout (float32 arrays, bool terminals)."""
    if not episodes or all(len(e) == 0 for e in episodes):
        return empty_demonstrations(observation_dim, action_dim)
    return {
        "observations": np.asarray([o for e in episodes for o in e.observations], np.float32),
        "actions": np.asarray([a for e in episodes for a in e.actions], np.float32),
        "rewards": np.asarray([r for e in episodes for r in e.rewards], np.float32),
        "next_observations": np.asarray([o for e in episodes for o in e.next_observations], np.float32),
        "terminals": np.asarray([t for e in episodes for t in e.terminals], bool),
    }


def check_demonstrations(demos: dict[str, np.ndarray], observation_dim: int, action_dim: int) -> None:
    """Raise ValueError naming the key at fault when ``demos`` is not a consistent D4RL-layout dict."""
    missing = [key for key in DEMO_KEYS if key not in demos]
    if missing:
        raise ValueError(f"demonstrations lack {missing}; expected keys {list(DEMO_KEYS)}")
    n = len(demos["actions"])
    expected = {
        "observations": (n, observation_dim),
        "actions": (n, action_dim),
        "rewards": (n,),
        "next_observations": (n, observation_dim),
        "terminals": (n,),
    }
    for key, shape in expected.items():
        if demos[key].shape != shape:
            raise ValueError(f"demonstrations[{key!r}] has shape {demos[key].shape}, expected {shape}")


def demo_seed(cell_seed: int) -> int:
    """The seed of the demonstration environment: derived from the cell seed but distinct from it, so the
    expert never demonstrates the exact episodes the agent is later evaluated on."""
    return int(np.random.SeedSequence([int(cell_seed), 0xDE40]).generate_state(1)[0])


def cached_demonstrations(
    cache_dir: Path | None, key_fields: dict[str, Any], collect: Callable[[], dict[str, np.ndarray]]
) -> tuple[dict[str, np.ndarray], bool]:
    """Load demonstrations from ``cache_dir`` by a hash of ``key_fields``, else collect and store them.

    Returns the arrays and whether they came from the cache. Cells that differ only in the algorithm share one
    collection this way. A damaged cache file is collected again, never trusted.
    """
    if cache_dir is None:
        return collect(), False
    digest = hashlib.sha256(json.dumps(key_fields, sort_keys=True, default=str).encode()).hexdigest()[:20]
    path = Path(cache_dir) / "harness_rlbench" / f"demos-{digest}.npz"
    if path.exists():
        try:
            with np.load(path) as stored:
                return {key: stored[key] for key in DEMO_KEYS}, True
        except (OSError, KeyError, ValueError):
            path.unlink(missing_ok=True)
    demos = collect()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.npz")
    np.savez(partial, **demos)
    partial.replace(path)  # atomic: a concurrent cell never reads a half-written file
    return demos, False
