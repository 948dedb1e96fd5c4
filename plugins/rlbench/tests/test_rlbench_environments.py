"""harness_rlbench: spec listing, RLBench availability, Meta-World experts, demonstrations and rewards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import harness_rlbench
import numpy as np
import pytest
from harness_rlbench import metaworld_tasks, rlbench_tasks
from harness_rlbench.manipulation import DEMO_KEYS, TASK_KIND

from harness import CellContext
from harness.plugins import load_plugins
from harness.specs import resolve_callable

EXPERT_EPISODES_PER_TASK = 50  # issue 5: >= 90% per listed task; benchmarks/rlbench/expert_success.py runs 100


def _context(tmp_path: Path, seed: int = 0, cache: bool = False) -> CellContext:
    return CellContext(
        seed=seed,
        checkpoint_dir=tmp_path / "ck",
        cache_dir=tmp_path / "cache" if cache else None,  # type: ignore[arg-type]
    )


def _make(name: str, tmp_path: Path, seed: int = 0, cache: bool = False, **overrides):
    spec = load_plugins().get("environment", name).spec
    params = spec.resolve_params(overrides)
    return resolve_callable(spec.make)(params=params, context=_context(tmp_path, seed, cache))


def test_plugin_lists_every_task_without_importing_simulators() -> None:
    assert harness_rlbench.METAWORLD_TASKS == tuple(metaworld_tasks.TASKS)
    assert harness_rlbench.RLBENCH_TASKS == tuple(rlbench_tasks.TASKS)
    registry = load_plugins()
    assert registry.plugins["rlbench"].problems == []
    names = registry.names("environment")
    for task in harness_rlbench.METAWORLD_TASKS:
        assert f"metaworld-{task}" in names
        spec = registry.get("environment", f"metaworld-{task}").spec
        assert spec.task_kind == TASK_KIND and spec.unavailable_reason() is None
        assert "RLBench" not in spec.description.replace("RLBench's protocol", "")
    for task in harness_rlbench.RLBENCH_TASKS:
        assert f"rlbench-{task}" in names
    probe = (
        "import sys, harness_rlbench; harness_rlbench.harness_environments(); "
        "print(sorted(m for m in ('gymnasium', 'metaworld', 'mujoco', 'rlbench', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_rlbench_specs_are_unavailable_with_what_to_install(tmp_path: Path) -> None:
    assert rlbench_tasks.requires() is not None, "this test documents the machine without CoppeliaSim"
    registry = load_plugins()
    for task in harness_rlbench.RLBENCH_TASKS:
        reason = registry.get("environment", f"rlbench-{task}").spec.unavailable_reason()
        assert reason is not None
        for needed in ("CoppeliaSim", "PyRep", "RLBench", "COPPELIASIM_ROOT"):
            assert needed in reason
    with pytest.raises(RuntimeError, match="CoppeliaSim"):
        _make("rlbench-reach-target", tmp_path)


@pytest.mark.parametrize("task", list(metaworld_tasks.TASKS))
def test_scripted_expert_succeeds_on_at_least_90_percent(task: str) -> None:
    env = metaworld_tasks.make_metaworld_env(task, seed=0)
    expert = metaworld_tasks.make_expert(task)
    try:
        results = [
            metaworld_tasks.run_expert_episode(env, expert, seed=0 if i == 0 else None)
            for i in range(EXPERT_EPISODES_PER_TASK)
        ]
    finally:
        env.close()
    assert np.mean([r.success for r in results]) >= 0.9
    # Success terminates the episode under the default protocol, with reward 1 on exactly that step.
    for result in results:
        if result.success:
            assert result.terminals[-1] and result.rewards[-1] == 1.0 and sum(result.rewards) == 1.0


def test_demonstrations_layout_and_seed_determinism(tmp_path: Path) -> None:
    first = _make("metaworld-reach", tmp_path / "a", seed=0, n_demos=4)
    again = _make("metaworld-reach", tmp_path / "b", seed=0, n_demos=4)
    other = _make("metaworld-reach", tmp_path / "c", seed=1, n_demos=4)
    demos = first.demonstrations
    n = len(demos["actions"])
    assert set(demos) == set(DEMO_KEYS) and n > 4
    assert demos["observations"].shape == (n, first.observation_dim) == (n, 39)
    assert demos["next_observations"].shape == (n, 39) and demos["actions"].shape == (n, first.action_dim)
    assert demos["observations"].dtype == np.float32 and demos["terminals"].dtype == bool
    assert np.all(np.abs(demos["actions"]) <= 1.0)
    # Four successful episodes: four terminal steps, each the only rewarded step of its episode.
    assert demos["terminals"].sum() == 4 and demos["terminals"][-1]
    assert np.array_equal(demos["rewards"], demos["terminals"].astype(np.float32))
    # Consecutive within an episode: next_observations[t] == observations[t + 1] where not terminal.
    inside = ~demos["terminals"][:-1]
    assert np.array_equal(demos["next_observations"][:-1][inside], demos["observations"][1:][inside])
    for key in DEMO_KEYS:
        assert np.array_equal(demos[key], again.demonstrations[key]), key
    assert not np.array_equal(demos["observations"][0], other.demonstrations["observations"][0])
    assert first.max_episode_steps == 200 and first.reward_type == "sparse" and first.normalized_score is None
    assert first.name == "metaworld-reach"


def test_demonstrations_are_cached_and_zero_demos_is_empty(tmp_path: Path) -> None:
    collected = _make("metaworld-button-press", tmp_path, seed=3, cache=True, n_demos=2)
    cached = _make("metaworld-button-press", tmp_path, seed=3, cache=True, n_demos=2)
    assert not collected.info["demos_from_cache"] and cached.info["demos_from_cache"]
    for key in DEMO_KEYS:
        assert np.array_equal(collected.demonstrations[key], cached.demonstrations[key])
    none = _make("metaworld-button-press", tmp_path, seed=3, n_demos=0)
    assert none.demonstrations["observations"].shape == (0, 39)
    assert none.demonstrations["actions"].shape == (0, 4)


def test_make_env_is_seeded_by_its_argument(tmp_path: Path) -> None:
    environment = _make("metaworld-push", tmp_path, n_demos=0)
    starts = {}
    for seed in (5, 5, 6):
        env = environment.make_env(seed)
        first = env.reset()[0]
        second = env.reset()[0]
        starts.setdefault(seed, []).append((first, second))
        env.close()
    (a1, a2), (b1, b2) = starts[5]
    assert np.array_equal(a1, b1) and np.array_equal(a2, b2)
    assert not np.array_equal(starts[6][0][0], a1)


def test_sparse_reward_is_success_and_dense_is_shaped(tmp_path: Path) -> None:
    sparse = _make("metaworld-reach", tmp_path, n_demos=0).make_env(11)
    dense = _make("metaworld-reach", tmp_path, n_demos=0, reward_type="dense").make_env(11)
    expert = metaworld_tasks.make_expert("reach")
    obs_s, _ = sparse.reset()
    obs_d, _ = dense.reset()
    assert np.array_equal(obs_s, obs_d)
    sparse_rewards, dense_rewards, successes = [], [], []
    for _ in range(200):
        action = metaworld_tasks.expert_action(expert, obs_s)
        obs_s, r_s, term_s, trunc_s, info_s = sparse.step(action)
        obs_d, r_d, term_d, trunc_d, info_d = dense.step(action)
        assert np.array_equal(obs_s, obs_d), "the reward type must not change the dynamics"
        assert term_s or trunc_s or not (term_d or trunc_d), "both episodes end at the same step"
        assert isinstance(info_s["success"], bool) and info_s["success"] == info_d["success"]
        sparse_rewards.append(r_s)
        dense_rewards.append(r_d)
        successes.append(info_s["success"])
        if term_s or trunc_s:
            break
    assert successes[-1], "the reach expert reaches within the episode"
    # Success ends both episodes: as the terminal state of the sparse task, as a cut of the dense one (its
    # positive shaped reward would otherwise make succeeding cost return).
    assert (term_s, trunc_s) == (True, False) and (term_d, trunc_d) == (False, True)
    assert sparse_rewards == [float(s) for s in successes]
    assert len(set(dense_rewards)) > 5 and dense_rewards[-1] > dense_rewards[0] > 0.0


def test_bad_parameters_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_episode_steps"):
        _make("metaworld-reach", tmp_path, n_demos=0, max_episode_steps=501)
    with pytest.raises(ValueError, match="n_demos"):
        _make("metaworld-reach", tmp_path, n_demos=-1)
    with pytest.raises(ValueError, match="unknown Meta-World task"):
        metaworld_tasks.make_metaworld_env("reach-target", seed=0)
