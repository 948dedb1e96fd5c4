"""SAC as a library: trains, checkpoints, resumes, kick-starts from demonstrations, saves and loads agents."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from harness_rl.sac import SACConfig, load_agent, save_agent, train_sac

TINY = SACConfig(learning_starts=64, batch_size=32, hidden_dim=32)


def make_pendulum(seed: int) -> gym.Env:
    return gym.make("Pendulum-v1", max_episode_steps=50)


def test_sac_trains_and_returns_a_qlearning_replay_buffer():
    result = train_sac(make_pendulum, total_steps=150, seed=0, config=TINY)
    buffer = result.replay_buffer
    assert set(buffer) == {"observations", "actions", "rewards", "next_observations", "terminals", "timeouts"}
    assert buffer["observations"].shape == (150, 3) and buffer["actions"].shape == (150, 1)
    assert np.all(np.abs(buffer["actions"]) <= 1.0)
    # Pendulum only truncates: every 50th transition is a timeout, none is terminal.
    assert buffer["timeouts"].sum() == 3 and buffer["terminals"].sum() == 0
    assert len(result.episode_returns) == 3
    assert result.gradient_steps == 150 - 64 + 1
    action = result.agent.act(np.zeros(3, np.float32))
    assert action.shape == (1,) and -2.0 <= action[0] <= 2.0  # scaled to Pendulum's [-2, 2] bounds


def test_sac_resume_continues_from_checkpoint(tmp_path):
    checkpoint = tmp_path / "sac.pt"
    first = train_sac(make_pendulum, total_steps=100, seed=1, checkpoint_path=checkpoint, config=TINY)
    assert checkpoint.exists() and first.env_steps == 100
    resumed = train_sac(make_pendulum, total_steps=160, seed=1, checkpoint_path=checkpoint, config=TINY)
    assert resumed.env_steps == 160
    assert len(resumed.replay_buffer["observations"]) == 160  # the buffer was restored, not refilled
    np.testing.assert_array_equal(resumed.replay_buffer["observations"][:100], first.replay_buffer["observations"])
    assert resumed.gradient_steps == 160 - 64 + 1
    assert resumed.episode_returns[:2] == first.episode_returns
    # Asking for what is already done does nothing more.
    again = train_sac(make_pendulum, total_steps=160, seed=1, checkpoint_path=checkpoint, config=TINY)
    assert again.gradient_steps == resumed.gradient_steps


def test_sac_should_stop_interrupts_and_checkpoints(tmp_path):
    checkpoint = tmp_path / "sac.pt"
    calls = iter(range(1000))
    result = train_sac(
        make_pendulum,
        200,
        seed=2,
        checkpoint_path=checkpoint,
        config=TINY,
        should_stop=lambda: next(calls) >= 70,
    )
    assert not result.finished and result.env_steps == 70
    resumed = train_sac(make_pendulum, 200, seed=2, checkpoint_path=checkpoint, config=TINY)
    assert resumed.finished and resumed.env_steps == 200


def test_sac_is_deterministic_for_a_seed():
    a = train_sac(make_pendulum, total_steps=100, seed=3, config=TINY)
    b = train_sac(make_pendulum, total_steps=100, seed=3, config=TINY)
    assert a.episode_returns == b.episode_returns
    obs = np.ones((4, 3), np.float32)
    np.testing.assert_array_equal(a.agent.act(obs), b.agent.act(obs))


def test_sac_demonstrations_start_learning_at_once_and_stay_out_of_the_buffer():
    rng = np.random.default_rng(0)
    demos = {
        "observations": rng.normal(size=(100, 3)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(100, 1)).astype(np.float32),
        "rewards": rng.normal(size=100).astype(np.float32),
        "next_observations": rng.normal(size=(100, 3)).astype(np.float32),
        "terminals": np.zeros(100, np.float32),
    }
    result = train_sac(make_pendulum, total_steps=40, seed=0, config=TINY, demonstrations=demos)
    assert result.gradient_steps == 40  # 100 demos >= learning_starts: an update after every env step
    assert len(result.replay_buffer["observations"]) == 40
    with pytest.raises(ValueError, match="next_observations"):
        train_sac(make_pendulum, 10, seed=0, config=TINY, demonstrations={"observations": demos["observations"]})


def test_sac_stop_at_return_and_agent_round_trip(tmp_path):
    config = SACConfig(learning_starts=64, batch_size=32, hidden_dim=32, return_window=2)
    result = train_sac(make_pendulum, total_steps=500, seed=0, config=config, stop_at_return=-1e9)
    assert result.stopped_early and result.env_steps == 100  # stopped after the 2nd episode
    path = tmp_path / "agent.pt"
    save_agent(result.agent, path)
    loaded = load_agent(path)
    obs = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.act(obs), result.agent.act(obs))
    np.testing.assert_allclose(loaded.q_value(obs, np.zeros((5, 1))), result.agent.q_value(obs, np.zeros((5, 1))))
    assert torch.equal(loaded.log_alpha, result.agent.log_alpha.detach())
    with pytest.raises(FileNotFoundError, match="train_sac"):
        load_agent(tmp_path / "missing.pt")


def test_demo_ratio_fixes_the_share_of_each_batch_drawn_from_the_demonstrations():
    from harness_rl.data import ReplayBuffer, sample_batch

    demos = {key: np.full((10, 1 if key in ("actions",) else 3), 7.0, np.float32) for key in
             ("observations", "actions", "next_observations")}  # fmt: skip
    demos.update(rewards=np.ones(10, np.float32), terminals=np.zeros(10, np.float32))
    buffer = ReplayBuffer(3, 1, 1000)
    for _ in range(990):  # online data outnumbers the demos 99 to 1
        buffer.add(np.zeros(3), np.zeros(1), 0.0, np.zeros(3), 0.0, 0.0)
    rng = np.random.default_rng(0)
    half = sample_batch(buffer, demos, 256, rng, torch.device("cpu"), demo_ratio=0.5)
    assert int((half["rewards"] == 1).sum()) == 128
    # The batch marks which rows came from the dataset (ARSQ's penalty applies to those only).
    assert torch.equal(half["from_dataset"], half["rewards"] == 1)
    uniform = sample_batch(buffer, demos, 256, rng, torch.device("cpu"))
    assert int((uniform["rewards"] == 1).sum()) < 16


def test_the_temperature_starts_at_alpha_when_autotuned():
    result = train_sac(make_pendulum, total_steps=64, seed=0, config=SACConfig(learning_starts=1000, alpha=0.05))
    assert result.agent.log_alpha.exp().item() == pytest.approx(0.05)  # no update yet: still the initial value
