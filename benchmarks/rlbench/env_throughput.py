"""Environment steps per second of a random policy: through the harness vs a bare Meta-World loop.

"Through the harness": the ``metaworld-<task>`` environment object made by the plugin's ``make`` (the
manipulation wrapper: float32 observations, boolean success, sparse reward), stepped by
``harness_rl.common.evaluate_policy`` exactly as the rl plugin evaluates a policy (seeded reset per episode,
action scaling, success bookkeeping). "Bare": ``gym.make("Meta-World/MT1", ...)`` with the same episode cap,
termination on success and no environment checker, stepped in a plain loop. Both draw the same uniform random
actions from the same generator. Rounds alternate bare/harness so that load changes on a shared machine hit
both alike; the table reports medians over rounds and the median of the per-round ratios.

    .venv/bin/python benchmarks/rlbench/env_throughput.py --rounds 15 --episodes 4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import metaworld  # noqa: F401 - registers Meta-World/MT1
import numpy as np
from harness_rl.common import evaluate_policy

from harness import CellContext
from harness.plugins import load_plugins
from harness.specs import resolve_callable


def bare_steps_per_s(env_name: str, seed: int, episodes: int, max_steps: int, rng: np.random.Generator) -> float:
    env = gym.make(
        "Meta-World/MT1",
        env_name=env_name,
        seed=seed,
        terminate_on_success=True,
        max_episode_steps=max_steps,
        disable_env_checker=True,
    )
    steps = 0
    start = time.perf_counter()
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        while True:
            _, _, terminated, truncated, _ = env.step(rng.uniform(-1.0, 1.0, 4).astype(np.float32))
            steps += 1
            if terminated or truncated:
                break
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def harness_steps_per_s(environment, seed: int, episodes: int, rng: np.random.Generator) -> float:
    result = evaluate_policy(
        environment.make_env,
        lambda obs: rng.uniform(-1.0, 1.0, 4).astype(np.float32),
        episodes,
        seed=seed,
        max_episode_steps=environment.max_episode_steps,
    )
    return result["env_steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["reach", "push", "drawer-open"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--episodes", type=int, default=4, help="episodes per timed block")
    args = parser.parse_args()
    registry = load_plugins()
    print("| task | bare Meta-World steps/s | through harness steps/s | harness / bare (median of rounds) |")
    print("|---|---|---|---|")
    for task in args.tasks:
        spec = registry.get("environment", f"metaworld-{task}").spec
        with tempfile.TemporaryDirectory() as tmp:
            context = CellContext(seed=0, checkpoint_dir=Path(tmp) / "ck", cache_dir=Path(tmp) / "cache")
            environment = resolve_callable(spec.make)(params=spec.resolve_params({"n_demos": 0}), context=context)
        env_name = environment.info["env_name"]
        bare, harness, ratios = [], [], []
        for round_index in range(args.rounds):
            seed = 1000 + round_index
            order = ("bare", "harness") if round_index % 2 == 0 else ("harness", "bare")
            measured = {}
            for which in order:
                rng = np.random.default_rng(seed)  # the same actions for both
                if which == "bare":
                    measured[which] = bare_steps_per_s(
                        env_name, seed, args.episodes, environment.max_episode_steps, rng
                    )
                else:
                    measured[which] = harness_steps_per_s(environment, seed, args.episodes, rng)
            bare.append(measured["bare"])
            harness.append(measured["harness"])
            ratios.append(measured["harness"] / measured["bare"])
        print(
            f"| {task} | {statistics.median(bare):.0f} | {statistics.median(harness):.0f} | "
            f"{statistics.median(ratios):.3f} (IQR {np.percentile(ratios, 25):.3f}-{np.percentile(ratios, 75):.3f}) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
