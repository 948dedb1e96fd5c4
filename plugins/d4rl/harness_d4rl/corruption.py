"""Data corruption following RIQL's protocol (Yang et al., "Towards Robust Offline Reinforcement Learning under
Diverse Data Corruption", ICLR 2024, https://arxiv.org/abs/2310.12955, code: YangRui2015/RIQL ``attack.py``).

For each corrupted field a fraction ``ratio`` of the transitions is chosen (each transition independently with
probability ``ratio``; a fresh choice per field, as RIQL resamples indices per field) and replaced:

=================  ==============================================  ============================================
field              random                                          adversarial
=================  ==============================================  ============================================
observations       ``s + U(-scale, scale) * std(s)`` per dimension  ``s + d``, ``|d| <= scale * std(s)``,
                                                                   minimising ``Q(s + d, a)``
actions            ``a + U(-scale, scale) * std(a)``               minimising ``Q(s, a + d)``
next_observations  ``s' + U(-scale, scale) * std(s')``             minimising ``Q(s' + d, pi(s' + d))``
rewards            ``U(-30 scale, 30 scale)``                      ``-scale * r``
=================  ==============================================  ============================================

``std`` is the per-dimension standard deviation of the clean field over the whole dataset. The adversarial
perturbations are found by projected signed-gradient descent on a critic pretrained on the clean data
(:mod:`harness_d4rl.adversarial`). Everything is deterministic given the seed: each field draws from its own
``numpy`` stream ``[seed, _STREAM, field]``, so adding a field leaves the others' corruption unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CORRUPTIBLE_FIELDS: tuple[str, ...] = ("observations", "actions", "rewards", "next_observations")
MODES: tuple[str, ...] = ("none", "random", "adversarial")
RANDOM_REWARD_RANGE = 30.0  # RIQL: random rewards are U(-30, 30) times the scale
_STREAM = 7919  # separates corruption's random streams from other users of the cell seed


@dataclass(frozen=True)
class CorruptionConfig:
    """What to corrupt and how (RIQL's defaults: ratio 0.3, scale 1.0)."""

    mode: str = "none"  # "none", "random" or "adversarial"
    fields: tuple[str, ...] = CORRUPTIBLE_FIELDS  # which of CORRUPTIBLE_FIELDS to corrupt
    ratio: float = 0.3  # probability that a transition's field is corrupted ("corruption_rate")
    scale: float = 1.0  # size of the corruption ("corruption_range")
    attack_steps: int = 100  # adversarial: signed-gradient steps per perturbation (RIQL: 100)
    attack_step_size: float = 0.01  # adversarial: step in units of scale * std (RIQL: Adam lr 0.01 * range)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"corruption_mode {self.mode!r} is not one of {', '.join(MODES)}")
        unknown = [name for name in self.fields if name not in CORRUPTIBLE_FIELDS]
        if unknown:
            raise ValueError(f"corrupt_fields has {unknown[0]!r}; choose among {', '.join(CORRUPTIBLE_FIELDS)}")
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"corruption_ratio must be in [0, 1], got {self.ratio}")
        if self.scale < 0:
            raise ValueError(f"corruption_scale must be non-negative, got {self.scale}")

    @property
    def active(self) -> bool:
        return self.mode != "none" and bool(self.fields) and self.ratio > 0


# A critic the adversarial attack descends: (observations, actions) -> Q values, plus the policy used for the
# next-observation attack. Both are torch modules; see harness_d4rl.adversarial.
CriticFactory = Callable[[], Any]


def corrupt_dataset(
    dataset: Mapping[str, np.ndarray],
    config: CorruptionConfig,
    seed: int,
    critic_factory: CriticFactory | None = None,
    device: str = "cpu",
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A corrupted copy of a qlearning-layout dataset and, per field, the indices that were corrupted.

    ``critic_factory`` is called (once, and only when an adversarial observation, action or next-observation
    attack needs it) to obtain a pretrained ``AdversarialCritic``.
    """
    corrupted = {key: np.array(value, copy=True) for key, value in dataset.items()}
    indices: dict[str, np.ndarray] = {}
    if not config.active:
        return corrupted, indices
    critic = None
    rows = len(dataset["rewards"])
    for field_index, name in enumerate(CORRUPTIBLE_FIELDS):
        if name not in config.fields:
            continue
        rng = np.random.default_rng([seed, _STREAM, field_index])
        chosen = np.flatnonzero(rng.random(rows) < config.ratio)
        indices[name] = chosen
        if len(chosen) == 0:
            continue
        clean = np.asarray(dataset[name])
        if name == "rewards":
            if config.mode == "random":
                noise = rng.uniform(-config.scale, config.scale, size=len(chosen)) * RANDOM_REWARD_RANGE
                corrupted[name][chosen] = noise.astype(clean.dtype)
            else:
                corrupted[name][chosen] = (-config.scale * clean[chosen]).astype(clean.dtype)
            continue
        std = clean.std(axis=0, keepdims=True)
        if config.mode == "random":
            noise = rng.uniform(-config.scale, config.scale, size=(len(chosen), clean.shape[1])) * std
            corrupted[name][chosen] = (clean[chosen] + noise).astype(clean.dtype)
        else:
            if critic is None:
                if critic_factory is None:
                    raise ValueError(
                        "adversarial corruption of observations, actions or next observations "
                        "needs a pretrained critic (critic_factory)"
                    )
                critic = critic_factory()
            from harness_d4rl.adversarial import adversarial_perturbation

            perturbation = adversarial_perturbation(
                critic,
                field=name,
                observations=np.asarray(dataset["observations"])[chosen],
                actions=np.asarray(dataset["actions"])[chosen],
                next_observations=np.asarray(dataset["next_observations"])[chosen],
                std=std,
                scale=config.scale,
                steps=config.attack_steps,
                step_size=config.attack_step_size,
                seed=int(rng.integers(2**31)),
                device=device,
            )
            corrupted[name][chosen] = (clean[chosen] + perturbation).astype(clean.dtype)
    return corrupted, indices


def corruption_summary(indices: Mapping[str, np.ndarray], rows: int) -> dict[str, Any]:
    """The corrupted fraction per field, for the environment's ``info``."""
    return {name: round(len(chosen) / max(rows, 1), 6) for name, chosen in indices.items()}


def parse_fields(value: Sequence[str] | str) -> tuple[str, ...]:
    """``corrupt_fields`` from a list or a comma-separated string (``"rewards,actions"``)."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    return tuple(value)
