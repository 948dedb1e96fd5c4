"""Scripted-expert success rate and episode length on every Meta-World task of harness_rlbench.

The experts stand in for RLBench's motion-planner demonstrations, so they must be reliable under the plugin's
protocol (episode cap ``max_episode_steps``, termination on success). Episodes are seeded: seed ``s`` builds the
MT1 environment (its 50 goal configurations) and seeds the first reset; later resets draw configurations from it.

    .venv/bin/python benchmarks/rlbench/expert_success.py --episodes 50 --seeds 0 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from harness_rlbench.metaworld_tasks import TASKS, make_expert, make_metaworld_env, run_expert_episode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50, help="episodes per task and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--max-episode-steps", type=int, default=200)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = parser.parse_args()
    print("| task | episodes | success rate | mean length | max length | expert steps/s |")
    print("|---|---|---|---|---|---|")
    for task in args.tasks:
        successes, lengths, steps, seconds = [], [], 0, 0.0
        expert = make_expert(task)
        for seed in args.seeds:
            env = make_metaworld_env(task, seed, max_episode_steps=args.max_episode_steps)
            start = time.perf_counter()
            for episode in range(args.episodes):
                result = run_expert_episode(env, expert, seed=seed if episode == 0 else None)
                successes.append(result.success)
                lengths.append(len(result))
                steps += len(result)
            seconds += time.perf_counter() - start
            env.close()
        print(
            f"| {task} | {len(successes)} | {np.mean(successes):.3f} | {np.mean(lengths):.0f} | "
            f"{max(lengths)} | {steps / seconds:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
