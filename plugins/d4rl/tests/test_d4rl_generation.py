"""Dataset generation end to end with tiny budgets, its resumption, the CLI, Minari and make()."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from harness_d4rl.cli import data
from harness_d4rl.environment import make
from harness_d4rl.generation import GenerationConfig, GenerationInterrupted, generate_dataset
from harness_d4rl.loading import qlearning_dataset, read_d4rl_hdf5
from harness_d4rl.plugin import harness_environments

from harness import CellContext

TINY_SAC = 300  # environment steps: 256 random ones, then 44 SAC updates


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks on a shared 2-core CPU: a second thread only adds contention
    yield
    torch.set_num_threads(previous)


def _check_d4rl_rows(arrays: dict[str, np.ndarray]) -> None:
    """Rows are consecutive steps: inside an episode the next row's observation is this row's next one."""
    ends = arrays["terminals"].astype(bool) | arrays["timeouts"].astype(bool)
    assert not np.any(arrays["terminals"].astype(bool) & arrays["timeouts"].astype(bool))
    inside = ~ends[:-1]
    np.testing.assert_array_equal(arrays["next_observations"][:-1][inside], arrays["observations"][1:][inside])
    assert ends[-1]  # the cut last episode is closed by a timeout


def test_random_dataset_schema_labels_and_returns(tmp_path: Path) -> None:
    out = tmp_path / "hopper_random-generated-gymnasium-v5.hdf5"
    path = generate_dataset(GenerationConfig(env="hopper", quality="random", steps=1500, out=out))
    arrays, attrs = read_d4rl_hdf5(path)
    assert len(arrays["rewards"]) == 1500
    assert {"infos/qpos", "infos/qvel", "infos/action_log_probs"} <= set(arrays)
    _check_d4rl_rows(arrays)
    assert attrs["generated"] is True or attrs["generated"] == 1
    assert "NOT the original D4RL data" in attrs["source"] and "Gymnasium" in attrs["note"]
    assert attrs["returns_random_episodes"] > 1
    assert attrs["returns_random_min"] <= attrs["returns_random_mean"] <= attrs["returns_random_max"]
    transitions = qlearning_dataset(arrays)
    assert len(transitions["rewards"]) == 1500 - 1 - int(arrays["timeouts"][:-1].sum())
    # Unchanged settings: the existing file is returned, not regenerated.
    mtime = path.stat().st_mtime_ns
    generate_dataset(GenerationConfig(env="hopper", quality="random", steps=1500, out=out))
    assert path.stat().st_mtime_ns == mtime


def test_interrupted_rollouts_resume_to_the_same_data(tmp_path: Path) -> None:
    whole = generate_dataset(
        GenerationConfig(
            env="walker2d", quality="random", steps=1200, out=tmp_path / "whole.hdf5", checkpoint_every=100
        )
    )
    config = GenerationConfig(
        env="walker2d", quality="random", steps=1200, out=tmp_path / "resumed.hdf5", checkpoint_every=100
    )
    polls = iter(range(1000))
    with pytest.raises(GenerationInterrupted, match="stopped collecting rollouts"):
        generate_dataset(config, should_stop=lambda: next(polls) >= 20)
    partial = config.work_path / "rollout-random.npz"
    with np.load(partial) as saved:
        assert 0 < int(saved["episode_lengths"].sum()) < 1200
    resumed = generate_dataset(config)
    first, _ = read_d4rl_hdf5(whole)
    second, _ = read_d4rl_hdf5(resumed)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_sac_generation_medium_replay_then_medium_expert_and_resume(tmp_path: Path) -> None:
    work = tmp_path / "work"
    config = GenerationConfig(
        env="hopper",
        quality="medium-replay",
        steps=5000,
        budget=TINY_SAC,
        out=tmp_path / "mr.hdf5",
        work_dir=work,
        eval_episodes=1,
    )
    polls = iter(range(10_000))
    with pytest.raises(GenerationInterrupted, match="training the medium policy"):
        generate_dataset(config, should_stop=lambda: next(polls) >= 150)
    assert (work / "medium-sac.pt").is_file()  # SAC checkpointed where it stopped
    path = generate_dataset(config)  # resumes SAC from the checkpoint
    arrays, attrs = read_d4rl_hdf5(path)
    assert len(arrays["rewards"]) == TINY_SAC  # the whole replay buffer of the medium training
    _check_d4rl_rows(arrays)
    summary = json.loads((work / "medium-summary.json").read_text())
    assert summary["env_steps"] == TINY_SAC
    assert attrs["medium_target_reached"] in (False, 0)
    assert attrs["medium_target_return"] == pytest.approx(3234.3 / 3)
    assert attrs["budget_label"] == f"budget{TINY_SAC}" and attrs["sac_env_steps"] == TINY_SAC
    assert "medium_policy_eval_return_mean" in attrs and "returns_medium_replay_mean" in attrs

    both = GenerationConfig(
        env="hopper",
        quality="medium-expert",
        steps=400,
        budget=TINY_SAC,
        out=tmp_path / "me.hdf5",
        work_dir=work,
        eval_episodes=1,
    )
    arrays, attrs = read_d4rl_hdf5(generate_dataset(both))
    assert len(arrays["rewards"]) == 800  # medium rollouts then expert rollouts
    _check_d4rl_rows(arrays)
    assert arrays["timeouts"][399]  # the medium part is closed before the expert part starts
    assert {"returns_medium_mean", "returns_expert_mean", "expert_policy_eval_return_mean"} <= set(attrs)


def test_cli_generate_writes_hdf5_and_minari_that_make_loads(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    result = CliRunner().invoke(
        data, ["d4rl", "generate", "--env", "halfcheetah", "--quality", "random", "--steps", "1100", "--minari"]
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / "d4rl" / "halfcheetah_random-generated-gymnasium-v5.hdf5"
    assert path.is_file()
    info = CliRunner().invoke(data, ["d4rl", "info", str(path)])
    assert info.exit_code == 0 and "generated: True" in info.output

    arrays, _ = read_d4rl_hdf5(path)
    context = CellContext(seed=0, checkpoint_dir=tmp_path / "ck", cache_dir=tmp_path / "cache")
    spec = next(s for s in harness_environments() if s.name == "d4rl-dataset")
    from_minari = make(
        params=spec.resolve_params({"minari_id": "harness-generated/halfcheetah-random-v0"}), context=context
    )
    # Minari keeps every transition with its true next observation: the HDF5 rows exactly.
    np.testing.assert_array_equal(from_minari.dataset["observations"], arrays["observations"])
    np.testing.assert_array_equal(from_minari.dataset["next_observations"], arrays["next_observations"])
    np.testing.assert_allclose(from_minari.dataset["rewards"], arrays["rewards"], rtol=1e-6)
    np.testing.assert_array_equal(from_minari.dataset["terminals"], arrays["terminals"])
    assert from_minari.gymnasium_id == "HalfCheetah-v5" and from_minari.info["generated"]
    assert from_minari.normalized_score(12135.0) == pytest.approx(100.0)

    from_hdf5 = make(
        params=next(s for s in harness_environments() if s.name == "halfcheetah-random").defaults, context=context
    )
    assert from_hdf5.info["generated"] is True and from_hdf5.info["path"] == str(path)
    assert "generator_returns_random_mean" in from_hdf5.info


def test_minari_dataset_with_its_own_reference_scores(tmp_path: Path, monkeypatch) -> None:
    import warnings

    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    rng = np.random.default_rng(0)
    episodes = []
    for number, (length, terminated) in enumerate([(4, True), (3, False)]):
        episodes.append(
            EpisodeBuffer(
                id=number,
                observations=rng.normal(size=(length + 1, 11)).astype(np.float32),
                actions=rng.uniform(-1, 1, size=(length, 3)).astype(np.float32),
                rewards=np.arange(length, dtype=np.float64),
                terminations=np.array([False] * (length - 1) + [terminated]),
                truncations=np.array([False] * (length - 1) + [not terminated]),
                infos={},
            )
        )
    env = gym.make("Hopper-v5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        minari.create_dataset_from_buffers(
            "test/hopper-tiny-v0",
            episodes,
            env=env,
            eval_env=env.spec,
            ref_min_score=10.0,
            ref_max_score=110.0,
            author="tests",
        )
    env.close()
    context = CellContext(seed=0, checkpoint_dir=tmp_path / "ck", cache_dir=tmp_path / "cache")
    spec = next(s for s in harness_environments() if s.name == "d4rl-dataset")
    environment = make(params=spec.resolve_params({"minari_id": "test/hopper-tiny-v0"}), context=context)
    dataset = environment.dataset
    assert len(dataset["rewards"]) == 7  # no transition dropped: Minari stores final observations
    np.testing.assert_array_equal(dataset["observations"][:4], episodes[0].observations[:4])
    np.testing.assert_array_equal(dataset["next_observations"][:4], episodes[0].observations[1:])
    np.testing.assert_array_equal(dataset["next_observations"][4:], episodes[1].observations[1:])
    np.testing.assert_array_equal(dataset["terminals"], [0, 0, 0, 1, 0, 0, 0])
    assert environment.normalized_score(60.0) == pytest.approx(50.0)  # the dataset's own references
    assert environment.info["ref_scores_from"] == "dataset"
    with pytest.raises(Exception, match="not found"):
        make(params=spec.resolve_params({"minari_id": "test/absent-v0"}), context=context)


def test_make_generates_a_tiny_dataset_when_asked_and_corrupts_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "empty"))
    spec = next(s for s in harness_environments() if s.name == "hopper-random")
    context = CellContext(
        seed=5,
        checkpoint_dir=tmp_path / "ck",
        cache_dir=tmp_path / "cache",
        budget={"d4rl_generate_if_missing": True, "d4rl_generate_steps": 800},
    )
    params = spec.resolve_params({"corruption_mode": "random", "corrupt_fields": ["rewards"]})
    environment = make(params=params, context=context)
    assert environment.info["generated"] is True
    assert Path(environment.info["path"]).is_relative_to(tmp_path / "cache")
    fraction = environment.info["corruption"]["corrupted_fraction"]["rewards"]
    assert 0.2 < fraction < 0.4
    with h5py.File(environment.info["path"]) as handle:
        assert len(handle["rewards"]) == 800


def test_policy_training_reports_progress_so_a_long_generation_is_not_silent() -> None:
    from harness_d4rl.generation import _training_progress

    said: list[str] = []
    log = _training_progress("medium", 50_000, said.append, every_s=0.0)
    log("critic_loss", 1.0, 1000)  # losses are not progress
    log("episode_return", 100.0, 1200)
    log("episode_return", 300.0, 2400)
    assert len(said) == 2
    assert said[-1].startswith("  medium: 2400/50000 environment steps") and "training return 200.0" in said[-1]
