"""D4RL data path timings: HDF5 read, qlearning_dataset (against a plain loop like D4RL's), corruption, rollouts.

    .venv/bin/python benchmarks/d4rl/bench_d4rl_data.py [--rows 1000000]

Prints a Markdown table. The loop baseline follows D4RL's ``qlearning_dataset`` step by step (a Python loop
over rows); both results are checked equal before any time is reported. Times are medians of --repeats runs
on this machine (CPU; numbers from a shared 2-core machine are noisy, ratios measured side by side are not).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from harness_d4rl.corruption import CorruptionConfig, corrupt_dataset
from harness_d4rl.generation import GenerationConfig, collect_rollouts
from harness_d4rl.loading import qlearning_dataset, read_d4rl_hdf5


def loop_qlearning_dataset(dataset: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The row-by-row loop of D4RL's qlearning_dataset (timeouts present, terminate_on_end False)."""
    obs_, next_obs_, action_, reward_, done_ = [], [], [], [], []
    for i in range(len(dataset["rewards"]) - 1):
        if dataset["timeouts"][i]:
            continue
        obs_.append(dataset["observations"][i].astype(np.float32))
        next_obs_.append(dataset["observations"][i + 1].astype(np.float32))
        action_.append(dataset["actions"][i].astype(np.float32))
        reward_.append(dataset["rewards"][i].astype(np.float32))
        done_.append(bool(dataset["terminals"][i]))
    return {
        "observations": np.array(obs_),
        "actions": np.array(action_),
        "next_observations": np.array(next_obs_),
        "rewards": np.array(reward_),
        "terminals": np.array(done_).astype(np.float32),
    }


def synthetic_file(path: Path, rows: int) -> None:
    """Hopper-shaped rows: 1000-step episodes with early terminations, like a medium dataset."""
    rng = np.random.default_rng(0)
    terminals = rng.random(rows) < 0.002
    timeouts = np.zeros(rows, dtype=bool)
    timeouts[999::1000] = True
    timeouts &= ~terminals
    with h5py.File(path, "w") as handle:
        handle["observations"] = rng.normal(size=(rows, 11)).astype(np.float32)
        handle["actions"] = rng.uniform(-1, 1, size=(rows, 3)).astype(np.float32)
        handle["rewards"] = rng.normal(size=rows).astype(np.float32)
        handle["terminals"] = terminals
        handle["timeouts"] = timeouts


def timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rollout-steps", type=int, default=5000)
    args = parser.parse_args()
    rows_table = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "synthetic.hdf5"
        synthetic_file(path, args.rows)
        read_s, (arrays, _) = timed(lambda: read_d4rl_hdf5(path), args.repeats)
        rows_table.append(("read_d4rl_hdf5", read_s, args.rows / read_s, ""))
        ours_s, ours = timed(lambda: qlearning_dataset(arrays), args.repeats)
        loop_s, reference = timed(lambda: loop_qlearning_dataset(arrays), 1)
        for key in reference:
            np.testing.assert_array_equal(ours[key], reference[key], err_msg=key)
        rows_table.append(
            (
                "qlearning_dataset (vectorised)",
                ours_s,
                args.rows / ours_s,
                f"{loop_s / ours_s:.0f}x faster than the loop, identical output",
            )
        )
        rows_table.append(("qlearning_dataset (D4RL-style loop)", loop_s, args.rows / loop_s, "baseline, 1 run"))
        config = CorruptionConfig(mode="random", ratio=0.3, scale=1.0)
        corrupt_s, _ = timed(lambda: corrupt_dataset(ours, config, seed=0), args.repeats)
        rows_table.append(("random corruption, 4 fields, ratio 0.3", corrupt_s, args.rows / corrupt_s, ""))
        generation = GenerationConfig(env="hopper", quality="random", steps=args.rollout_steps, checkpoint_every=10**9)
        rollout_s, _ = timed(
            lambda: collect_rollouts(generation, None, Path(folder) / "absent.npz", lambda message: None), 1
        )
        rows_table.append(
            (
                "rollouts, random policy, Hopper-v5",
                rollout_s,
                args.rollout_steps / rollout_s,
                "env steps incl. qpos/qvel capture",
            )
        )
    print("| operation | seconds | rows/s | note |\n|---|---|---|---|")
    for name, seconds, rate, note in rows_table:
        print(f"| {name} | {seconds:.3f} | {rate:,.0f} | {note} |")


if __name__ == "__main__":
    main()
