"""D4RL HDF5 reading and qlearning_dataset semantics, on small hand-built files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from harness_d4rl.environment import make
from harness_d4rl.loading import (
    DatasetError,
    find_dataset,
    qlearning_dataset,
    read_d4rl_hdf5,
)
from harness_d4rl.plugin import harness_environments
from harness_d4rl.references import d4rl_file_name, generated_file_name

from harness import CellContext


def write_file(path: Path, arrays: dict[str, np.ndarray], attrs: dict | None = None) -> Path:
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=value)
        for key, value in (attrs or {}).items():
            handle.attrs[key] = value
    return path


def hand_built_rows() -> dict[str, np.ndarray]:
    """Eight rows: episode A (rows 0-2) ends by a timeout, episode B (rows 3-4) by a termination, episode C
    (rows 5-7) runs into the end of the file. Observation i is [i, 10 i] so every row is recognisable."""
    rows = 8
    observations = np.stack([np.arange(rows), 10 * np.arange(rows)], axis=1).astype(np.float64)
    return {
        "observations": observations,
        "actions": (np.arange(rows, dtype=np.float64)[:, None] / 10.0),
        "rewards": np.arange(rows, dtype=np.float64)[:, None] + 0.5,  # (N, 1) as in some D4RL files
        "terminals": np.array([0, 0, 0, 0, 1, 0, 0, 0], dtype=bool)[:, None],
        "timeouts": np.array([0, 0, 1, 0, 0, 0, 0, 0], dtype=bool),
        # Stored next observations deliberately differ from the following row: D4RL ignores them.
        "next_observations": observations + 1000.0,
        "infos/qpos": np.zeros((rows, 3)),
    }


def test_qlearning_dataset_follows_d4rl_exactly(tmp_path: Path) -> None:
    arrays, _ = read_d4rl_hdf5(write_file(tmp_path / "hand.hdf5", hand_built_rows()))
    assert arrays["rewards"].shape == (8,) and arrays["terminals"].shape == (8,)  # (N, 1) squeezed
    transitions = qlearning_dataset(arrays)
    # Row 2 (timeout) and row 7 (the last row, no following row) are dropped; row 4 (terminal) is kept.
    kept = np.array([0, 1, 3, 4, 5, 6])
    np.testing.assert_array_equal(transitions["observations"][:, 0], kept)
    np.testing.assert_array_equal(transitions["next_observations"][:, 0], kept + 1)  # from the next row
    np.testing.assert_array_equal(transitions["next_observations"][:, 1], 10 * (kept + 1))
    np.testing.assert_allclose(transitions["actions"][:, 0], kept / 10.0, rtol=1e-6)
    np.testing.assert_allclose(transitions["rewards"], kept + 0.5)
    np.testing.assert_array_equal(transitions["terminals"], [0, 0, 0, 1, 0, 0])
    for key, value in transitions.items():
        assert value.dtype == np.float32, key
    assert transitions["rewards"].shape == (6,) and transitions["terminals"].shape == (6,)


def test_terminate_on_end_keeps_timeout_transitions(tmp_path: Path) -> None:
    arrays, _ = read_d4rl_hdf5(write_file(tmp_path / "hand.hdf5", hand_built_rows()))
    transitions = qlearning_dataset(arrays, terminate_on_end=True)
    np.testing.assert_array_equal(transitions["observations"][:, 0], np.arange(7))
    assert transitions["terminals"][2] == 0.0  # D4RL does not mark a timeout as terminal


def test_without_timeouts_episode_length_decides(tmp_path: Path) -> None:
    rows = hand_built_rows()
    del rows["timeouts"]
    # max_episode_steps=3: steps 0-1 kept, step 2 is final and dropped; the counter restarts after it and
    # after the terminal at row 4 (D4RL's counter then starts at 1, so row 6 is final again).
    transitions = qlearning_dataset(rows, max_episode_steps=3)
    np.testing.assert_array_equal(transitions["observations"][:, 0], [0, 1, 3, 4, 5])


def test_missing_file_and_key_and_length_mismatch_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        read_d4rl_hdf5(tmp_path / "absent.hdf5")
    rows = hand_built_rows()
    del rows["actions"]
    with pytest.raises(DatasetError, match="missing key 'actions'"):
        read_d4rl_hdf5(write_file(tmp_path / "no_actions.hdf5", rows))
    rows = hand_built_rows()
    rows["rewards"] = rows["rewards"][:5]
    with pytest.raises(DatasetError, match="key 'rewards' has 5 rows but 'observations' has 8"):
        read_d4rl_hdf5(write_file(tmp_path / "short_rewards.hdf5", rows))
    rows = hand_built_rows()
    rows["infos/qpos"] = rows["infos/qpos"][:7]
    with pytest.raises(DatasetError, match="'infos/qpos' has 7 rows"):
        read_d4rl_hdf5(write_file(tmp_path / "short_infos.hdf5", rows))
    (tmp_path / "garbage.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        read_d4rl_hdf5(tmp_path / "garbage.hdf5")


def test_missing_dataset_lists_paths_searched_and_how_to_generate(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as error:
        find_dataset("hopper", "medium-replay", [tmp_path])
    message = str(error.value)
    assert str(tmp_path / "hopper_medium_replay-v2.hdf5") in message
    assert str(tmp_path / generated_file_name("hopper", "medium-replay")) in message
    assert "harness data d4rl generate --env hopper --quality medium-replay" in message


def test_search_prefers_d4rl_then_full_generated_then_largest_budget(tmp_path: Path) -> None:
    rows = hand_built_rows()
    small = write_file(tmp_path / generated_file_name("walker2d", "medium", 500), rows)
    large = write_file(tmp_path / generated_file_name("walker2d", "medium", 20000), rows)
    assert find_dataset("walker2d", "medium", [tmp_path]) == (large, True)
    large.unlink()
    assert find_dataset("walker2d", "medium", [tmp_path]) == (small, True)
    full = write_file(tmp_path / generated_file_name("walker2d", "medium"), rows)
    assert find_dataset("walker2d", "medium", [tmp_path]) == (full, True)
    real = write_file(tmp_path / d4rl_file_name("walker2d", "medium"), rows)
    assert find_dataset("walker2d", "medium", [tmp_path]) == (real, False)
    assert real.name == "walker2d_medium-v2.hdf5"
    with pytest.raises(DatasetError):
        find_dataset("walker2d", "medium", [tmp_path / "empty"], allow_generated=False)


def _hopper_rows(rows: int, rng: np.random.Generator, obs_dim: int = 11) -> dict[str, np.ndarray]:
    timeouts = np.zeros(rows, dtype=bool)
    timeouts[rows // 2] = True
    return {
        "observations": rng.normal(size=(rows, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(rows, 3 if obs_dim == 11 else 8)).astype(np.float32),
        "rewards": rng.normal(size=rows).astype(np.float32),
        "terminals": np.zeros(rows, dtype=bool),
        "timeouts": timeouts,
    }


def test_environment_make_loads_from_dataset_dir_and_evaluates(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    write_file(tmp_path / "hopper_medium-v2.hdf5", _hopper_rows(50, rng))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    spec = next(s for s in harness_environments() if s.name == "hopper-medium")
    context = CellContext(seed=0, checkpoint_dir=tmp_path / "ck", cache_dir=tmp_path / "cache")
    environment = make(params=spec.defaults, context=context)
    assert environment.dataset["observations"].shape == (48, 11)  # timeout row and last row dropped
    assert (environment.observation_dim, environment.action_dim) == (11, 3)
    assert environment.max_episode_steps == 1000 and environment.name == "hopper-medium"
    assert environment.info["generated"] is False and environment.info["path"].endswith("hopper_medium-v2.hdf5")
    assert "Gymnasium MuJoCo v5" in environment.info["note"] and "v2" in environment.info["note"]
    env = environment.make_env(3)
    obs, _ = env.reset()
    assert obs.shape == (11,)
    env.close()
    assert "Gymnasium MuJoCo v5" in spec.description and "differ slightly" in spec.description


def test_environment_refuses_a_file_for_another_environment(tmp_path: Path) -> None:
    path = write_file(tmp_path / "x.hdf5", _hopper_rows(20, np.random.default_rng(0)))
    spec = next(s for s in harness_environments() if s.name == "d4rl-dataset")
    context = CellContext(seed=0, checkpoint_dir=tmp_path / "ck", cache_dir=tmp_path / "cache")
    params = spec.resolve_params({"path": str(path), "env": "walker2d"})
    with pytest.raises(DatasetError, match="'observations' has 11 dimensions but Walker2d-v5 has 17"):
        make(params=params, context=context)


def test_d4rl_ant_observations_are_mapped_to_v5(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = _hopper_rows(20, rng, obs_dim=111)
    rows["observations"][:, 27:33] = 0.0  # the world body's contact forces, always zero in D4RL's files
    path = write_file(tmp_path / "ant.hdf5", rows)
    spec = next(s for s in harness_environments() if s.name == "ant-medium")
    context = CellContext(seed=0, checkpoint_dir=tmp_path / "ck", cache_dir=tmp_path / "cache")
    environment = make(params=spec.resolve_params({"path": str(path)}), context=context)
    observations = environment.dataset["observations"]
    assert observations.shape[1] == 105 == environment.observation_dim
    kept = np.delete(np.arange(19), 10)  # row 10 is a timeout, row 19 the last row
    np.testing.assert_array_equal(observations[:, :27], rows["observations"][kept, :27])
    np.testing.assert_array_equal(observations[:, 27:], rows["observations"][kept, 33:])


@pytest.mark.parametrize(
    ("key", "row", "value"), [("observations", 5, np.nan), ("actions", 2, np.inf), ("rewards", 4, -np.inf)]
)
def test_non_finite_values_are_refused_naming_the_file_key_and_first_row(
    tmp_path: Path, key: str, row: int, value: float
) -> None:
    arrays = hand_built_rows()
    arrays[key] = np.array(arrays[key], dtype=np.float64)
    arrays[key][row] = value
    arrays[key][-1] = value  # a second bad row: the first one is named
    path = write_file(tmp_path / "bad.hdf5", arrays)
    with pytest.raises(DatasetError) as caught:
        read_d4rl_hdf5(path)
    message = str(caught.value)
    assert str(path) in message and f"key {key!r}" in message and f"at row {row}" in message
    assert "2 row(s) in all" in message
