"""Generating D4RL-schema datasets on Gymnasium MuJoCo v5, because D4RL's files cannot be downloaded here.

D4RL's locomotion datasets (Fu et al., 2020, https://arxiv.org/abs/2004.07219; collection script
``scripts/generation/mujoco/collect_data.py``) were collected with SAC policies:

* ``random``: a uniformly random policy;
* ``expert``: a policy trained to completion;
* ``medium``: a policy whose training stopped at about a third of the expert's return;
* ``medium-replay``: the replay buffer of that medium policy's training;
* ``medium-expert``: the medium and expert rollouts concatenated.

Rollouts sample actions from the SAC policy's Gaussian (as D4RL did), run whole episodes of at most 1000
steps (``timeouts`` at the 1000th step, ``terminals`` at a true termination) until ``steps`` rows exist, then
cut to exactly ``steps`` rows. Policies are trained with harness-rl's SAC (``harness_rl.sac.train_sac``).

The output is labelled as generated in its file name and its attributes (``generated = True``,
``source``), and records the generator's returns. Training an expert takes hours on a CPU, so everything
resumes: SAC checkpoints, trained agents and rollouts in progress are kept in a work folder beside the output,
and running the same command again continues where it stopped. A ``budget`` (SAC environment steps) smaller
than the full protocol gives a quicker, weaker dataset whose file name says ``-budget<N>``.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness_d4rl.references import QUALITIES, V5_DIFFERENCE_NOTE, check_quality, generated_file_name, task

FULL_SAC_STEPS = 1_000_000  # environment steps of SAC training in the full protocol
GENERATOR_VERSION = "1"


@dataclass(frozen=True)
class GenerationConfig:
    """One dataset to generate."""

    env: str  # "hopper", "halfcheetah", "walker2d" or "ant"
    quality: str  # one of QUALITIES
    steps: int = 1_000_000  # rows of each rollout dataset (medium-expert has twice this); caps medium-replay
    budget: int | None = None  # SAC environment steps; None is the full protocol (FULL_SAC_STEPS)
    seed: int = 0  # seeds SAC training and rollouts
    out: Path | None = None  # output HDF5 file; default: generated_file_name in the current folder
    work_dir: Path | None = None  # checkpoints and partial results; default: <out>.work
    minari_id: str | None = None  # also write a Minari dataset with this id
    medium_target_return: float | None = None  # stop medium training here; default: a third of expert's
    eval_episodes: int = 10  # deterministic episodes to measure each trained policy
    checkpoint_every: int = 10_000  # environment steps between SAC and rollout checkpoints
    device: str = "cpu"

    def __post_init__(self) -> None:
        task(self.env)
        check_quality(self.quality)
        if self.steps < 2:
            raise ValueError(f"steps must be at least 2, got {self.steps}")
        if self.budget is not None and self.budget < 1:
            raise ValueError(f"budget must be a positive number of SAC environment steps, got {self.budget}")

    @property
    def sac_steps(self) -> int:
        return FULL_SAC_STEPS if self.budget is None else self.budget

    @property
    def output_path(self) -> Path:
        return self.out or Path(generated_file_name(self.env, self.quality, self.budget))

    @property
    def work_path(self) -> Path:
        return self.work_dir or self.output_path.with_name(self.output_path.name + ".work")


Log = Callable[[str], None]
StopCheck = Callable[[], bool]


class GenerationInterrupted(RuntimeError):
    """``should_stop`` asked generation to stop; everything done so far is checkpointed in the work folder."""


#: Where generation reports how far it is (``progress(done, total, note)``, e.g. a cell's ``context.progress``)
#: while :func:`generate_dataset` runs; a context variable rather than a parameter of every inner step.
_PROGRESS: contextvars.ContextVar[Callable[..., None] | None] = contextvars.ContextVar("progress", default=None)


def _report(done: float, total: float | None, note: str) -> None:
    progress = _PROGRESS.get()
    if progress is not None:
        progress(done, total, note)


def generate_dataset(
    config: GenerationConfig,
    log: Log | None = None,
    should_stop: StopCheck | None = None,
    progress: Callable[..., None] | None = None,
) -> Path:
    """Generate (or finish generating) the dataset ``config`` describes; returns the HDF5 path.

    An existing output with the same generation settings is returned as is. Parallel callers asking for the
    same output wait for one another through a file lock. ``should_stop`` is polled during training and
    rollouts (a deadline, a signal); when it returns True the progress is checkpointed and
    :class:`GenerationInterrupted` is raised: calling again with the same config resumes. ``progress`` is
    called as ``progress(done, total, note)`` while the policies train (a cell passes ``context.progress``).
    """
    token = _PROGRESS.set(progress)
    try:
        return _generate(config, log, should_stop)
    finally:
        _PROGRESS.reset(token)


def _generate(config: GenerationConfig, log: Log | None, should_stop: StopCheck | None) -> Path:
    from filelock import FileLock

    say = log or (lambda message: None)
    out = config.output_path
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if out.is_file() and _same_settings(out, config):
            say(f"{out} already generated")
            return out
        work = config.work_path
        work.mkdir(parents=True, exist_ok=True)
        started = time.time()
        rows, attrs = _build(config, work, say, should_stop)
        attrs.update(
            generated=True,
            source=(
                f"generated by harness-d4rl {GENERATOR_VERSION} on Gymnasium {task(config.env).gymnasium_id}; "
                "NOT the original D4RL data"
            ),
            env=config.env,
            gymnasium_id=task(config.env).gymnasium_id,
            quality=config.quality,
            budget_label="full" if config.budget is None else f"budget{config.budget}",
            # Random data involves no training; -1 says so rather than a misleading step count.
            sac_env_steps=config.sac_steps if config.quality != "random" else -1,
            generator_seed=config.seed,
            generator_version=GENERATOR_VERSION,
            settings=json.dumps(_settings(config), sort_keys=True),
            note=V5_DIFFERENCE_NOTE,
            generation_seconds=round(time.time() - started, 3),
        )
        _write_hdf5(out, rows, attrs)
        say(f"wrote {out} ({len(rows['rewards'])} rows)")
        if config.minari_id:
            write_minari(config.minari_id, rows, config, attrs)
            say(f"wrote Minari dataset {config.minari_id}")
        return out


def _settings(config: GenerationConfig) -> dict[str, Any]:
    settings = asdict(config)
    for key in ("out", "work_dir", "device", "minari_id", "checkpoint_every"):
        settings.pop(key)
    return settings


def _same_settings(path: Path, config: GenerationConfig) -> bool:
    import h5py

    with h5py.File(path, "r") as handle:
        stored = handle.attrs.get("settings")
    return stored is not None and json.loads(stored) == _settings(config)


def _build(
    config: GenerationConfig, work: Path, say: Log, should_stop: StopCheck | None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    quality = config.quality

    def rollouts(agent: Any, name: str) -> dict[str, np.ndarray]:
        return collect_rollouts(config, agent, work / f"rollout-{name}.npz", say, should_stop)

    def policy(role: str) -> dict[str, Any]:
        return _train_policy(config, work, role, say, should_stop)

    if quality == "random":
        rows = rollouts(None, "random")
        return rows, _returns_attrs(config.env, "random", rows)
    if quality == "expert":
        expert = policy("expert")
        rows = rollouts(expert["agent"], "expert")
        return rows, {**expert["attrs"], **_returns_attrs(config.env, "expert", rows)}
    if quality in ("medium", "medium-replay"):
        medium = policy("medium")
        if quality == "medium-replay":
            rows = replay_buffer_rows(medium["replay_buffer"], config.steps)
        else:
            rows = rollouts(medium["agent"], "medium")
        return rows, {**medium["attrs"], **_returns_attrs(config.env, quality, rows)}
    if quality == "medium-expert":
        expert = policy("expert")
        medium = policy("medium")
        medium_rows = rollouts(medium["agent"], "medium")
        expert_rows = rollouts(expert["agent"], "expert")
        attrs = {**expert["attrs"], **medium["attrs"], **_returns_attrs(config.env, "medium", medium_rows)}
        attrs.update(_returns_attrs(config.env, "expert", expert_rows))
        rows = {key: np.concatenate([medium_rows[key], expert_rows[key]]) for key in medium_rows}
        return rows, attrs
    raise ValueError(f"unknown quality {quality!r}; known: {', '.join(QUALITIES)}")


def _make_env_factory(config: GenerationConfig) -> Callable[[int], Any]:
    gymnasium_id = task(config.env).gymnasium_id
    max_steps = task(config.env).max_episode_steps

    def make_env(seed: int) -> Any:
        import gymnasium as gym

        env = gym.make(gymnasium_id, max_episode_steps=max_steps)
        env.action_space.seed(seed)
        return env

    return make_env


def _sac_config(config: GenerationConfig) -> Any:
    from harness_rl.sac import SACConfig

    # CleanRL's 5000 random steps before learning would leave a small budget without a single update; a
    # budget under 25000 steps explores randomly for its first fifth instead.
    return SACConfig(learning_starts=min(5000, max(256, config.sac_steps // 5)))


def _train_policy(
    config: GenerationConfig, work: Path, role: str, say: Log, should_stop: StopCheck | None
) -> dict[str, Any]:
    """Train (or resume, or load) the SAC policy of ``role`` ("expert" or "medium")."""
    from harness_rl.sac import train_sac

    summary_path = work / f"{role}-summary.json"
    target = None
    if role == "medium":
        target, target_source = _medium_target(config, work)
    say(
        f"training the {role} SAC policy for up to {config.sac_steps} environment steps"
        + (f" (stopping at a training return of {target:.1f})" if target is not None else "")
    )
    result = train_sac(
        _make_env_factory(config),
        total_steps=config.sac_steps,
        seed=config.seed + (1 if role == "medium" else 0),
        checkpoint_path=work / f"{role}-sac.pt",
        checkpoint_every=config.checkpoint_every,
        stop_at_return=target,
        device=config.device,
        log=_training_progress(role, config.sac_steps, say),
        config=_sac_config(config),
        should_stop=should_stop,
    )
    if not result.finished:
        raise GenerationInterrupted(f"stopped while training the {role} policy at {result.env_steps} steps")
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
    else:
        eval_returns = evaluate_agent(config, result.agent)
        summary = {
            "eval_return_mean": float(np.mean(eval_returns)),
            "eval_returns": eval_returns,
            "env_steps": result.env_steps,
            "stopped_early": result.stopped_early,
            "last_training_returns": result.episode_returns[-10:],
        }
        if target is not None:
            summary.update(target_return=target, target_source=target_source)
        summary_path.write_text(json.dumps(summary))
    say(f"{role} policy: deterministic return {summary['eval_return_mean']:.1f} after {summary['env_steps']} steps")
    attrs: dict[str, Any] = {
        f"{role}_policy_eval_return_mean": summary["eval_return_mean"],
        f"{role}_policy_env_steps": summary["env_steps"],
        f"{role}_policy_normalized_score": _normalize(config.env, summary["eval_return_mean"]),
    }
    if role == "medium":
        attrs.update(
            medium_target_return=summary["target_return"],
            medium_target_source=summary["target_source"],
            medium_target_reached=bool(summary["stopped_early"]),
        )
    return {"agent": result.agent, "replay_buffer": result.replay_buffer, "attrs": attrs}


def _training_progress(
    role: str, total_steps: int, say: Log, every_s: float = 30.0
) -> Callable[[str, float, int], None]:
    """A ``train_sac`` log callback saying, at most every ``every_s`` seconds, how far training is: the
    policies train for many minutes (hours at the full protocol) and a silent terminal looks hung."""
    returns: list[float] = []
    last = {"time": time.monotonic(), "step": 0}

    def log(name: str, value: float, step: int) -> None:
        if name != "episode_return":
            return
        _report(step, total_steps, f"generating dataset: training the {role} policy")
        returns.append(value)
        now = time.monotonic()
        if now - last["time"] < every_s:
            return
        rate = (step - last["step"]) / (now - last["time"])
        recent = returns[-10:]
        say(
            f"  {role}: {step}/{total_steps} environment steps ({rate:.0f}/s), training return "
            f"{sum(recent) / len(recent):.1f} (mean of the last {len(recent)} episodes)"
        )
        last.update(time=now, step=step)

    return log


def _medium_target(config: GenerationConfig, work: Path) -> tuple[float, str]:
    """A third of the expert's return: the given one, the expert trained in this work folder, or D4RL's."""
    if config.medium_target_return is not None:
        return float(config.medium_target_return), "given"
    expert_summary = work / "expert-summary.json"
    if expert_summary.is_file():
        expert_return = json.loads(expert_summary.read_text())["eval_return_mean"]
        return expert_return / 3.0, "a third of the expert policy trained in this work folder"
    return task(config.env).ref_max_score / 3.0, "a third of D4RL's expert reference return"


def evaluate_agent(config: GenerationConfig, agent: Any) -> list[float]:
    """Deterministic returns of ``agent`` over ``config.eval_episodes`` seeded episodes."""
    make_env = _make_env_factory(config)
    env = make_env(config.seed)
    returns = []
    try:
        for episode in range(config.eval_episodes):
            obs, _ = env.reset(seed=config.seed + 100_000 + episode)
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(agent.act(obs, deterministic=True))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return returns


_ROLLOUT_KEYS = (
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "terminals",
    "timeouts",
    "infos/action_log_probs",
    "infos/qpos",
    "infos/qvel",
)


def collect_rollouts(
    config: GenerationConfig,
    agent: Any,
    partial_path: Path,
    say: Log,
    should_stop: StopCheck | None = None,
) -> dict[str, np.ndarray]:
    """Whole episodes from ``agent`` (None: uniform random actions) until ``config.steps`` rows, cut there.

    Episode ``i`` is reset with seed ``(seed, i)`` and draws its actions from its own random stream, so a
    collection resumed from ``partial_path`` (written every ``checkpoint_every`` rows) equals an
    uninterrupted one.
    """
    episodes: dict[str, list[np.ndarray]] = {key: [] for key in _ROLLOUT_KEYS}
    episode_returns: list[float] = []
    if partial_path.is_file():
        with np.load(partial_path) as saved:
            episodes = {key: [saved[key]] for key in _ROLLOUT_KEYS}
            episode_returns = saved["episode_returns"].tolist()
            episode_lengths = saved["episode_lengths"].tolist()
        say(f"resuming rollouts from {partial_path}: {sum(episode_lengths)} rows")
    else:
        episode_lengths = []
    env = _make_env_factory(config)(config.seed)
    low, high = env.action_space.low, env.action_space.high
    random_log_prob = float(np.log(1.0 / np.prod(high - low)))
    rows = sum(episode_lengths)
    last_saved = rows
    try:
        while rows < config.steps:
            if should_stop is not None and should_stop():
                _save_partial(partial_path, episodes, episode_returns, episode_lengths)
                raise GenerationInterrupted(f"stopped collecting rollouts at {rows} rows")
            index = len(episode_lengths)
            episode_seed = int(np.random.SeedSequence([config.seed, 2, index]).generate_state(1)[0])
            rng = np.random.default_rng(episode_seed)
            if agent is not None:  # random data needs no torch (and its import costs seconds)
                import torch

                torch.manual_seed(episode_seed)
            trajectory = _run_episode(env, agent, rng, low, high, random_log_prob, episode_seed)
            for key in _ROLLOUT_KEYS:
                episodes[key].append(trajectory[key])
            episode_lengths.append(len(trajectory["rewards"]))
            episode_returns.append(float(trajectory["rewards"].sum(dtype=np.float64)))
            rows += episode_lengths[-1]
            if rows - last_saved >= config.checkpoint_every and rows < config.steps:
                _save_partial(partial_path, episodes, episode_returns, episode_lengths)
                last_saved = rows
    finally:
        env.close()
    collected = {key: np.concatenate(parts)[: config.steps] for key, parts in episodes.items()}
    # The last episode was cut at ``steps`` rows: mark its end as a timeout, so that a concatenation
    # (medium-expert) never joins it to the next dataset's first row.
    if not collected["terminals"][-1]:
        collected["timeouts"][-1] = True
    collected["_episode_returns"] = np.asarray(episode_returns)
    return collected


def _run_episode(
    env: Any,
    agent: Any,
    rng: np.random.Generator,
    low: np.ndarray,
    high: np.ndarray,
    random_log_prob: float,
    episode_seed: int,
) -> dict[str, np.ndarray]:
    if agent is not None:
        import torch
    steps: dict[str, list[Any]] = {key: [] for key in _ROLLOUT_KEYS}
    obs, _ = env.reset(seed=episode_seed % (2**31))
    data = env.unwrapped.data
    length, limit = 0, env.spec.max_episode_steps
    while True:
        if agent is None:
            action = rng.uniform(low, high).astype(np.float32)
            log_prob = random_log_prob
        else:
            with torch.no_grad():
                obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=agent.device)[None]
                sampled, log_prob_t, _ = agent.actor.sample(obs_t)
            unit_action = sampled[0].cpu().numpy()
            action = (low + (unit_action + 1.0) * 0.5 * (high - low)).astype(np.float32)
            log_prob = float(log_prob_t.item())
        qpos, qvel = data.qpos.ravel().copy(), data.qvel.ravel().copy()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        length += 1
        timeout = length == limit  # D4RL: the time limit wins over a termination on the same step
        for key, value in zip(
            _ROLLOUT_KEYS,
            (obs, action, reward, next_obs, terminated and not timeout, timeout, log_prob, qpos, qvel),
            strict=True,
        ):
            steps[key].append(value)
        obs = next_obs
        if terminated or truncated:
            break
    trajectory = {key: np.asarray(value, dtype=np.float32) for key, value in steps.items()}
    trajectory["terminals"] = trajectory["terminals"].astype(bool)
    trajectory["timeouts"] = trajectory["timeouts"].astype(bool)
    return trajectory


def _save_partial(path: Path, episodes: dict[str, list[np.ndarray]], returns: list[float], lengths: list[int]) -> None:
    if not lengths:
        return
    arrays = {key: np.concatenate(parts) for key, parts in episodes.items()}
    for key, value in arrays.items():  # keep one array per key so later appends stay cheap
        episodes[key][:] = [value]
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, episode_returns=np.asarray(returns), episode_lengths=np.asarray(lengths), **arrays)
    tmp.replace(path)


def replay_buffer_rows(buffer: dict[str, np.ndarray], steps: int) -> dict[str, np.ndarray]:
    """SAC's replay buffer (oldest first) as D4RL rows, cut to its first ``steps`` rows.

    The buffer's transitions are consecutive, so ``qlearning_dataset`` (next observation = following row)
    recovers them; the last row, whose episode was still running, and a row where training was resumed
    from a checkpoint (a new episode starts there) are marked as timeouts.
    """
    rows = {
        key: np.asarray(buffer[key])[:steps]
        for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
    }
    rows["terminals"] = rows["terminals"].astype(bool)
    rows["timeouts"] = rows["timeouts"].astype(bool)
    if len(rows["timeouts"]) and not rows["terminals"][-1]:
        rows["timeouts"][-1] = True
    # A SAC run resumed from a checkpoint abandons the episode in progress and starts a new one: that row's
    # next observation is not the following row's. D4RL's layout can only say so with a timeout.
    following = rows["observations"][1:]
    broken = ~(rows["terminals"][:-1] | rows["timeouts"][:-1]) & np.any(
        rows["next_observations"][:-1] != following, axis=1
    )
    rows["timeouts"][:-1] |= broken
    ends = rows["terminals"] | rows["timeouts"]
    boundaries = np.flatnonzero(ends)
    starts = np.concatenate([[0], boundaries[:-1] + 1])
    rows["_episode_returns"] = np.asarray(
        [rows["rewards"][s : e + 1].sum(dtype=np.float64) for s, e in zip(starts, boundaries, strict=True)]
    )
    return rows


def _returns_attrs(env: str, label: str, rows: dict[str, np.ndarray]) -> dict[str, Any]:
    returns = rows.pop("_episode_returns", np.asarray([]))
    if len(returns) == 0:
        return {f"returns_{label}_episodes": 0}
    mean = float(np.mean(returns))
    label = label.replace("-", "_")
    return {
        f"returns_{label}_mean": mean,
        f"returns_{label}_std": float(np.std(returns)),
        f"returns_{label}_min": float(np.min(returns)),
        f"returns_{label}_max": float(np.max(returns)),
        f"returns_{label}_episodes": len(returns),
        f"returns_{label}_normalized_score": _normalize(env, mean),
    }


def _normalize(env: str, value: float) -> float:
    t = task(env)
    return 100.0 * (value - t.ref_min_score) / (t.ref_max_score - t.ref_min_score)


def _write_hdf5(path: Path, rows: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    import h5py

    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as handle:
        for key, value in rows.items():
            if key.startswith("_"):
                continue
            handle.create_dataset(key, data=value, compression="gzip")
        for key, value in attrs.items():
            handle.attrs[key] = value
    tmp.replace(path)


def write_minari(dataset_id: str, rows: dict[str, np.ndarray], config: GenerationConfig, attrs: dict[str, Any]) -> Any:
    """The same rows as a Minari dataset (episodes split at terminals and timeouts, D4RL reference scores)."""
    import warnings

    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    ends = np.flatnonzero(np.asarray(rows["terminals"]) | np.asarray(rows["timeouts"]))
    if len(ends) == 0 or ends[-1] != len(rows["rewards"]) - 1:
        ends = np.append(ends, len(rows["rewards"]) - 1)  # the cut last episode ends truncated
    buffers, start = [], 0
    for number, end in enumerate(ends):
        piece = slice(start, end + 1)
        observations = np.concatenate([rows["observations"][piece], rows["next_observations"][end : end + 1]])
        terminations = np.asarray(rows["terminals"][piece], dtype=bool)
        buffers.append(
            EpisodeBuffer(
                id=number,
                observations=observations.astype(np.float32),
                actions=np.asarray(rows["actions"][piece], dtype=np.float32),
                rewards=np.asarray(rows["rewards"][piece], dtype=np.float64),
                terminations=terminations,
                truncations=~terminations & (np.arange(start, end + 1) == end),
                infos={},
            )
        )
        start = end + 1
    locomotion = task(config.env)
    env = gym.make(locomotion.gymnasium_id, max_episode_steps=locomotion.max_episode_steps)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # minari asks for author e-mail and code links
            return minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=env,
                eval_env=env.spec,
                algorithm_name=f"harness-rl SAC ({config.quality})" if config.quality != "random" else "random",
                author="harness-d4rl",
                ref_min_score=locomotion.ref_min_score,
                ref_max_score=locomotion.ref_max_score,
                description=str(attrs["source"]) + ". " + V5_DIFFERENCE_NOTE,
            )
    finally:
        env.close()
