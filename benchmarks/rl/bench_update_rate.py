"""Gradient steps per second of IQL and TD3+BC: through the harness against a plain eager PyTorch loop.

What is compared, side by side in one process, rounds interleaved so machine load hits both alike:

* ``plain``: the same update written here without the harness or the plugin (CORL's IQL and TD3+BC updates,
  CORL network sizes: 256x2 hidden layers), a bare ``for`` loop sampling minibatches of 256 from tensors;
* ``harness``: ``harness_rl.iql:run`` / ``harness_rl.td3_bc:run`` called as the runner calls them, with a
  :class:`harness.CellContext`, on a Hopper-v5 environment object (obs 11, act 3) and a dataset of the same
  size; timed end to end (``run``: dataset checks, normalization, the training loop with its deadline
  checks, one checkpoint, one short evaluation episode), and also the rate the outcome reports (update time
  only, wall clock).

Both sides are timed in wall-clock and in process CPU time (``time.process_time``). On a shared, loaded
machine wall-clock rates swing by 2x between rounds; with one torch thread the CPU-time rate is the stable
measure of what each side costs, so the harness/plain ratio is read from it (wall ratios are printed too).

With ``--compile MODE`` it also times the two trainers' ``update`` alone, eager against ``compile = MODE``
(torch.compile of the losses; "reduce-overhead" adds CUDA graphs on a GPU), on ``--device`` (the trainers
only: the plain and end-to-end rows always run on the CPU). Compilation happens in an untimed warm-up.

Run: ``.venv/bin/python benchmarks/rl/bench_update_rate.py [--steps 500] [--rounds 3] [--threads 2]
[--compile default] [--device cuda]``.
The dataset is random Hopper-v5 transitions generated here (throughput does not depend on data quality).
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from harness_rl import iql, td3_bc
from torch import nn

from harness import CellContext

OBS_DIM, ACT_DIM, BATCH, HIDDEN, DATASET_SIZE = 11, 3, 256, 256, 100_000


def mlp(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, outputs)
    )


def soft_update(net: nn.Module, target: nn.Module, tau: float = 0.005) -> None:
    with torch.no_grad():
        for p, tp in zip(net.parameters(), target.parameters(), strict=True):
            tp.mul_(1 - tau).add_(p, alpha=tau)


def plain_iql(data: dict[str, torch.Tensor], steps: int) -> tuple[float, float]:
    """CORL's IQL update in a bare loop; returns gradient steps per second of (wall, process CPU) time."""
    q1, q2, vf = mlp(OBS_DIM + ACT_DIM, 1), mlp(OBS_DIM + ACT_DIM, 1), mlp(OBS_DIM, 1)
    q1_t, q2_t = copy.deepcopy(q1), copy.deepcopy(q2)
    actor, log_std = mlp(OBS_DIM, ACT_DIM), nn.Parameter(torch.zeros(ACT_DIM))
    v_opt = torch.optim.Adam(vf.parameters(), 3e-4)
    q_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], 3e-4)
    a_opt = torch.optim.Adam([*actor.parameters(), log_std], 3e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(a_opt, steps)
    n = len(data["observations"])
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        i = torch.randint(0, n, (BATCH,))
        s, a, r = data["observations"][i], data["actions"][i], data["rewards"][i]
        s2, d = data["next_observations"][i], data["terminals"][i]
        sa = torch.cat([s, a], -1)
        with torch.no_grad():
            next_v = vf(s2).squeeze(-1)
            target_q = torch.min(q1_t(sa), q2_t(sa)).squeeze(-1)
        adv = target_q - vf(s).squeeze(-1)
        v_loss = torch.mean(torch.abs(0.7 - (adv < 0).float()) * adv**2)
        v_opt.zero_grad()
        v_loss.backward()
        v_opt.step()
        y = r + (1 - d) * 0.99 * next_v
        q_loss = (F.mse_loss(q1(sa).squeeze(-1), y) + F.mse_loss(q2(sa).squeeze(-1), y)) / 2
        q_opt.zero_grad()
        q_loss.backward()
        q_opt.step()
        soft_update(q1, q1_t)
        soft_update(q2, q2_t)
        weight = torch.exp(3.0 * adv.detach()).clamp(max=100.0)
        dist = torch.distributions.Normal(torch.tanh(actor(s)), log_std.clamp(-20, 2).exp())
        a_loss = torch.mean(weight * -dist.log_prob(a).sum(-1))
        a_opt.zero_grad()
        a_loss.backward()
        a_opt.step()
        sched.step()
        # The harness loop reads each loss as a float (logging); do the same synchronization here.
        v_loss.item(), q_loss.item(), a_loss.item()
    return steps / (time.perf_counter() - start), steps / (time.process_time() - cpu_start)


def plain_td3_bc(data: dict[str, torch.Tensor], steps: int) -> tuple[float, float]:
    """CORL's TD3+BC update in a bare loop; returns gradient steps per second of (wall, process CPU) time."""
    actor = nn.Sequential(mlp(OBS_DIM, ACT_DIM), nn.Tanh())
    c1, c2 = mlp(OBS_DIM + ACT_DIM, 1), mlp(OBS_DIM + ACT_DIM, 1)
    actor_t, c1_t, c2_t = copy.deepcopy(actor), copy.deepcopy(c1), copy.deepcopy(c2)
    a_opt = torch.optim.Adam(actor.parameters(), 3e-4)
    c_opt = torch.optim.Adam([*c1.parameters(), *c2.parameters()], 3e-4)
    n = len(data["observations"])
    start, cpu_start = time.perf_counter(), time.process_time()
    for it in range(1, steps + 1):
        i = torch.randint(0, n, (BATCH,))
        s, a, r = data["observations"][i], data["actions"][i], data["rewards"][i][:, None]
        s2, d = data["next_observations"][i], data["terminals"][i][:, None]
        with torch.no_grad():
            noise = (torch.randn_like(a) * 0.2).clamp(-0.5, 0.5)
            a2 = (actor_t(s2) + noise).clamp(-1, 1)
            sa2 = torch.cat([s2, a2], -1)
            y = r + (1 - d) * 0.99 * torch.min(c1_t(sa2), c2_t(sa2))
        sa = torch.cat([s, a], -1)
        c_loss = F.mse_loss(c1(sa), y) + F.mse_loss(c2(sa), y)
        c_opt.zero_grad()
        c_loss.backward()
        c_opt.step()
        c_loss.item()
        if it % 2 == 0:
            pi = actor(s)
            q = c1(torch.cat([s, pi], -1))
            a_loss = -(2.5 / q.abs().mean().detach()) * q.mean() + F.mse_loss(pi, a)
            a_opt.zero_grad()
            a_loss.backward()
            a_opt.step()
            a_loss.item()
            soft_update(c1, c1_t)
            soft_update(c2, c2_t)
            soft_update(actor, actor_t)
    return steps / (time.perf_counter() - start), steps / (time.process_time() - cpu_start)


def hopper_transitions(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random-policy Hopper-v5 transitions, tiled to ``size`` rows (qlearning layout)."""
    env = gym.make("Hopper-v5")
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminals")}
    obs, _ = env.reset(seed=seed)
    for _ in range(5_000):
        action = rng.uniform(-1, 1, ACT_DIM).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(rows, (obs, action, reward, next_obs, float(terminated)), strict=True):
            rows[key].append(value)
        obs = env.reset()[0] if terminated or truncated else next_obs
    env.close()
    repeats = -(-size // 5_000)
    return {k: np.tile(np.asarray(v, np.float32), (repeats,) + (1,) * (np.ndim(v[0])))[:size] for k, v in rows.items()}


@dataclass
class HopperTask:
    dataset: dict[str, np.ndarray]
    name: str = "hopper-random-generated"
    observation_dim: int = OBS_DIM
    action_dim: int = ACT_DIM
    max_episode_steps: int = 1000
    extra: dict = field(default_factory=dict)

    def make_env(self, seed: int) -> gym.Env:
        return gym.make("Hopper-v5")

    def normalized_score(self, episode_return: float) -> float:  # D4RL's hopper reference returns
        return 100 * (episode_return + 20.272305) / (3234.3 + 20.272305)


def harness_rate(run, task: HopperTask, steps: int, seed: int) -> tuple[float, float, float]:
    """Steps/s of ``run()`` end to end in (wall, process CPU) time, and the outcome's gradient_steps_per_s."""
    with tempfile.TemporaryDirectory() as tmp:
        context = CellContext(
            seed=seed,
            budget={"gradient_steps": steps, "eval_every": steps, "eval_episodes": 1},
            checkpoint_dir=Path(tmp) / "ck",
            cache_dir=Path(tmp) / "cache",
        )
        start, cpu_start = time.perf_counter(), time.process_time()
        outcome = run(environment=task, params={}, context=context)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return steps / wall, steps / cpu, outcome["gradient_steps_per_s"]


def trainer_rates(
    tensors: dict[str, torch.Tensor], mode: str, device: str, steps: int, rounds: int
) -> dict[str, list[float]]:
    """Wall-clock update steps/s of IQLTrainer and TD3BCTrainer, eager vs ``compile = mode``, rounds
    interleaved; losses are read once at the end (as the training loops do), so GPU work is synchronized."""
    data = {k: v.to(device) for k, v in tensors.items()}
    stats = np.zeros(OBS_DIM, np.float32), np.ones(OBS_DIM, np.float32)
    trainers = {}
    for variant in ("eager", f"compiled {mode}"):
        compile_mode = "off" if variant == "eager" else mode
        trainers[f"iql trainer {variant}"] = iql.IQLTrainer(
            OBS_DIM, ACT_DIM, *stats, iql.IQLConfig(compile=compile_mode), steps * (rounds + 1), device
        )
        trainers[f"td3-bc trainer {variant}"] = td3_bc.TD3BCTrainer(
            OBS_DIM, ACT_DIM, *stats, td3_bc.TD3BCConfig(compile=compile_mode), device
        )
    n = len(data["observations"])

    def timed(trainer, count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            index = torch.randint(0, n, (BATCH,), device=device)
            info = trainer.update({k: v[index] for k, v in data.items()})
        [float(v) for v in info.values()]  # wait for the device
        return count / (time.perf_counter() - start)

    for trainer in trainers.values():
        timed(trainer, 20)  # compiles (minutes on a CPU), warms caches
    results: dict[str, list[float]] = {}
    for round_index in range(rounds):
        order = list(trainers.items())
        for name, trainer in order if round_index % 2 == 0 else reversed(order):
            results.setdefault(name, []).append(timed(trainer, steps))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500, help="gradient steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--compile", default="off", help="also time the trainers eager vs this torch.compile mode")
    parser.add_argument("--device", default="cpu", help="device of the --compile trainer rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    task = HopperTask(hopper_transitions(DATASET_SIZE))
    tensors = {k: torch.as_tensor(v) for k, v in task.dataset.items()}
    # Warm-up (allocator, first-call costs) for both paths, untimed.
    plain_iql(tensors, 20), plain_td3_bc(tensors, 20)
    harness_rate(iql.run, task, 20, seed=0), harness_rate(td3_bc.run, task, 20, seed=0)
    results: dict[str, list[float]] = {}
    for round_index in range(args.rounds):
        for name, plain, run in (("iql", plain_iql, iql.run), ("td3-bc", plain_td3_bc, td3_bc.run)):
            # Alternate which side goes first so a drift in machine load does not favour one side.
            for side in ("plain", "harness") if round_index % 2 == 0 else ("harness", "plain"):
                if side == "plain":
                    wall, cpu = plain(tensors, args.steps)
                    results.setdefault(f"{name} plain wall", []).append(wall)
                    results.setdefault(f"{name} plain cpu", []).append(cpu)
                else:
                    wall, cpu, reported = harness_rate(run, task, args.steps, seed=round_index)
                    results.setdefault(f"{name} harness e2e wall", []).append(wall)
                    results.setdefault(f"{name} harness e2e cpu", []).append(cpu)
                    results.setdefault(f"{name} harness reported wall", []).append(reported)
    print(
        f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
        f"batch {BATCH}, hidden {HIDDEN}x2, obs {OBS_DIM}, act {ACT_DIM}, {args.steps} steps x {args.rounds} rounds"
    )
    print(f"{'measurement':32} {'median steps/s':>15} {'all rounds':>30}")
    for key, values in results.items():
        print(f"{key:32} {statistics.median(values):15.1f} {', '.join(f'{v:.1f}' for v in values):>30}")
    for name in ("iql", "td3-bc"):
        for harness_key, plain_key in (
            ("harness e2e cpu", "plain cpu"),
            ("harness e2e wall", "plain wall"),
            ("harness reported wall", "plain wall"),
        ):
            ratio = statistics.median(results[f"{name} {harness_key}"]) / statistics.median(
                results[f"{name} {plain_key}"]
            )
            print(f"{name} {harness_key} / {plain_key}: {ratio:.3f} (harness cost {100 * (1 - ratio):+.1f}%)")
    if args.compile != "off":
        rates = trainer_rates(tensors, args.compile, args.device, args.steps, args.rounds)
        print(f"trainer update alone on {args.device}, wall clock:")
        for key, values in rates.items():
            print(f"{key:32} {statistics.median(values):15.1f} {', '.join(f'{v:.1f}' for v in values):>30}")
        for name in ("iql", "td3-bc"):
            ratio = statistics.median(rates[f"{name} trainer compiled {args.compile}"]) / statistics.median(
                rates[f"{name} trainer eager"]
            )
            print(f"{name} compiled {args.compile} / eager: {ratio:.3f}")


if __name__ == "__main__":
    main()
