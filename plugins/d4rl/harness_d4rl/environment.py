"""The ``offline-rl`` environment object and the ``make`` behind every D4RL environment spec.

Task kind ``offline-rl`` (the contract with algorithm plugins). ``make`` returns an object with:

* ``dataset``: dict of numpy arrays in D4RL's ``qlearning_dataset`` layout: ``observations`` (N, obs) float32,
  ``actions`` (N, act) float32, ``rewards`` (N,) float32, ``next_observations`` (N, obs) float32,
  ``terminals`` (N,) float32 (1.0 at a true termination);
* ``make_env(seed) -> gymnasium.Env``: the evaluation environment (Gymnasium MuJoCo v5), already seeded;
* ``normalized_score(episode_return) -> float``: D4RL's 0 (random) to 100 (expert) score;
* ``observation_dim``, ``action_dim``, ``max_episode_steps``, ``name``;
* ``info``: provenance (dataset path, whether it was generated, the generator's returns, corruption applied).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness import CellContext
from harness_d4rl.corruption import CorruptionConfig, corrupt_dataset, corruption_summary, parse_fields
from harness_d4rl.loading import (
    DatasetError,
    check_qlearning_dataset,
    default_dataset_dir,
    find_dataset,
    load_minari,
    qlearning_dataset,
    read_d4rl_hdf5,
)
from harness_d4rl.references import TASKS, V5_DIFFERENCE_NOTE, generated_file_name, task
from harness_d4rl.references import normalized_score as _normalized_score

# D4RL's Ant-v2 observation has 111 dimensions: 27 of positions and velocities, then the clipped external
# contact forces of 14 bodies (6 each). Gymnasium's Ant-v5 leaves out the world body's 6 (always zero), so a
# D4RL ant file is evaluated on v5 by dropping columns 27 to 32.
_ANT_V2_DIM, _ANT_WORLD_BODY_FORCES = 111, slice(27, 33)


@dataclass
class OfflineRLEnvironment:
    """A dataset in qlearning layout with the Gymnasium environment it is evaluated on."""

    name: str
    dataset: dict[str, np.ndarray]
    gymnasium_id: str
    observation_dim: int
    action_dim: int
    max_episode_steps: int
    ref_min_score: float
    ref_max_score: float
    info: dict[str, Any] = field(default_factory=dict)
    gymnasium_spec: Any = None  # a gymnasium EnvSpec (Minari datasets carry their own); else gymnasium_id

    def make_env(self, seed: int) -> Any:
        """A fresh evaluation environment whose first ``reset()`` is seeded with ``seed``."""
        import gymnasium as gym

        env = gym.make(self.gymnasium_spec or self.gymnasium_id, max_episode_steps=self.max_episode_steps)
        env.reset(seed=seed)
        env.action_space.seed(seed)
        return env

    def normalized_score(self, episode_return: float) -> float:
        """``100 * (return - ref_min) / (ref_max - ref_min)`` with this dataset's reference returns."""
        return _normalized_score(episode_return, self.ref_min_score, self.ref_max_score)

    def close(self) -> None:
        self.dataset = {}


def make(params: Mapping[str, Any], context: CellContext) -> OfflineRLEnvironment:
    """Load (or generate) the dataset the params name, corrupt it if asked, and wrap it with its env."""
    minari_id = str(params.get("minari_id", "") or "")
    if minari_id:
        environment = _from_minari(minari_id, params)
    else:
        environment = _from_hdf5(params, context)
    _record_input(environment, context)
    return _apply_corruption(environment, params, context)


def _record_input(environment: OfflineRLEnvironment, context: CellContext) -> None:
    """Tell the record which file the cell trains on and whose it is: D4RL's, Minari's or generated."""
    log_input = getattr(context, "log_input", None)
    if log_input is None:  # a harness older than the provenance API
        return
    info = environment.info
    if info.get("generated"):
        origin = "generated"
    elif info.get("minari_id"):
        origin = "minari"
    else:
        origin = "d4rl"
    path = Path(str(info.get("path", "")))
    details = {k: v for k, v in info.items() if k not in ("path", "note") and isinstance(v, (str, int, float, bool))}
    from harness import file_sha256

    log_input(
        str(info.get("minari_id") or environment.name),
        origin=origin,
        path=str(path),
        sha256=file_sha256(path) if path.is_file() else "",
        details=details,
    )


def _from_hdf5(params: Mapping[str, Any], context: CellContext) -> OfflineRLEnvironment:
    env_name, quality = params["env"], params["quality"]
    locomotion = task(env_name)
    explicit = str(params.get("path", "") or "")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise DatasetError(
                f"dataset file {path} (environment parameter 'path') does not exist; generate one with "
                f"`harness data d4rl generate --env {env_name} --quality {quality} --out {path}`"
            )
    else:
        directory = str(params.get("dataset_dir", "") or "")
        dataset_dirs = [Path(directory).expanduser() if directory else default_dataset_dir()]
        generate = bool(params.get("generate_if_missing", False)) or bool(
            context.budget_value("d4rl_generate_if_missing", False)
        )
        try:
            path, _ = find_dataset(env_name, quality, dataset_dirs, bool(params.get("allow_generated", True)))
        except DatasetError:
            if not generate:
                raise
            path = _generate_tiny(env_name, quality, params, context)
    raw, attrs = read_d4rl_hdf5(path)
    transitions = qlearning_dataset(
        raw,
        terminate_on_end=bool(params.get("terminate_on_end", False)),
        max_episode_steps=int(params.get("max_episode_steps", locomotion.max_episode_steps)),
    )
    info: dict[str, Any] = {
        "path": str(path),
        "generated": bool(attrs.get("generated", False)),
        "source": attrs.get("source", "D4RL HDF5 file"),
        "rows": len(raw["rewards"]),
        "transitions": len(transitions["rewards"]),
        "note": V5_DIFFERENCE_NOTE,
    }
    info.update({f"generator_{key}": value for key, value in attrs.items() if key.startswith("returns_")})
    for key in ("quality", "sac_env_steps", "budget_label", "medium_target_return", "generator_seed"):
        if key in attrs:
            info[key] = attrs[key]
    transitions = _adapt_ant_observations(env_name, transitions, info)
    return _wrap(
        f"{env_name}-{quality}",
        transitions,
        locomotion.gymnasium_id,
        params,
        info,
        locomotion.ref_min_score,
        locomotion.ref_max_score,
        None,
    )


def _adapt_ant_observations(env_name: str, transitions: dict[str, np.ndarray], info: dict[str, Any]):
    if env_name != "ant" or transitions["observations"].shape[1] != _ANT_V2_DIM:
        return transitions
    keep = np.ones(_ANT_V2_DIM, dtype=bool)
    keep[_ANT_WORLD_BODY_FORCES] = False
    for key in ("observations", "next_observations"):
        transitions[key] = np.ascontiguousarray(transitions[key][:, keep])
    info["observation_adapter"] = "ant v2 (111) -> v5 (105): dropped the world body's contact forces 27:33"
    return transitions


def _from_minari(dataset_id: str, params: Mapping[str, Any]) -> OfflineRLEnvironment:
    transitions, metadata = load_minari(dataset_id)
    env_spec = metadata.pop("env_spec_object", None)
    if env_spec is None:
        raise DatasetError(f"Minari dataset {dataset_id!r} records no environment to evaluate on")
    env_name = next((name for name, t in TASKS.items() if t.gymnasium_id.split("-")[0] == env_spec.name), None)
    ref_min = metadata.get("ref_min_score")
    ref_max = metadata.get("ref_max_score")
    if (ref_min is None or ref_max is None) and env_name is not None:
        ref_min, ref_max = TASKS[env_name].ref_min_score, TASKS[env_name].ref_max_score
    if ref_min is None or ref_max is None:
        raise DatasetError(
            f"Minari dataset {dataset_id!r} has no ref_min_score/ref_max_score and its environment "
            f"{env_spec.id} is not a D4RL locomotion task, so no normalized score can be computed"
        )
    info = {
        "path": metadata["path"],
        "minari_id": dataset_id,
        "generated": "harness-generated" in dataset_id or "generated" in str(metadata.get("description", "")),
        "source": "Minari dataset",
        "algorithm_name": metadata.get("algorithm_name"),
        "transitions": len(transitions["rewards"]),
        "ref_scores_from": "dataset" if metadata.get("ref_max_score") is not None else "D4RL",
        "note": V5_DIFFERENCE_NOTE,
    }
    return _wrap(dataset_id, transitions, env_spec.id, params, info, float(ref_min), float(ref_max), env_spec)


def _wrap(
    name: str,
    transitions: dict[str, np.ndarray],
    gymnasium_id: str,
    params: Mapping[str, Any],
    info: dict[str, Any],
    ref_min: float,
    ref_max: float,
    gymnasium_spec: Any,
) -> OfflineRLEnvironment:
    import gymnasium as gym

    check_qlearning_dataset(transitions, info["path"])
    probe = gym.make(gymnasium_spec or gymnasium_id)
    observation_dim = int(np.prod(probe.observation_space.shape))
    action_dim = int(np.prod(probe.action_space.shape))
    probe.close()
    for key, expected in (("observations", observation_dim), ("actions", action_dim)):
        found = transitions[key].shape[1]
        if found != expected:
            raise DatasetError(
                f"{info['path']}: key {key!r} has {found} dimensions but {gymnasium_id} has {expected}; "
                "is the file for another environment?"
            )
    return OfflineRLEnvironment(
        name=name,
        dataset=transitions,
        gymnasium_id=gymnasium_id,
        observation_dim=observation_dim,
        action_dim=action_dim,
        max_episode_steps=int(params.get("max_episode_steps", 1000)),
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        info=info,
        gymnasium_spec=gymnasium_spec,
    )


def _apply_corruption(environment: OfflineRLEnvironment, params: Mapping[str, Any], context: CellContext):
    config = CorruptionConfig(
        mode=str(params.get("corruption_mode", "none")),
        fields=parse_fields(params.get("corrupt_fields", ())),
        ratio=float(params.get("corruption_ratio", 0.3)),
        scale=float(params.get("corruption_scale", 1.0)),
        attack_steps=int(params.get("adversarial_attack_steps", 100)),
    )
    if not config.active:
        return environment
    critic_steps = int(params.get("adversarial_critic_steps", 10000))

    def critic_factory() -> Any:
        from harness_d4rl.adversarial import CriticPretrainConfig, cached_critic

        return cached_critic(
            environment.dataset,
            CriticPretrainConfig(gradient_steps=critic_steps),
            Path(context.cache_dir) / "d4rl" / "critics",
            device=context.device,
        )

    corrupted, indices = corrupt_dataset(
        environment.dataset, config, seed=context.seed, critic_factory=critic_factory, device=context.device
    )
    environment.dataset = corrupted
    environment.info["corruption"] = {
        "mode": config.mode,
        "ratio": config.ratio,
        "scale": config.scale,
        "corrupted_fraction": corruption_summary(indices, len(corrupted["rewards"])),
        "seed": context.seed,
    }
    if config.mode == "adversarial":
        environment.info["corruption"]["critic_steps"] = critic_steps
    return environment


def _generate_tiny(env_name: str, quality: str, params: Mapping[str, Any], context: CellContext) -> Path:
    """A small generated dataset in the shared cache (one per env, quality, size and SAC budget)."""
    from harness_d4rl.generation import GenerationConfig, generate_dataset

    steps = int(context.budget_value("d4rl_generate_steps", params.get("generate_steps", 5000)))
    budget = int(context.budget_value("d4rl_generate_budget", params.get("generate_budget", 3000)))
    folder = Path(context.cache_dir) / "d4rl" / f"steps{steps}"
    out = folder / generated_file_name(env_name, quality, budget)
    config = GenerationConfig(
        env=env_name, quality=quality, steps=steps, budget=budget, seed=0, out=out, device=context.device
    )
    shared_setup = getattr(context, "shared_setup", None)
    # Later cells read the same file from the cache: generating it is shared setup, not this cell's time.
    with shared_setup("generating dataset") if shared_setup else contextlib.nullcontext():
        return generate_dataset(config, progress=getattr(context, "progress", None))
