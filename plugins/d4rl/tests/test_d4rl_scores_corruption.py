"""Normalized scores and RIQL corruption, on small synthetic qlearning datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from harness_d4rl.corruption import CorruptionConfig, corrupt_dataset
from harness_d4rl.environment import OfflineRLEnvironment
from harness_d4rl.metrics import normalized_score as normalized_score_metric
from harness_d4rl.references import TASKS, normalized_score


def test_reference_scores_are_d4rl_values() -> None:
    expected = {
        "hopper": (-20.272305, 3234.3),
        "halfcheetah": (-280.178953, 12135.0),
        "walker2d": (1.629008, 4592.3),
        "ant": (-325.6, 3879.7),
    }
    for name, (low, high) in expected.items():
        assert (TASKS[name].ref_min_score, TASKS[name].ref_max_score) == (low, high)
        assert normalized_score(low, low, high) == 0.0
        assert normalized_score(high, low, high) == pytest.approx(100.0)
    # 1000 on hopper: 100 * (1000 + 20.272305) / (3234.3 + 20.272305)
    assert normalized_score(1000.0, -20.272305, 3234.3) == pytest.approx(31.348890, abs=1e-5)
    assert normalized_score(6000.0, -280.178953, 12135.0) == pytest.approx(50.584683, abs=1e-5)


def _environment(dataset: dict[str, np.ndarray]) -> OfflineRLEnvironment:
    hopper = TASKS["hopper"]
    return OfflineRLEnvironment(
        "hopper-test", dataset, "Hopper-v5", 11, 3, 1000, hopper.ref_min_score, hopper.ref_max_score
    )


def test_normalized_score_metric_averages_episodes() -> None:
    environment = _environment({})
    low, high = TASKS["hopper"].ref_min_score, TASKS["hopper"].ref_max_score
    value = normalized_score_metric(outcome={"eval_returns": [low, high]}, environment=environment)
    assert value == pytest.approx(50.0)
    assert normalized_score_metric(outcome={"return_mean": high}, environment=environment) == pytest.approx(100)
    assert normalized_score_metric(outcome={}, environment=environment) is None


def synthetic_dataset(rows: int = 20000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    scales = np.array([1.0, 5.0, 0.1], dtype=np.float32)
    return {
        "observations": (rng.normal(size=(rows, 3)) * scales).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(rows, 2)).astype(np.float32),
        "rewards": rng.normal(1.0, 0.5, size=rows).astype(np.float32),
        "next_observations": (rng.normal(size=(rows, 3)) * scales).astype(np.float32),
        "terminals": (rng.random(rows) < 0.01).astype(np.float32),
    }


def test_random_corruption_fraction_scale_and_determinism() -> None:
    clean = synthetic_dataset()
    config = CorruptionConfig(mode="random", ratio=0.3, scale=0.5)
    corrupted, indices = corrupt_dataset(clean, config, seed=3)
    rows = len(clean["rewards"])
    for name in ("observations", "actions", "rewards", "next_observations"):
        changed = np.flatnonzero(np.any((corrupted[name] != clean[name]).reshape(rows, -1), axis=1))
        np.testing.assert_array_equal(changed, indices[name])  # only the chosen rows changed
        assert abs(len(changed) / rows - 0.3) < 0.02
    # Fields get independent index sets (RIQL resamples per field).
    assert not np.array_equal(indices["observations"], indices["actions"])
    np.testing.assert_array_equal(corrupted["terminals"], clean["terminals"])
    # Observations move by U(-scale, scale) * per-dimension std: within the box, and spread over it.
    chosen = indices["observations"]
    moved = (corrupted["observations"][chosen] - clean["observations"][chosen]) / clean["observations"].std(0)
    assert np.abs(moved).max() <= 0.5 + 1e-5 and np.abs(moved).max() > 0.49
    assert np.abs(moved.mean(axis=0)).max() < 0.02
    # Rewards are replaced by U(-30 scale, 30 scale).
    rewards = corrupted["rewards"][indices["rewards"]]
    assert rewards.min() >= -15.0 and rewards.max() <= 15.0 and rewards.max() > 14.5 and rewards.min() < -14.5
    again, _ = corrupt_dataset(clean, config, seed=3)
    other, _ = corrupt_dataset(clean, config, seed=4)
    for name in clean:
        np.testing.assert_array_equal(again[name], corrupted[name])
    assert not np.array_equal(other["observations"], corrupted["observations"])
    # Choosing another set of fields leaves a field's corruption unchanged.
    rewards_only, _ = corrupt_dataset(clean, CorruptionConfig("random", ("rewards",), 0.3, 0.5), seed=3)
    np.testing.assert_array_equal(rewards_only["rewards"], corrupted["rewards"])
    np.testing.assert_array_equal(rewards_only["observations"], clean["observations"])


def test_corruption_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="corrupt_fields has 'reward'"):
        CorruptionConfig(mode="random", fields=("reward",))
    with pytest.raises(ValueError, match="corruption_mode"):
        CorruptionConfig(mode="sometimes")
    with pytest.raises(ValueError, match="corruption_ratio"):
        CorruptionConfig(mode="random", ratio=1.5)


def test_adversarial_rewards_flip_and_perturbations_lower_a_pretrained_q(tmp_path: Path) -> None:
    import torch
    from harness_d4rl.adversarial import CriticPretrainConfig, cached_critic

    torch.set_num_threads(1)  # tiny networks: a second thread only adds synchronisation on a busy CPU

    clean = synthetic_dataset(rows=2000)
    # Rewards that depend on the action make the critic's gradient informative.
    clean["rewards"] = (1.0 + clean["actions"].sum(axis=1)).astype(np.float32)
    critic_config = CriticPretrainConfig(gradient_steps=300, hidden_dim=32, batch_size=64)
    critic = cached_critic(clean, critic_config, tmp_path / "critics")
    assert len(list((tmp_path / "critics").glob("*.pt"))) == 1
    cached = cached_critic(clean, critic_config, tmp_path / "critics")  # loaded, not retrained
    for a, b in zip(critic.parameters(), cached.parameters(), strict=True):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())
    config = CorruptionConfig(mode="adversarial", fields=("actions", "rewards"), ratio=0.3, scale=1.0, attack_steps=20)
    corrupted, indices = corrupt_dataset(clean, config, seed=0, critic_factory=lambda: critic)
    chosen = indices["rewards"]
    np.testing.assert_allclose(corrupted["rewards"][chosen], -clean["rewards"][chosen])
    chosen = indices["actions"]
    delta = corrupted["actions"][chosen] - clean["actions"][chosen]
    std = clean["actions"].std(0)
    assert np.all(np.abs(delta) <= std * 1.0 + 1e-5)

    with torch.no_grad():
        obs = torch.as_tensor(clean["observations"][chosen])
        before = critic.mean_q(obs, torch.as_tensor(clean["actions"][chosen])).mean().item()
        after = critic.mean_q(obs, torch.as_tensor(corrupted["actions"][chosen])).mean().item()
    assert after < before - 0.1
